"""limit_data: let ``bytes`` bytes through in this direction, then close the connection.

The chunk that crosses the limit is cut at it; the close (a FIN) follows the last byte.
"""

from __future__ import annotations

import random

from .base import Action, Close, Emit, Toxic, Unit, number, only

ATTRIBUTES: dict[str, Unit] = {"bytes": "bytes"}


class LimitData(Toxic):
    def __init__(self, limit: int) -> None:
        self.left = limit
        self.closed = False

    def on_chunk(self, data: bytes, now: float) -> list[Action]:
        if self.closed:
            return []
        out: list[Action] = []
        if self.left:
            out.append(Emit(data[: self.left], now))
        self.left -= min(self.left, len(data))
        if self.left == 0:
            self.closed = True
            out.append(Close(now))
        return out


def make(attributes: dict[str, object], rng: random.Random) -> LimitData:
    only(attributes, ATTRIBUTES, "limit_data")
    limit = number(attributes, "bytes", 0, low=1)
    if not limit.is_integer():
        raise ValueError(f"limit_data: bytes must be a whole number, got {limit:g}")
    return LimitData(int(limit))
