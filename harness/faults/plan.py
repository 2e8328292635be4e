"""A backend's plan: the sidecar's command, then argument vectors to apply and to remove (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

Argv = list[str]


@dataclass(frozen=True)
class Plan:
    backend: str
    engine: Argv  # the sidecar's command (``idle`` when nothing runs in user space)
    apply: list[Argv] = field(default_factory=list)
    # Each run once, failures ignored: removing what is not there is not an error (idempotent).
    remove: list[Argv] = field(default_factory=list)
