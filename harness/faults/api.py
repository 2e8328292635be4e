"""``impair(lab, target, delay="20ms", ...)``: apply faults for the duration of a ``with``.

Everything is validated before anything changes: the parameters (``Impairment.parse``), the
target, what the host can do (``preflight``), the sidecar image, what other faults already hold
the target. Then one sidecar per target container applies the backend's plan; leaving the
``with`` (normally, by an exception or by Ctrl-C) removes every one of them.

``applied.update(delay="100ms")`` changes the parameters in place while traffic flows (the
engine's control socket, ``tc qdisc change``): no rule or qdisc is re-created, no held packet is
dropped or reordered. Faults stack: a second ``impair`` on the same target (another direction,
or the same one) takes its own slot and is removed on its own, in any order.

Targets: ``"server"``, a client id (``"c0"``), several (``["c0", "c2"]``) or ``"clients"``
(every client container of the lab that exists now: ``lab.create_clients()`` makes them
before they send anything). A lab may resolve targets itself (``resolve_target``, e.g. the
Compose adapter) and say who owns the sidecars (``owner_pid``: 0 for faults that outlive the
process, as from the command line).
``apply`` is the same without the ``with``: the caller removes what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.faults import netem, nfqueue
from harness.faults.plan import Plan
from harness.faults.preflight import Report, preflight
from harness.faults.sidecar import (
    BACKEND,
    DESCRIPTION,
    KIND,
    REMOVE,
    SLOT,
    TARGET,
    FaultError,
    Sidecar,
)
from harness.faults.spec import Impairment

_FIXED = ("direction", "seed", "keep_order")


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
    report: Report | None  # None when attached to a fault in force (``attach``)
    sidecars: list[Sidecar] = field(default_factory=list)
    words: dict[str, Any] = field(default_factory=dict)
    dev: str = "eth0"

    def describe(self) -> dict[str, Any]:
        imp = self.impairment
        return {
            "backend": self.backend,
            "targets": self.targets,
            "direction": imp.direction,
            "delay_s": imp.delay,
            "jitter_s": imp.jitter,
            "distribution": imp.distribution,
            "correlation": imp.correlation,
            "loss": imp.loss,
            "rate_bit_s": imp.rate,
            "seed": imp.seed,
            "keep_order": imp.keep_order,
        }

    def engine_stats(self) -> dict[str, dict[str, Any]]:
        """Per target, what the engine counted (after the ``with`` block has ended)."""
        return {s.target.name: s.stats for s in self.sidecars}

    def status(self) -> dict[str, dict[str, Any]]:
        """Per target, the engine's current parameters and counters (while in force)."""
        return {s.target.name: s.control({"op": "status"}) for s in self.sidecars}

    def check(self, **params: Any) -> tuple[Impairment, dict[str, Any]]:
        """What ``update(**params)`` would put in force (and its words), or ValueError: nothing
        changes. Direction, seed and keep_order are fixed for the life of a fault. With the
        user-space engine a fault keeps its kinds: delay/jitter/loss can change (to 0 too) if
        the engine runs, rate if tbf was set; open another ``impair`` to add a kind."""
        words = {**self.words, **params}
        new = Impairment.parse(**words)
        for name in _FIXED:
            if getattr(new, name) != getattr(self.impairment, name):
                raise ValueError(f"{name} cannot change while a fault is in force: impair again")
        if self.backend != "netem":
            engine_runs = self.sidecars and self.sidecars[0].plan.engine[0] == "run"
            if (new.delay or new.jitter or new.loss) and not engine_runs:
                raise ValueError(
                    "this fault has no packet engine (rate only): add delay or loss with another "
                    "impair() on the same target"
                )
            if (new.rate is None) != (self.impairment.rate is None):
                raise ValueError("rate cannot be added or removed by update: impair again")
        return new, words

    def update(self, **params: Any) -> None:
        """Change the parameters in force (the others keep their values), on every target;
        validated first (``check``)."""
        new, words = self.check(**params)
        for sidecar in self.sidecars:
            if self.backend == "netem":
                sidecar.run(netem.update(new, self.dev))
            else:
                request, commands = nfqueue.update(new, self.dev)
                if sidecar.plan.engine[0] == "run":
                    sidecar.control({"op": "set", **request})
                sidecar.run(commands)
        self.impairment, self.words = new, words
        for sidecar in self.sidecars:
            sidecar.description = {**self.describe(), "target": sidecar.target.name}
            sidecar.control({"op": "note", "note": sidecar.description})

    def remove(self) -> None:
        """Undo every sidecar of this fault (idempotent; ``impair`` calls it on leaving)."""
        errors: list[BaseException] = []
        for sidecar in reversed(self.sidecars):
            try:
                sidecar.remove()
            except Exception as error:  # remove the others all the same
                errors.append(error)
        if errors:
            raise FaultError(f"removing the fault: {errors[0]}") from errors[0]


Target = str | Sequence[str]


def resolve_targets(lab: LabLike, target: Target) -> list[Container]:
    """The containers ``target`` names: one name, or several (a list: each resolved, in order,
    each container once); ValueError names the first that is unknown."""
    if not isinstance(target, str):
        if not target or not all(isinstance(name, str) for name in target):
            raise ValueError(f"targets must be a non-empty list of names, got {target!r}")
        found: dict[str, Container] = {}
        for name in target:
            for container in resolve_targets(lab, name):
                found.setdefault(container.name, container)
        return list(found.values())
    if not target:
        raise ValueError(f"target must be 'server', 'clients' or a client id, got {target!r}")
    own = getattr(lab, "resolve_target", None)
    if own is not None:
        return list(own(target))
    if target == "server":
        return [lab.server]
    extra = {labels.LAB: lab.id, labels.ROLE: "client"}
    if target != "clients":
        extra["org.echolab.client"] = target
    found_now = lab.docker.containers.list(filters=labels.project_filter(**extra))
    if not found_now:
        which = "no running client" if target == "clients" else f"no running client {target!r}"
        raise ValueError(
            f"unknown target: {which} in lab {lab.id} (targets: 'server', 'clients' or a "
            "running client's id; create clients with lab.create_clients() to impair them "
            "before they start)"
        )
    return sorted(found_now, key=lambda c: c.name)


def sidecars_of(client: DockerClient, target: Container) -> list[Container]:
    """The running fault sidecars of one target container (its faults in force, blocks too)."""
    return client.containers.list(filters=labels.project_filter(**{TARGET: target.name}))


def _slot_for(target: Container, existing: list[Container], new: Impairment, backend: str) -> int:
    """A free slot on ``target``, or FaultError when the new fault cannot stack there."""
    used = set()
    for other in existing:
        if other.labels.get(KIND, "impair") != "impair":
            continue  # a block: an iptables rule of its own, no slot, no queue
        used.add(int(other.labels.get(SLOT, "0")))
        held = json.loads(other.labels.get(DESCRIPTION, "{}") or "{}")
        direction = held.get("direction")
        overlap = "both" in (direction, new.direction) or direction == new.direction
        if new.rate is not None and held.get("rate_bit_s") is not None:
            raise FaultError(
                f"{target.name} already has a rate limit ({other.name}): one rate per target; "
                "change it with update()"
            )
        if backend == "netem" and held.get("backend") == "netem" and overlap:
            raise FaultError(
                f"{target.name} already has a netem fault on {direction} "
                f"({other.name}): netem has one qdisc per direction; change it with update()"
            )
    free = [slot for slot in range(nfqueue.MAX_SLOTS) if slot not in used]
    if not free:
        raise FaultError(
            f"{target.name} already holds {len(used)} faults, the most that stack on one target"
        )
    return free[0]


def apply(
    lab: LabLike,
    target: Target,
    *,
    backend: str | None = None,
    dev: str = "eth0",
    **params: Any,
) -> Applied:
    """Apply faults now and return what is in force; ``Applied.remove()`` undoes them."""
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
    slots = {c.name: _slot_for(c, sidecars_of(client, c), impairment, chosen) for c in containers}
    applied = Applied(
        "netem" if chosen == "netem" else nfqueue.plan(impairment, dev).backend,
        impairment,
        [c.name for c in containers],
        report,
        words=dict(params),
        dev=dev,
    )
    owner = getattr(lab, "owner_pid", None)
    try:
        for container in containers:
            slot = slots[container.name]
            plan = (
                netem.plan(impairment, dev)
                if chosen == "netem"
                else nfqueue.plan(impairment, dev, queue=slot)
            )
            sidecar = Sidecar(
                client,
                container,
                lab.id,
                plan,
                image.SIDECAR_IMAGE,
                slot=slot,
                owner_pid=owner,
                description={**applied.describe(), "target": container.name},
            )
            applied.sidecars.append(sidecar)
            sidecar.apply()
    except BaseException:
        applied.remove()
        raise
    return applied


def attach(client: DockerClient, sidecar: Container) -> Applied:
    """The fault a running ``impair`` sidecar holds, as an ``Applied`` another process can
    ``update`` or ``remove`` (the command line's ``update``). Its parameters are the ones in
    force, kept by its engine (``note``, refreshed by every update), else its label."""
    if sidecar.labels.get(KIND, "impair") != "impair":
        raise ValueError(f"{sidecar.name} is a {sidecar.labels[KIND]}, not an impairment")
    target = client.containers.get(sidecar.labels[TARGET])
    described = json.loads(sidecar.labels.get(DESCRIPTION, "{}") or "{}")
    plan = Plan(
        backend=sidecar.labels.get(BACKEND, ""),
        engine=list(sidecar.attrs["Config"]["Cmd"] or ["idle"]),
        remove=[list(argv) for argv in json.loads(sidecar.labels.get(REMOVE, "[]"))],
    )
    handle = Sidecar(
        client,
        target,
        sidecar.labels.get(labels.LAB, ""),
        plan,
        sidecar.image.tags[0] if sidecar.image.tags else sidecar.attrs["Image"],
        container=sidecar,
        slot=int(sidecar.labels.get(SLOT, "0")),
        description=described,
    )
    described = handle.control({"op": "status"}).get("note") or described
    impairment = impairment_of(described)
    return Applied(
        str(described.get("backend") or plan.backend),
        impairment,
        [target.name],
        None,
        sidecars=[handle],
        words=impairment.words(),
    )


def impairment_of(described: dict[str, Any]) -> Impairment:
    """The ``Impairment`` that ``Applied.describe()`` described (pure)."""
    rate = described.get("rate_bit_s")
    return Impairment(
        delay=float(described.get("delay_s") or 0.0),
        jitter=float(described.get("jitter_s") or 0.0),
        correlation=float(described.get("correlation") or 0.0),
        loss=float(described.get("loss") or 0.0),
        rate=None if rate is None else int(rate),
        direction=described.get("direction", "egress"),
        seed=int(described.get("seed") or 0),
        keep_order=bool(described.get("keep_order", True)),
        distribution=str(described.get("distribution") or "uniform"),
    )


@contextmanager
def impair(
    lab: LabLike,
    target: Target,
    *,
    backend: str | None = None,
    dev: str = "eth0",
    **params: Any,
) -> Iterator[Applied]:
    """Impair ``target``'s traffic inside the ``with``; see ``Impairment`` for the parameters."""
    applied = apply(lab, target, backend=backend, dev=dev, **params)
    try:
        yield applied
    finally:
        applied.remove()
