"""Helpers for the adversarial tests: a well-behaved canary client, bounded waiting, sockets.

The canary is a separate connection that sends one line every few milliseconds from a thread
and checks that each reply is ``[ctime] `` + that line, in order. A test starts it before an
attack, asks it to make progress *while* the attack is under way (``advance``), and checks at
the end that it never saw a wrong, missing or late reply (``check``).
"""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from echo_server.protocol import ReplyError, check_reply

TIMEOUT = 10.0
"""Every socket's timeout: generous, because a busy 2-core machine also runs the attack."""


def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    """Poll ``condition`` until it returns something truthy; fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def raise_nofile(needed: int) -> None:
    """Raise RLIMIT_NOFILE toward the hard limit (the server subprocess inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise AssertionError(f"RLIMIT_NOFILE hard limit {hard} < {needed} file descriptors")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def connect(address: tuple[str, int], timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_line(sock: socket.socket, buffer: bytearray) -> bytes:
    """One b"\\n"-terminated line; ``buffer`` keeps what came after it. EOF fails."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            return line
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF before a complete line (have {bytes(buffer[:80])!r})")
        buffer += chunk


def recv_to_eof(sock: socket.socket, limit: int = 64 << 20) -> bytes:
    """Everything until EOF; a reset counts as EOF (it is checked by the caller's content)."""
    chunks = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return bytes(chunks)
        if not chunk:
            return bytes(chunks)
        chunks += chunk
        assert len(chunks) <= limit, f"more than {limit} bytes before EOF"


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN, dropping unsent data."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Canary:
    """A client that keeps exchanging lines during an attack and records the first problem."""

    def __init__(self, address: tuple[str, int], interval: float = 0.005) -> None:
        self.address = address
        self.interval = interval
        self.replies = 0
        self.max_rtt = 0.0
        self.error: str | None = None
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._buffer = bytearray()

    def __enter__(self) -> Canary:
        self._sock = connect(self.address)
        self._exchange()  # admitted and answering before any attack starts
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if kind is None:
            self.check()

    def _exchange(self) -> None:
        assert self._sock is not None
        # Bytes that a careless server would mangle, and a sequence number to prove order.
        line = b"canary %06d \x00\xff\r\n" % self.replies
        started = time.monotonic()
        self._sock.sendall(line)
        reply = recv_line(self._sock, self._buffer)
        check_reply(reply, line)
        rtt = time.monotonic() - started
        with self._progress:
            self.replies += 1
            self.max_rtt = max(self.max_rtt, rtt)
            self._progress.notify_all()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._exchange()
        except (OSError, AssertionError, ReplyError) as exc:
            with self._progress:
                self.error = f"after {self.replies} replies: {type(exc).__name__}: {exc}"
                self._progress.notify_all()

    def advance(self, count: int = 20, timeout: float = TIMEOUT) -> None:
        """Wait for ``count`` more good replies: proof the server serves it *now*."""
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self.replies + count
            while self.replies < target and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._progress.wait(remaining)
            assert self.error is None, f"canary failed: {self.error}"
            assert self.replies >= target, (
                f"canary got {self.replies - target + count} of {count} replies in {timeout} s"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT + 1)
        if self._sock is not None:
            self._sock.close()

    def check(self) -> None:
        assert self.error is None, f"canary failed: {self.error}"
        assert self._thread is None or not self._thread.is_alive(), "canary thread hung"
        assert self.max_rtt < TIMEOUT, f"canary waited {self.max_rtt:.2f} s for a reply"
