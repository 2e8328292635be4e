"""Which faults this host can apply for real, tried in a throwaway sidecar (``--network none``).

Why try rather than read ``/proc/config.gz``: the file is often absent, a ``=m`` module may or
may not load from a container, and only a real ``tc qdisc add ... netem`` and a packet through a
real NFQUEUE prove the path. The probe touches only the loopback of a namespace that dies with
its container; it takes about 0.6 s and is cached per Docker engine for the process.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field

import docker.errors
from docker.client import DockerClient

from harness import labels
from harness import session as sessions
from harness.errors import ConfigError, FaultUnsupported
from harness.faults.backend import Backend
from harness.faults.engine import Engine
from harness.faults.model import Impairment
from harness.faults.netem import Netem

_CACHE: dict[str, Report] = {}
# The packet backends, by the name ``backend=`` / ``--backend`` takes.
BACKENDS: dict[str, Backend] = {"netem": Netem(), "nfqueue": Engine()}


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True)
class Report:
    netem: Check
    tbf: Check
    nfqueue: Check
    kernel_config: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "applies": self.can()}

    def __str__(self) -> str:
        lines = [
            f"{name:<8} {'yes' if check.ok else 'no ':<4} {check.detail}"
            for name, check in (("netem", self.netem), ("tbf", self.tbf), ("nfqueue", self.nfqueue))
        ]
        lines += [f"{kind} -> {backend}" for kind, backend in self.can().items()]
        return "\n".join(lines)

    def can(self) -> dict[str, str]:
        """Each fault kind -> the backend that applies it here, or ``"unsupported"``."""
        user = "nfqueue" if self.nfqueue.ok else None
        return {
            "latency": "netem" if self.netem.ok else (user or "unsupported"),
            "loss": "netem" if self.netem.ok else (user or "unsupported"),
            "bandwidth": "netem" if self.netem.ok else ("tbf" if self.tbf.ok else "unsupported"),
        }

    def missing(self, backend: str) -> str | None:
        """Why ``backend`` cannot run here (the probe's own words), or None if it can."""
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        check = self.netem if backend == "netem" else self.nfqueue
        return None if check.ok else check.detail

    def backend_for(self, impairment: Impairment, forced: str | None = None) -> Backend:
        """``netem`` where the kernel has it, else ``nfqueue`` (tbf for rate); or raise."""
        if forced is not None and forced not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {forced!r}")
        choice = forced or ("netem" if self.netem.ok else "nfqueue")
        needed = {f.kind for f in impairment.faults()}
        if choice == "netem" and not self.netem.ok:
            raise FaultUnsupported(f"netem is not usable here: {self.netem.detail}")
        if choice == "nfqueue":
            missing = []
            if needed & {"latency", "loss"} and not self.nfqueue.ok:
                missing.append(f"NFQUEUE ({self.nfqueue.detail})")
            if "bandwidth" in needed and not self.tbf.ok:
                missing.append(f"tbf ({self.tbf.detail})")
            if missing:
                raise FaultUnsupported("this host cannot apply: " + "; ".join(missing))
        return BACKENDS[choice]


def parse_report(text: str) -> Report:
    data = json.loads(text.strip().splitlines()[-1])
    return Report(
        netem=Check(**data["netem"]),
        tbf=Check(**data["tbf"]),
        nfqueue=Check(**data["nfqueue"]),
        kernel_config=dict(data.get("kernel_config", {})),
    )


def preflight(
    client: DockerClient, image: str, *, refresh: bool = False, session: str | None = None
) -> Report:
    """What this host can apply, tried in a throwaway engine container of ``image``, owned by
    ``session`` (default: this process's; the user's for a fault applied from the command line,
    which makes no lease)."""
    key = f"{client.info().get('ID', '')}:{image}"
    if key in _CACHE and not refresh:
        return _CACHE[key]
    container = client.containers.create(
        image,
        command=["probe"],
        network_mode="none",
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN"],
        labels=labels.lab_labels(
            "preflight", "fault-preflight", sessions.owning(client, image, session)
        ),
    )
    try:
        container.start()
        status = container.wait(timeout=60)
        output = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        if status.get("StatusCode") != 0 or not output.strip():
            errors = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
            raise FaultUnsupported(f"the fault preflight failed: {errors[-2000:]}")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    report = parse_report(output)
    _CACHE[key] = report
    return report
