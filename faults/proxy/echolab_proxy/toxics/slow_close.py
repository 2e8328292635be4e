"""slow_close: the end of the stream (EOF, or a graceful close) is delayed by ``delay`` ms.

Data is untouched; an RST is not delayed.
"""

from __future__ import annotations

import random

from .base import Action, Close, Eof, Toxic, Unit, number, only

ATTRIBUTES: dict[str, Unit] = {"delay": "ms"}


class SlowClose(Toxic):
    def __init__(self, delay_ms: float) -> None:
        self.delay = delay_ms / 1000.0

    def on_eof(self, now: float) -> list[Action]:
        return [Eof(now + self.delay)]

    def on_close(self, close: Close) -> list[Action]:
        return [close if close.reset else Close(close.at + self.delay)]


def make(attributes: dict[str, object], rng: random.Random) -> SlowClose:
    only(attributes, ATTRIBUTES, "slow_close")
    return SlowClose(number(attributes, "delay", 0))
