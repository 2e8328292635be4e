"""A lab described as data: what to build, separate from building it (as Mininet's Topo).

Specs are frozen and validated on construction, so a bad experiment fails before any container
exists, and a spec can be stored beside its results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FRAMINGS = ("line", "raw")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def _positive(name: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


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
            raise ValueError(f"framing must be one of {FRAMINGS}, got {self.framing!r}")
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
    """What each client sends: the client's batch-mode flags."""

    count: int = 100
    size: int = 64
    pipeline: int = 1
    rate: float | None = None
    timeout: float = 120.0
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        _positive("count", self.count)
        _positive("size", self.size)
        _positive("pipeline", self.pipeline)
        _positive("timeout", self.timeout)
        _positive("connect_timeout", self.connect_timeout)
        if self.rate is not None:
            _positive("rate", self.rate)

    def command(self, client_id: str) -> list[str]:
        argv = [
            "--id", client_id,
            "--count", str(self.count),
            "--size", str(self.size),
            "--pipeline", str(self.pipeline),
            "--timeout", str(self.timeout),
            "--connect-timeout", str(self.connect_timeout),
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
    # Containers created and started at once. Measured with benchmarks/startup.py on 2 cores, 50
    # clients, three runs: all at once (64, Compose's limit) has them *started* ~0.8 s sooner
    # than a pool of 16, but *done* ~0.6 s later (the clients' start-up then competes with
    # dockerd's). Experiments wait for the clients, not for dockerd: 16.
    start_parallelism: int = 16
    health_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"name must match {_NAME.pattern}, got {self.name!r}")
        _positive("clients", self.clients, zero_ok=True)
        _positive("start_parallelism", self.start_parallelism)
        _positive("health_timeout", self.health_timeout)
