"""``--workers N``: N forked processes, each with its own event loop, sharing one port.

Every worker binds the port itself with SO_REUSEPORT, so the kernel spreads new connections
across their accept queues (by a hash of the 4-tuple) with no lock and no handoff. The parent
serves nothing: it reserves the port, forks, forwards SIGTERM/SIGINT, and waits.

Port 0: the parent binds the address first (SO_REUSEPORT, never listening, so it takes no
connections) to learn the kernel's choice, then each worker binds that port. The reservation
is held until the workers are gone, so the port cannot be taken in between, and every
worker's ``listening`` event reports the real port, tagged with ``worker=<index>``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, TypedDict

from .logs import EventLog

if TYPE_CHECKING:
    from .config import ServerConfig

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerContext(TypedDict):
    """Fields a worker adds to every event it logs, so its lines can be told apart."""

    worker: int


Runner = Callable[["ServerConfig", WorkerContext], int]
"""How a worker serves: __main__.run(config, context); returns the exit status."""


def reserve(host: str, port: int) -> list[socket.socket]:
    """Bind (not listen) every address of host with SO_REUSEPORT; all share one port."""
    infos = socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    held: list[socket.socket] = []
    seen: set[tuple[socket.AddressFamily, tuple[object, ...]]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]  # the first bind fixes the port for the rest
    except OSError:
        for sock in held:
            sock.close()
        raise
    return held


def _worker(config: ServerConfig, index: int, held: list[socket.socket], serve: Runner) -> int:
    """In the child: drop the parent's sockets and handlers, then serve like a single server."""
    for sock in held:
        sock.close()
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # still blocked: serve() unblocks once handled
    return serve(config, {"worker": index})


def supervise(config: ServerConfig, serve: Runner) -> int:
    """Fork config.workers workers and wait for all; 0 only if every worker exited 0."""
    log = EventLog(config.log_format, config.log_level)
    try:
        held = reserve(config.host, config.port)
    except OSError as exc:
        log.event("error", reason=f"cannot listen on {config.host}:{config.port}: {exc}")
        return 1
    config = replace(config, port=held[0].getsockname()[1])
    children: dict[int, int] = {}  # pid -> worker index
    stopping: list[str] = []

    def forward(signum: int, _frame: object) -> None:
        if not stopping:
            stopping.append(signal.Signals(signum).name)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    # Blocked across fork so a signal cannot hit a child before its loop handles signals.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        for index in range(config.workers):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child never returns from here
                code = 1
                try:
                    code = _worker(config, index, held, serve)
                except BaseException:
                    traceback.print_exc()
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            children[pid] = index
        for sig in SIGNALS:
            signal.signal(sig, forward)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    log.event("workers", port=config.port, workers=config.workers, pids=sorted(children))
    codes: dict[int, int] = {}
    while children:
        pid, status = os.waitpid(-1, 0)
        if pid not in children:
            continue
        index = children.pop(pid)
        codes[index] = os.waitstatus_to_exitcode(status)
        if not stopping:
            # A worker died on its own: the port is now served by fewer workers than asked
            # for, so stop the rest rather than run degraded without anyone noticing.
            log.event("error", reason=f"worker {index} exited with {codes[index]}", pid=pid)
            stopping.append(f"worker {index} exited")
            forward(signal.SIGTERM, None)
    for sock in held:
        sock.close()
    failed = {index: code for index, code in sorted(codes.items()) if code != 0}
    log.event("workers_stopped", reason=stopping[0] if stopping else "?", failed=failed)
    return 0 if not failed else 1
