"""slicer: each chunk is split into segments of ``average_size`` +- ``size_variation`` bytes,
written ``delay`` microseconds apart (Toxiproxy's units), so the peer reads them separately.

With ``average_size=1, size_variation=0`` every byte is its own write: the receiver's framing
must reassemble lines from 1-byte reads. The gap holds across chunks too (the first segment
of a chunk comes at least ``delay`` after the last segment of the one before).
"""

from __future__ import annotations

import random

from .base import Action, Close, Emit, Eof, Toxic, Unit, number, only

ATTRIBUTES: dict[str, Unit] = {"average_size": "bytes", "size_variation": "bytes", "delay": "us"}


class Slicer(Toxic):
    def __init__(self, average: int, variation: int, delay_us: float, rng: random.Random) -> None:
        self.average = average
        self.variation = variation
        self.delay = delay_us / 1e6
        self.rng = rng
        self.last = float("-inf")

    def sizes(self, total: int) -> list[int]:
        sizes = []
        while total > 0:
            spread = self.rng.randint(-self.variation, self.variation) if self.variation else 0
            size = min(total, max(1, self.average + spread))
            sizes.append(size)
            total -= size
        return sizes

    def on_chunk(self, data: bytes, now: float) -> list[Action]:
        out: list[Action] = []
        offset = 0
        for size in self.sizes(len(data)):
            self.last = max(now, self.last + self.delay)
            out.append(Emit(data[offset : offset + size], self.last))
            offset += size
        return out

    def on_eof(self, now: float) -> list[Action]:
        return [Eof(max(now, self.last))]

    def on_close(self, close: Close) -> list[Action]:
        return [close if close.reset else Close(max(close.at, self.last))]


def make(attributes: dict[str, object], rng: random.Random) -> Slicer:
    only(attributes, ATTRIBUTES, "slicer")
    average = number(attributes, "average_size", 1, low=1)
    variation = number(attributes, "size_variation", 0)
    if not average.is_integer() or not variation.is_integer():
        raise ValueError("slicer: average_size and size_variation are whole bytes")
    if variation >= average:
        raise ValueError(
            f"slicer: size_variation ({variation:g}) must be < average_size ({average:g})"
        )
    return Slicer(int(average), int(variation), number(attributes, "delay", 0), rng)
