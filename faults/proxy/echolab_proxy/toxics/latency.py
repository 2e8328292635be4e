"""latency: every chunk is written ``latency`` ms (+- ``jitter`` ms, uniform) after it was read.

Order is kept: a chunk never overtakes the one before it (so jitter widens gaps, it never
reorders bytes, unlike netem's jitter on packets). A graceful end (EOF, close) is delayed the
same way, after the data; an RST is not (it discards unsent data anyway).
"""

from __future__ import annotations

import random

from .base import Action, Close, Emit, Eof, Toxic, Unit, number, only

ATTRIBUTES: dict[str, Unit] = {"latency": "ms", "jitter": "ms"}


class Latency(Toxic):
    def __init__(self, latency_ms: float, jitter_ms: float, rng: random.Random) -> None:
        self.latency = latency_ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self.rng = rng
        self.last = float("-inf")

    def _at(self, now: float) -> float:
        delay = self.latency
        if self.jitter:
            delay = max(0.0, delay + self.rng.uniform(-self.jitter, self.jitter))
        self.last = max(now + delay, self.last)
        return self.last

    def on_chunk(self, data: bytes, now: float) -> list[Action]:
        return [Emit(data, self._at(now))]

    def on_eof(self, now: float) -> list[Action]:
        return [Eof(max(now + self.latency, self.last))]

    def on_close(self, close: Close) -> list[Action]:
        if close.reset:
            return [close]
        return [Close(max(close.at + self.latency, self.last))]


def make(attributes: dict[str, object], rng: random.Random) -> Latency:
    only(attributes, ATTRIBUTES, "latency")
    return Latency(number(attributes, "latency", 0), number(attributes, "jitter", 0), rng)
