"""``impair(lab, target, delay="20ms", ...)``: packet faults for the duration of a ``with``.

Everything is validated before anything changes: the parameters (``Impairment.parse``), the
target, what the host can do (the capabilities report), the engine image (built if missing or
stale), what other faults already hold the target. Then one sidecar per target container
applies the backend's plan; leaving the ``with`` (normally, by an exception or by Ctrl-C)
removes every one of them.

``applied.update(delay="100ms")`` changes the parameters in place while traffic flows (the
engine's control, ``tc qdisc change``): no rule or qdisc is re-created, no held packet is
dropped or reordered. Faults stack: a second ``impair`` on the same target (another direction,
or the same one) takes its own slot and is removed on its own, in any order.

What a fault applies is kept in one place, its sidecar's note: ``Applied.status()``,
``in_force()`` (``lab.faults()``, ``python -m harness faults``) and ``attach`` all read it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from docker.client import DockerClient
from docker.models.containers import Container

from harness import images, labels
from harness.containers import name_of
from harness.errors import ConfigError, FaultError
from harness.faults import engine, sidecar
from harness.faults.backend import Backend, Plan
from harness.faults.capabilities import BACKENDS, Report, preflight
from harness.faults.model import Direction, Distribution, Impairment
from harness.faults.sidecar import Sidecar, SidecarLike
from harness.faults.target import LabLike, Target, resolve_targets

_FIXED = ("direction", "seed", "keep_order")
# An engine that releases 1 % of its packets later than this has not applied the delay asked.
DRIFT_LATE_US = 200.0
log = logging.getLogger(__name__)
Duration = str | float
T = TypeVar("T")  # a target: a container here, a Swarm task through its node's agent
S = TypeVar("S", bound=SidecarLike)
Percent = str | float


@dataclass
class Applied:
    """A fault in force: its backend, targets and impairment; ``update`` and ``remove`` it."""

    backend: Backend
    impairment: Impairment
    targets: list[str]
    sidecars: list[SidecarLike] = field(default_factory=list)
    dev: str = "eth0"

    def describe(self) -> dict[str, Any]:
        """The fault as data: what its sidecars note, and what results record."""
        return describe(self.backend.name, self.mechanism, self.impairment, self.targets)

    @property
    def mechanism(self) -> str:
        return self.sidecars[0].plan.mechanism if self.sidecars else self.backend.name

    def engine_stats(self) -> dict[str, dict[str, Any]]:
        """Per target, what the engine counted (after the ``with`` block has ended)."""
        return {s.target_name: s.stats for s in self.sidecars}

    def drifted(self, late_us_p99: float = DRIFT_LATE_US) -> dict[str, str]:
        """Per target whose engine released its packets late (p99 beyond ``late_us_p99``, by
        its own count, after the ``with``): what a result measured under this fault must say,
        since the delay in force was then not the one configured. Empty when on time."""
        found = {}
        for target, stats in self.engine_stats().items():
            late = stats.get("late_us_p99")
            if late is not None and late > late_us_p99:
                found[target] = (
                    f"the engine on {target} released packets late: p50 {stats.get('late_us_p50')}"
                    f" us, p99 {late} us, max {stats.get('late_us_max')} us (of "
                    f"{stats.get('released')} released); the delay in force drifted from the "
                    "configured one by that much"
                )
        return found

    def status(self) -> dict[str, dict[str, Any]]:
        """Per target, the parameters in force (``note``) and the engine's counters, read from
        the sidecar; FaultError if its engine died or it is gone."""
        return {s.target_name: s.control({"op": "status"}) for s in self.sidecars}

    def check(self, **params: Any) -> Impairment:
        """What ``update(**params)`` would put in force, or ConfigError: nothing changes.
        Direction, seed and keep_order are fixed for the life of a fault."""
        new = Impairment.parse(**{**self.impairment.words(), **params})
        for name in _FIXED:
            if getattr(new, name) != getattr(self.impairment, name):
                raise ConfigError(f"{name} cannot change while a fault is in force: impair again")
        for one in self.sidecars:
            self.backend.change(one.plan, self.impairment, new, self.dev)
        return new

    def update(
        self,
        *,
        delay: Duration | None = None,
        jitter: Duration | None = None,
        correlation: Percent | None = None,
        distribution: Distribution | None = None,
        loss: Percent | None = None,
        rate: str | None = None,
    ) -> None:
        """Change the parameters in force (the others keep their values), on every target;
        validated first (``check``)."""
        given = {
            "delay": delay,
            "jitter": jitter,
            "correlation": correlation,
            "distribution": distribution,
            "loss": loss,
            "rate": rate,
        }
        new = self.check(**{k: v for k, v in given.items() if v is not None})
        for one in self.sidecars:
            change = self.backend.change(one.plan, self.impairment, new, self.dev)
            if change.engine is not None:
                one.control({"op": "set", **change.engine})
            one.run(change.commands)
        self.impairment = new
        for one in self.sidecars:
            one.note({**self.describe(), "target": one.target_name})

    def engage(self) -> None:
        """Put a staged fault (``stage``) in force on every target; on failure undo it all."""
        try:
            for one in self.sidecars:
                one.engage()
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Undo every sidecar of this fault (idempotent; ``impair`` calls it on leaving)."""
        errors: list[BaseException] = []
        for one in reversed(self.sidecars):
            try:
                one.remove()
            except Exception as error:  # remove the others all the same
                errors.append(error)
        if errors:
            raise FaultError(f"removing the fault: {errors[0]}") from errors[0]


def describe(
    backend: str, mechanism: str, impairment: Impairment, targets: list[str]
) -> dict[str, Any]:
    """A fault as JSON-friendly data, in base units (pure); ``impairment_of`` reads it back."""
    imp = impairment
    return {
        "backend": backend,
        "mechanism": mechanism,
        "targets": targets,
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


def impairment_of(described: dict[str, Any]) -> Impairment:
    """The ``Impairment`` that ``describe`` described (pure)."""
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


@dataclass(frozen=True)
class Held:
    """A fault a target already holds, as far as stacking a new one is concerned."""

    sidecar: str
    slot: int
    backend: str
    impairment: Impairment | None  # None: a block (a rule of its own, no slot, no queue)


def free_slot(target: str, held: Sequence[Held], new: Impairment, backend: Backend) -> int:
    """A free slot on ``target`` for ``new``, or FaultError saying why it cannot stack (pure)."""
    used = set()
    for other in held:
        if other.impairment is None:
            continue
        used.add(other.slot)
        why = backend.conflict(other.backend, other.impairment, new)
        if why:
            raise FaultError(f"{target} cannot take this fault ({other.sidecar}): {why}")
    free = [slot for slot in range(engine.MAX_SLOTS) if slot not in used]
    if not free:
        raise FaultError(
            f"{target} already holds {len(used)} faults, the most that stack on one target"
        )
    return free[0]


def held_by(client: DockerClient, target: Container) -> list[Held]:
    """The faults in force on ``target``, read from their sidecars (their notes)."""
    found = []
    for one in sidecar.of_target(client, target):
        impairing = one.labels.get(labels.FAULT_KIND) == "impair"
        note = sidecar.describe(one) if impairing else {}
        found.append(
            Held(
                sidecar=name_of(one),
                slot=int(one.labels.get(labels.FAULT_SLOT, "0")),
                backend=str(note.get("backend", "")),
                impairment=impairment_of(note) if impairing else None,
            )
        )
    return found


def apply(
    lab: LabLike,
    target: Target,
    impairment: Impairment,
    *,
    backend: str | None = None,
    dev: str = "eth0",
) -> Applied:
    """Apply ``impairment`` now and return what is in force; ``Applied.remove()`` undoes it."""
    applied = stage(lab, target, impairment, backend=backend, dev=dev)
    applied.engage()
    return applied


def stage(
    lab: LabLike,
    target: Target,
    impairment: Impairment,
    *,
    backend: str | None = None,
    dev: str = "eth0",
) -> Applied:
    """All of ``apply`` but the last step: validated, slots taken, sidecars started and their
    engines ready, the traffic untouched; ``Applied.engage()`` then puts the fault in force
    in the time of an exec or two, not a container start. ``Applied.remove()`` undoes it."""
    containers = resolve_targets(lab, target)
    client = lab.docker
    image = images.tag_for(client, "engine")
    chosen = report(client, lab.session).backend_for(impairment, backend)

    def sidecar_of(container: Container, plan: Plan, slot: int, note: dict[str, Any]) -> Sidecar:
        return Sidecar(
            client, container, lab.id, plan, image, slot=slot, session=lab.session,
            description=note,
        )  # fmt: skip

    return put_on(
        chosen, impairment, containers, dev,
        name=name_of, held=lambda c: held_by(client, c), sidecar=sidecar_of,
        start=lambda one: one.start(),
    )  # fmt: skip


def put_on(
    chosen: Backend,
    impairment: Impairment,
    targets: Sequence[T],
    dev: str,
    *,
    name: Callable[[T], str],
    held: Callable[[T], list[Held]],
    sidecar: Callable[[T, Plan, int, dict[str, Any]], S],
    start: Callable[[S], None],
) -> Applied:
    """The one way a fault is put on its targets, wherever their sidecars run (this engine, a
    Swarm node's agent): a slot on each target (or why it cannot stack there), the backend's
    plan for that slot, a sidecar per target made by ``sidecar`` (given its note) and started
    by ``start``. On any failure, or Ctrl-C, every sidecar made so far is removed."""
    slots = {name(t): free_slot(name(t), held(t), impairment, chosen) for t in targets}
    applied = Applied(chosen, impairment, [name(t) for t in targets], dev=dev)
    try:
        for one in targets:
            slot = slots[name(one)]
            plan = chosen.plan(impairment, dev, slot)
            note = {**describe(chosen.name, plan.mechanism, impairment, applied.targets),
                    "target": name(one)}  # fmt: skip
            made = sidecar(one, plan, slot, note)
            applied.sidecars.append(made)
            start(made)
    except BaseException:
        applied.remove()
        raise
    return applied


def report(client: DockerClient, session: str | None = None) -> Report:
    """What this host can apply (cached per engine for the process)."""
    return preflight(client, images.tag_for(client, "engine"), session=session)


@contextmanager
def impair(
    lab: LabLike,
    target: Target,
    impairment: Impairment,
    *,
    backend: str | None = None,
    dev: str = "eth0",
) -> Iterator[Applied]:
    """Impair ``target``'s traffic inside the ``with``."""
    with holding(apply(lab, target, impairment, backend=backend, dev=dev)) as applied:
        yield applied


@contextmanager
def holding(applied: Applied) -> Iterator[Applied]:
    """``applied`` in force inside the ``with``: removed on leaving, however it is left, and
    a drift of its engine said (results measured under it must not pass for exact)."""
    try:
        yield applied
    finally:
        applied.remove()
        for why in applied.drifted().values():
            log.warning("%s", why)


def attach(client: DockerClient, container: Container) -> Applied:
    """The fault a running ``impair`` sidecar holds, as an ``Applied`` another process can
    ``update`` or ``remove`` (the command line's ``update``), read from its note."""
    if container.labels.get(labels.FAULT_KIND) != "impair":
        kind = container.labels.get(labels.FAULT_KIND)
        raise ConfigError(f"{container.name} is a {kind}, not an impairment")
    note = sidecar.describe(container)
    target = client.containers.get(container.labels[labels.FAULT_TARGET])
    chosen = BACKENDS[container.labels[labels.FAULT_BACKEND]]
    command = list(container.attrs["Config"]["Cmd"] or [])
    plan = Plan(
        backend=chosen.name,
        mechanism=str(note.get("mechanism", chosen.name)),
        engine=command if command[:1] == ["run"] else None,
        remove=[list(argv) for argv in json.loads(container.labels.get(labels.FAULT_REMOVE, "[]"))],
    )
    image = container.image
    handle = Sidecar(
        client,
        target,
        container.labels.get(labels.LAB, ""),
        plan,
        image.tags[0] if image is not None and image.tags else container.attrs["Image"],
        container=container,
        slot=int(container.labels.get(labels.FAULT_SLOT, "0")),
        description=note,
    )
    return Applied(chosen, impairment_of(note), [name_of(target)], sidecars=[handle])


def in_force(client: DockerClient, lab_id: str) -> list[dict[str, Any]]:
    """Every fault sidecar of a lab, as its sidecar says: target, slot, kind, state, the
    parameters in force (its note) and its engine's counters. A sidecar whose engine died says
    so (``state: died``, with why) and shows no parameters: nothing is applied any more."""
    found = client.containers.list(
        all=True, filters=labels.project_filter(**{labels.LAB: lab_id, labels.ROLE: sidecar.ROLE})
    )
    listed = []
    for container in sorted(found, key=lambda c: (c.labels.get(labels.FAULT_TARGET, ""), c.name)):
        entry: dict[str, Any] = {
            "sidecar": container.name,
            "target": container.labels.get(labels.FAULT_TARGET),
            "slot": int(container.labels.get(labels.FAULT_SLOT, "0")),
            "kind": container.labels.get(labels.FAULT_KIND),
            "backend": container.labels.get(labels.FAULT_BACKEND),
        }
        try:
            answer = sidecar.request_running(container, {"op": "status"})
        except FaultError as error:
            entry.update(state="died", why=str(error), params=None)
        else:
            entry.update(state="running", params=answer.get("note") or {})
            counted = {k: answer[k] for k in ("seen", "dropped", "released") if k in answer}
            if counted:
                entry["engine"] = counted
        listed.append(entry)
    return listed


__all__ = [
    "Applied",
    "Direction",
    "apply",
    "attach",
    "describe",
    "impair",
    "impairment_of",
    "in_force",
]
