"""What a packet-fault backend is (pure): a plan of argument vectors, and the ``Backend`` protocol.

A backend turns an ``Impairment`` into a ``Plan`` (the sidecar's command, then argv to apply
and to remove: never shell strings), says how to change it in place (``Change``), and which
faults cannot stack with it. Two implement it: ``netem`` (the kernel's) and ``nfqueue`` (the
user-space engine, with the kernel's ``tbf`` for rate); ``BACKENDS`` names them, and the
capabilities report picks one for the host. Nothing here touches Docker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from harness.faults.model import Impairment

Argv = list[str]
IDLE: Argv = ["idle"]


@dataclass(frozen=True)
class Plan:
    """What a sidecar does for one fault on one target."""

    backend: str  # the ``Backend``'s name
    mechanism: str  # what does the work: netem, nfqueue, tbf, nfqueue+tbf, iptables
    engine: Argv | None = None  # the engine's command when packets pass through user space
    apply: list[Argv] = field(default_factory=list)
    # Each run once, failures ignored: removing what is not there is not an error (idempotent).
    remove: list[Argv] = field(default_factory=list)

    @property
    def command(self) -> Argv:
        """The sidecar's command: the engine, or ``idle`` (it then only answers control)."""
        return self.engine if self.engine is not None else IDLE


@dataclass(frozen=True)
class Change:
    """How a fault in force becomes another in place: a request to its running engine (if it
    has one), then commands exec'd in its sidecar. No rule or qdisc is re-created."""

    engine: dict[str, float | str] | None = None
    commands: list[Argv] = field(default_factory=list)


class Backend(Protocol):
    name: str

    def plan(self, impairment: Impairment, dev: str, slot: int) -> Plan:
        """The plan for one target; ``slot`` is the target's free fault slot (see nfqueue)."""
        ...

    def change(self, plan: Plan, old: Impairment, new: Impairment, dev: str) -> Change:
        """How ``old`` (applied by ``plan``) becomes ``new`` in place; ConfigError if it
        cannot, saying what to do instead."""
        ...

    def conflict(self, held_backend: str, held: Impairment, new: Impairment) -> str | None:
        """Why ``new`` cannot stack on a target that holds ``held`` (or None: it can)."""
        ...


def overlap(a: Impairment, b: Impairment) -> bool:
    """Whether two impairments act on a common direction."""
    return "both" in (a.direction, b.direction) or a.direction == b.direction


def rate_conflict(held: Impairment, new: Impairment) -> str | None:
    """One rate per target, whatever the backends: a target has one root qdisc."""
    if new.rate is not None and held.rate is not None:
        return "it already has a rate limit: one rate per target; change it with update()"
    return None
