"""What a toxic is: a pure transformation over one direction's stream of chunks.

A toxic never touches a socket or a clock. The link (``link.py``) hands it each chunk read from
one side with the time it was read (``on_chunk(data, now)``), the end of the stream
(``on_eof(now)``), and the passing of time (``on_timer(now)`` once ``now >= deadline()``); the
toxic answers with *actions*, each stamped with the absolute time at which it should happen:

- ``Emit(data, at)``: write ``data`` to the other side at ``at`` (never earlier);
- ``Eof(at)``: half-close: forward the end of this direction (a FIN) at ``at``;
- ``Close(at, reset)``: end the whole proxied connection at ``at``, both sockets; with
  ``reset`` by an RST (``SO_LINGER`` 0) instead of a FIN.

Toxics of a direction form a chain (``chain.py``): each action a toxic emits is fed, at its
``at``, to the next toxic, so a latency toxic followed by a slicer delays and then slices. When
a toxic is removed at run time, ``on_remove(now)`` lets it release what it holds (the
``timeout`` toxic's held bytes). Times are seconds on the link's monotonic clock.

Each toxic module declares its attributes and the unit it takes each in, as data
(``ATTRIBUTES: dict[str, Unit]``): the harness reads them (``toxics.UNITS``) to turn what users
write ("20ms", "1mbit") into these numbers, so the proxy itself never parses a unit.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

Stream = Literal["upstream", "downstream"]
# The unit an attribute's number is in (Toxiproxy's): milliseconds, microseconds, kilobytes
# (1000 bytes) per second, bytes, a fraction 0..1.
Unit = Literal["ms", "us", "KB/s", "bytes", "fraction"]
STREAMS: tuple[Stream, ...] = ("upstream", "downstream")


def parse_stream(text: str) -> Stream:
    """``upstream`` = client -> server, ``downstream`` = server -> client (Toxiproxy's words)."""
    if text not in STREAMS:
        raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {text!r}")
    return text


@dataclass(frozen=True)
class Emit:
    data: bytes
    at: float


@dataclass(frozen=True)
class Eof:
    at: float


@dataclass(frozen=True)
class Close:
    at: float
    reset: bool = False


Action = Emit | Eof | Close


class Toxic:
    """The default toxic passes everything through unchanged, at once.

    ``start(now)`` is called once when the toxic takes effect on a connection: when the
    connection opens, or when the toxic is added to a connection already open.
    """

    def start(self, now: float) -> None:
        return None

    def on_chunk(self, data: bytes, now: float) -> list[Action]:
        return [Emit(data, now)]

    def on_eof(self, now: float) -> list[Action]:
        return [Eof(now)]

    def on_close(self, close: Close) -> list[Action]:
        """A ``Close`` from a toxic earlier in the chain passes through the later ones."""
        return [close]

    def deadline(self) -> float | None:
        """When ``on_timer`` must be called next (``None``: no timer)."""
        return None

    def on_timer(self, now: float) -> list[Action]:
        return []

    def on_remove(self, now: float) -> list[Action]:
        return []


def number(attributes: dict[str, object], name: str, default: float, *, low: float = 0) -> float:
    """A numeric attribute, validated. Bools and strings are refused: a unit is converted by
    the harness into the one the toxic declares, never guessed here."""
    value = attributes.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value!r}")
    return float(value)


def only(attributes: dict[str, object], allowed: Collection[str], kind: str) -> None:
    """Refuse attributes the toxic does not declare (``allowed``: its ``ATTRIBUTES``)."""
    unknown = sorted(set(attributes) - set(allowed))
    if unknown:
        raise ValueError(
            f"{kind}: unknown attribute(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
