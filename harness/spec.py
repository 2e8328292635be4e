"""A lab described as data: what to build, separate from building it (as Mininet's Topo).

Specs are frozen and validated on construction, so a bad experiment fails before any container
exists, and a spec can be stored beside its results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import ConfigError

FRAMINGS = ("line", "raw")
SERVER_ALIAS = "server"  # the server's DNS name on the lab network
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def _positive(name: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class ServerSpec:
    """The server's settings, passed to it as its ``ECHO_*`` environment."""

    framing: str = "line"
    max_line: int = 65536
    max_connections: int = 10000
    idle_timeout: float = 300.0
    max_pending: int = 1 << 20
    log_format: str = "json"

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ConfigError(f"framing must be one of {FRAMINGS}, got {self.framing!r}")
        _positive("max_line", self.max_line)
        _positive("max_connections", self.max_connections)
        _positive("idle_timeout", self.idle_timeout, zero_ok=True)
        _positive("max_pending", self.max_pending)

    def environment(self) -> dict[str, str]:
        return {
            "ECHO_PORT": "8899",
            "ECHO_FRAMING": self.framing,
            "ECHO_MAX_LINE": str(self.max_line),
            "ECHO_MAX_CONNECTIONS": str(self.max_connections),
            "ECHO_IDLE_TIMEOUT": str(self.idle_timeout),
            "ECHO_MAX_PENDING": str(self.max_pending),
            "ECHO_LOG_FORMAT": self.log_format,
        }


@dataclass(frozen=True)
class Workload:
    """What each client sends: the client's batch-mode flags. ``count``, ``pipeline`` and
    ``rate`` are per connection; a client opens ``connections`` at once."""

    count: int = 100
    size: int = 64
    pipeline: int = 1
    rate: float | None = None
    timeout: float = 120.0
    connect_timeout: float = 30.0
    connections: int = 1

    def __post_init__(self) -> None:
        _positive("count", self.count)
        _positive("connections", self.connections)
        _positive("size", self.size)
        _positive("pipeline", self.pipeline)
        _positive("timeout", self.timeout)
        _positive("connect_timeout", self.connect_timeout)
        if self.rate is not None:
            _positive("rate", self.rate)

    def output_bytes(self) -> int:
        """A generous bound on what one client writes: a JSON line per exchange, holding the
        request and the reply (2 x size) and some 300 bytes of fields; then the verdicts."""
        return self.connections * (self.count * (2 * self.size + 512) + 1024) + (1 << 20)

    def command(self, client_id: str | None) -> list[str]:
        """The client's flags; with no ``client_id``, no ``--id`` (the client takes its id from
        ``ECHO_CLIENT_ID``: a Swarm job's tasks get theirs from a template of their slot)."""
        argv = [
            *(["--id", client_id] if client_id is not None else []),
            "--count", str(self.count),
            "--size", str(self.size),
            "--pipeline", str(self.pipeline),
            "--timeout", str(self.timeout),
            "--connect-timeout", str(self.connect_timeout),
            "--connections", str(self.connections),
        ]  # fmt: skip
        if self.rate is not None:
            argv += ["--rate", str(self.rate)]
        return argv


@dataclass(frozen=True)
class LabSpec:
    """A whole lab: one server, ``clients`` clients running ``workload``."""

    name: str = "echolab"
    clients: int = 1
    workload: Workload = field(default_factory=Workload)
    server: ServerSpec = field(default_factory=ServerSpec)
    server_image: str = "echolab-server:latest"
    client_image: str = "echolab-client:latest"
    # Containers created and started at once: more gets them *started* sooner but *done* later
    # (their start-up competes with dockerd's); experiments wait for the clients, not dockerd.
    # The figures: benchmarks/README.md, make bench-startup.
    start_parallelism: int = 16
    health_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"name must match {_NAME.pattern}, got {self.name!r}")
        _positive("clients", self.clients, zero_ok=True)
        _positive("start_parallelism", self.start_parallelism)
        _positive("health_timeout", self.health_timeout)
        check_capacity(self.server, self.clients, self.workload)

    @property
    def backlog(self) -> int:
        """The server's accept queue (and its namespace's ``net.core.somaxconn``): room for
        every connection of the lab arriving at once, as released clients open theirs in the
        same second; a full queue drops handshakes, retried 1, 3, 7 s later, and connections
        meant to be concurrent end up in sequence."""
        return min(max(1024, self.clients * self.workload.connections), 65535)


def check_capacity(server: ServerSpec, clients: int, workload: Workload) -> None:
    """Refuse, before any container exists, more connections than the server admits: the
    extra ones would be refused mid-run, and the run read as the network's failure."""
    total = clients * workload.connections
    if total > server.max_connections:
        raise ConfigError(
            f"{clients} client(s) x {workload.connections} connection(s) = {total} connections, "
            f"more than the server admits (ServerSpec max_connections={server.max_connections})"
        )
