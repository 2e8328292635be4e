"""A harness process's session: the id its resources carry, and the lease that says it lives.

Everything a harness process makes is labelled with its session id (``org.echolab.session``, a
12-hex uuid made on first need). Whether that owner still lives is asked of Docker, never of
the process table: a pid means nothing in another PID namespace (a harness in a container with
the Docker socket mounted, CI jobs sharing a daemon, a remote ``DOCKER_HOST``), and pids are
reused. The answer is the session's *lease*: a tiny container, ``echolab-lease-<id>``, whose
program reads its stdin until EOF. This process attaches to that stdin *before* starting it (as
``docker run -i`` does), with ``StdinOnce``, and keeps the connection open for its whole life.
When the process ends, however (SIGKILL included: the kernel closes its sockets), dockerd sees
the connection close, closes the container's stdin, the program reads EOF and exits (measured:
about 0.1 s after ``kill -9``). So "a lease of session S runs" means "S's process lives", the
same for every client of the daemon, wherever it runs; the sweep (``harness.sweep``) reads it.

Against testcontainers' Ryuk (a reaper container that removes a session's resources once its
TCP connection from the test process drops): nothing here listens on a port (Ryuk's must be
reachable from the test process, published on the host) and nothing mounts the Docker socket;
the lease holds no privilege (no network, read-only, no capability) and removes nothing itself.

Cost: one container per process that owns resources, made once (about 0.4 s: create, attach,
start), about 10 MB of memory while it runs; every later ``acquire`` is one inspect. At a
normal exit the lease is ended and removed (``release``); after a crash it stays, stopped, until
the next sweep removes it after its session's resources.

The attach socket must stay referenced (it is, here, module-level): garbage collected, it would
close the connection, and the lease would end while its process lives. A child forked without
exec inherits the descriptor: it closes its copy (the parent's connection stays open), so that
the parent's lease still ends with the parent; the child makes a session of its own on need.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field

import docker.errors
from docker.client import DockerClient

from harness import labels
from harness.errors import LabError

log = logging.getLogger(__name__)
ID_LENGTH = 12
LEASE_PREFIX = "echolab-lease-"
LEASE_PROGRAM = "import sys; sys.stdin.buffer.read()"  # runs until its stdin is closed


@dataclass
class _Lease:
    client: DockerClient
    container: str
    socket: object = None  # its attached stdin: referenced, so the connection stays open


@dataclass
class _Session:
    pid: int
    id: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    leases: dict[str, _Lease] = field(default_factory=dict)  # by daemon (the client's URL)


_guard = threading.Lock()
_mine: _Session | None = None


def _session() -> _Session:
    """This process's session, made on first need (keyed by pid: a forked child has its own)."""
    global _mine
    with _guard:
        if _mine is None or _mine.pid != os.getpid():
            _mine = _Session(os.getpid(), uuid.uuid4().hex[:ID_LENGTH])
        return _mine


def current_id() -> str:
    """This process's session id (no Docker: the lease is ``acquire``'s)."""
    return _session().id


def lease_name(session: str) -> str:
    return f"{LEASE_PREFIX}{session}"


def acquire(client: DockerClient, image: str) -> str:
    """This process's session id, with its lease running: made from ``image`` (any image with
    ``python3``; the first caller's wins) on first need, made again if it has stopped (e.g.
    dockerd restarted). One lease per daemon the process uses. Thread-safe; once held, one
    inspect."""
    mine = _session()
    daemon = str(client.api.base_url)
    with mine.lock:
        held = mine.leases.get(daemon)
        if held is not None and _running(client, held.container):
            return mine.id
        if held is not None:
            _close_socket(held.socket)
            del mine.leases[daemon]
        mine.leases[daemon] = _start(client, image, mine.id)
        return mine.id


def owning(client: DockerClient, image: str, session: str | None = None) -> str:
    """The session that owns what is about to be made: ``session`` if given (``labels.USER``,
    or another process's), else this process's, its lease acquired from ``image`` first."""
    return acquire(client, image) if session is None else session


def release() -> None:
    """End this process's lease now and remove it (run at exit): what its session still owns
    becomes an orphan, for the next sweep."""
    mine = _mine
    if mine is None or mine.pid != os.getpid():
        return
    with mine.lock:
        leases, mine.leases = list(mine.leases.values()), {}
        for lease in leases:
            _close_socket(lease.socket)
            with contextlib.suppress(Exception):  # at exit, best effort
                lease.client.api.remove_container(lease.container, force=True)


def _running(client: DockerClient, container: str) -> bool:
    try:
        return bool(client.api.inspect_container(container)["State"]["Running"])
    except docker.errors.NotFound:
        return False


def _start(client: DockerClient, image: str, session: str) -> _Lease:
    name = lease_name(session)
    if _running(client, name):  # this session's, held through another URL of the same daemon
        return _Lease(client, name)
    with contextlib.suppress(docker.errors.NotFound):  # this session's stopped lease
        client.api.remove_container(name, force=True)
    try:
        created = client.api.create_container(
            image,
            entrypoint=["python3", "-c", LEASE_PROGRAM],
            name=name,
            labels={
                labels.PROJECT: labels.PROJECT_VALUE,
                labels.ROLE: labels.LEASE,
                labels.SESSION: session,
            },
            # The SDK spells stdin_once=True so: stdin_open with detach=False sets StdinOnce
            # (dockerd closes the container's stdin when the attached client goes).
            stdin_open=True,
            detach=False,
            host_config=client.api.create_host_config(
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"],
                mem_limit="32m",
                pids_limit=8,
            ),
        )
    except docker.errors.APIError as error:
        raise LabError(f"cannot create the session lease {name} from {image}: {error}") from error
    container = str(created["Id"])
    try:
        # Attached before it starts (as docker run -i does): started first, a process that died
        # before attaching would leave a lease whose stdin nobody ever closes, running forever.
        sock = client.api.attach_socket(container, params={"stdin": 1, "stream": 1})
        try:
            client.api.start(container)
            if not _running(client, container):
                raise LabError(f"the session lease {name} exited at once (image {image})")
        except BaseException:
            _close_socket(sock)
            raise
    except BaseException as error:
        with contextlib.suppress(docker.errors.DockerException):
            client.api.remove_container(container, force=True)
        if isinstance(error, docker.errors.APIError):
            raise LabError(f"cannot start the session lease {name}: {error}") from error
        raise
    log.debug("session %s: lease %s running", session, container[:12])
    return _Lease(client, container, sock)


def _close_socket(sock: object) -> None:
    if sock is None:
        return
    with contextlib.suppress(Exception):
        close = getattr(sock, "close", None)
        if close is not None:
            close()
        raw = getattr(sock, "_sock", None)  # a Unix or TCP socket under the SDK's SocketIO
        if raw is not None:
            raw.close()


def _forget_in_child() -> None:
    """In a child forked without exec: close this copy of the parent's lease connection (the
    parent's stays open: only the last descriptor's close ends it) and forget the session."""
    global _guard, _mine
    _guard = threading.Lock()
    mine, _mine = _mine, None
    for lease in mine.leases.values() if mine is not None else ():
        detach = getattr(getattr(lease.socket, "_sock", lease.socket), "detach", None)
        if callable(detach):  # detached first: the objects' own close is then a no-op
            with contextlib.suppress(OSError, ValueError, TypeError):
                os.close(int(detach()))
        lease.socket = None


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(release)
