"""reset_peer: ``timeout`` ms after the toxic takes effect, end the connection with an RST.

Data flows normally until then. The RST goes to both peers (``SO_LINGER`` 0, then close), so
the client reads "connection reset by peer" and whatever was not yet written is discarded, as
a real RST does. ``timeout=0`` resets at once.
"""

from __future__ import annotations

import random

from .base import Action, Close, Toxic, Unit, number, only

ATTRIBUTES: dict[str, Unit] = {"timeout": "ms"}


class ResetPeer(Toxic):
    def __init__(self, timeout_ms: float) -> None:
        self.timeout = timeout_ms / 1000.0
        self.when: float | None = None

    def start(self, now: float) -> None:
        self.when = now + self.timeout

    def deadline(self) -> float | None:
        return self.when

    def on_timer(self, now: float) -> list[Action]:
        self.when = None
        return [Close(now, reset=True)]


def make(attributes: dict[str, object], rng: random.Random) -> ResetPeer:
    only(attributes, ATTRIBUTES, "reset_peer")
    return ResetPeer(number(attributes, "timeout", 0))
