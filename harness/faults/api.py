"""``impair(lab, target, delay="20ms", ...)``: apply faults for the duration of a ``with``.

Everything is validated before anything changes: the parameters (``Impairment.parse``), the
target, what the host can do (``preflight``), the sidecar image. Then one sidecar per target
container applies the backend's plan; leaving the ``with`` (normally, by an exception or by
Ctrl-C) removes every one of them.

Targets: ``"server"``, a client id (``"c0"``) or ``"clients"`` (every client container of the
lab that exists now: start the clients before impairing them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.faults import netem, nfqueue
from harness.faults.preflight import Report, preflight
from harness.faults.sidecar import FaultError, Sidecar
from harness.faults.spec import Impairment


class LabLike(Protocol):
    @property
    def docker(self) -> DockerClient: ...
    @property
    def server(self) -> Container: ...

    id: str


@dataclass
class Applied:
    """What is in force: the backend (named in every result), the targets, the impairment."""

    backend: str
    impairment: Impairment
    targets: list[str]
    report: Report
    sidecars: list[Sidecar] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        imp = self.impairment
        return {
            "backend": self.backend,
            "targets": self.targets,
            "direction": imp.direction,
            "delay_s": imp.delay,
            "jitter_s": imp.jitter,
            "correlation": imp.correlation,
            "loss": imp.loss,
            "rate_bit_s": imp.rate,
            "seed": imp.seed,
        }

    def engine_stats(self) -> dict[str, dict[str, Any]]:
        """Per target, what the engine counted (after the ``with`` block has ended)."""
        return {s.target.name: s.stats for s in self.sidecars}


def resolve_targets(lab: LabLike, target: str) -> list[Container]:
    if not isinstance(target, str) or not target:
        raise ValueError(f"target must be 'server', 'clients' or a client id, got {target!r}")
    if target == "server":
        return [lab.server]
    extra = {labels.LAB: lab.id, labels.ROLE: "client"}
    if target != "clients":
        extra["org.echolab.client"] = target
    found = lab.docker.containers.list(filters=labels.project_filter(**extra))
    if not found:
        which = "no running client" if target == "clients" else f"no running client {target!r}"
        raise ValueError(
            f"unknown target: {which} in lab {lab.id} (targets: 'server', 'clients' or a "
            "running client's id; start clients before impairing them)"
        )
    return sorted(found, key=lambda c: c.name)


@contextmanager
def impair(
    lab: LabLike,
    target: str,
    *,
    backend: str | None = None,
    dev: str = "eth0",
    **params: Any,
) -> Iterator[Applied]:
    """Impair ``target``'s traffic inside the ``with``; see ``Impairment`` for the parameters."""
    from harness.faults import image  # here: `python -m harness.faults.image` runs it as main

    impairment = Impairment.parse(**params)
    containers = resolve_targets(lab, target)
    client = lab.docker
    try:
        client.images.get(image.SIDECAR_IMAGE)
    except docker.errors.ImageNotFound as error:
        raise FaultError(
            f"image {image.SIDECAR_IMAGE} not found: build it with `python -m harness.faults.image`"
        ) from error
    report = preflight(client, image.SIDECAR_IMAGE)
    chosen = report.backend_for(impairment, backend)
    plan = netem.plan(impairment, dev) if chosen == "netem" else nfqueue.plan(impairment, dev)
    applied = Applied(plan.backend, impairment, [c.name for c in containers], report)
    try:
        for container in containers:
            sidecar = Sidecar(client, container, lab.id, plan, image.SIDECAR_IMAGE)
            applied.sidecars.append(sidecar)
            sidecar.apply()
        yield applied
    finally:
        for sidecar in reversed(applied.sidecars):
            sidecar.remove()
