"""timeout: hold every byte (nothing gets through), then close the connection after ``timeout``
ms. With ``timeout=0`` the connection stays open and the bytes are held until the toxic is
removed, then released in order (Toxiproxy's behaviour: a server that stops answering).

A close by ``timeout`` is graceful (FIN); the held bytes die with the connection.
"""

from __future__ import annotations

import random

from .base import Action, Close, Emit, Eof, Toxic, Unit, number, only

ATTRIBUTES: dict[str, Unit] = {"timeout": "ms"}


class Timeout(Toxic):
    def __init__(self, timeout_ms: float) -> None:
        self.timeout = timeout_ms / 1000.0
        self.when: float | None = None
        self.held: list[bytes] = []
        self.eof = False

    def start(self, now: float) -> None:
        self.when = now + self.timeout if self.timeout > 0 else None

    def on_chunk(self, data: bytes, now: float) -> list[Action]:
        self.held.append(data)
        return []

    def on_eof(self, now: float) -> list[Action]:
        self.eof = True
        return []

    def deadline(self) -> float | None:
        return self.when

    def on_timer(self, now: float) -> list[Action]:
        self.when = None
        self.held.clear()
        return [Close(now)]

    def on_remove(self, now: float) -> list[Action]:
        out: list[Action] = [Emit(b"".join(self.held), now)] if self.held else []
        if self.eof:
            out.append(Eof(now))
        self.held.clear()
        return out


def make(attributes: dict[str, object], rng: random.Random) -> Timeout:
    only(attributes, ATTRIBUTES, "timeout")
    return Timeout(number(attributes, "timeout", 0))
