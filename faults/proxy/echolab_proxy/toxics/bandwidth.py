"""bandwidth: at most ``rate`` KB/s (1 KB = 1000 bytes) in this direction.

Each chunk is cut into pieces of at most 100 ms worth of bytes; a piece is written when the
link would have finished sending it at ``rate`` (the link is busy until then, so bursts queue
behind each other). A graceful end waits for the data before it; an RST does not.
"""

from __future__ import annotations

import random

from .base import Action, Close, Emit, Eof, Toxic, Unit, number, only

ATTRIBUTES: dict[str, Unit] = {"rate": "KB/s"}
PIECE_S = 0.1


class Bandwidth(Toxic):
    def __init__(self, rate_kb_s: float) -> None:
        self.rate = rate_kb_s * 1000.0  # bytes per second
        self.piece = max(1, int(self.rate * PIECE_S))
        self.free = float("-inf")  # when the link has sent everything given to it so far

    def on_chunk(self, data: bytes, now: float) -> list[Action]:
        out: list[Action] = []
        for start in range(0, len(data), self.piece):
            piece = data[start : start + self.piece]
            self.free = max(now, self.free) + len(piece) / self.rate
            out.append(Emit(piece, self.free))
        return out

    def on_eof(self, now: float) -> list[Action]:
        return [Eof(max(now, self.free))]

    def on_close(self, close: Close) -> list[Action]:
        return [close if close.reset else Close(max(close.at, self.free))]


def make(attributes: dict[str, object], rng: random.Random) -> Bandwidth:
    only(attributes, ATTRIBUTES, "bandwidth")
    rate = number(attributes, "rate", 0)
    if rate <= 0:
        raise ValueError(f"bandwidth: rate must be > 0 KB/s, got {attributes.get('rate')!r}")
    return Bandwidth(rate)
