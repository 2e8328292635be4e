"""Toxics: one module per kind, each a pure transformation over a stream of chunks (``base``).

``ToxicSpec`` is a toxic described as data, in Toxiproxy's vocabulary and units (JSON-friendly,
what the control socket carries); ``ToxicSpec.build(rng)`` makes one stateful instance for one
direction of one connection. ``UNITS`` (type -> attribute -> unit) gathers what each module
declares, for the harness to convert "20ms" or "1mbit" into these numbers:

| type | attributes (Toxiproxy's units) |
| --- | --- |
| latency | latency ms, jitter ms |
| bandwidth | rate KB/s (1000 bytes) |
| slicer | average_size bytes, size_variation bytes, delay us |
| reset_peer | timeout ms |
| timeout | timeout ms (0: hold until removed) |
| slow_close | delay ms |
| limit_data | bytes |
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import bandwidth, latency, limit_data, reset_peer, slicer, slow_close, timeout
from .base import STREAMS, Action, Close, Emit, Eof, Stream, Toxic, Unit, parse_stream

KINDS: dict[str, Callable[[dict[str, object], random.Random], Toxic]] = {
    "latency": latency.make,
    "bandwidth": bandwidth.make,
    "slicer": slicer.make,
    "reset_peer": reset_peer.make,
    "timeout": timeout.make,
    "slow_close": slow_close.make,
    "limit_data": limit_data.make,
}
UNITS: dict[str, dict[str, Unit]] = {
    "latency": latency.ATTRIBUTES,
    "bandwidth": bandwidth.ATTRIBUTES,
    "slicer": slicer.ATTRIBUTES,
    "reset_peer": reset_peer.ATTRIBUTES,
    "timeout": timeout.ATTRIBUTES,
    "slow_close": slow_close.ATTRIBUTES,
    "limit_data": limit_data.ATTRIBUTES,
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ToxicSpec:
    """One toxic as data: validated on construction (a bad one fails before anything runs)."""

    type: str
    stream: Stream = "downstream"
    attributes: dict[str, Any] = field(default_factory=dict)
    toxicity: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.type not in KINDS:
            raise ValueError(f"toxic type must be one of {', '.join(KINDS)}, got {self.type!r}")
        parse_stream(self.stream)
        if isinstance(self.toxicity, bool) or not isinstance(self.toxicity, int | float):
            raise ValueError(f"toxicity must be a number 0..1, got {self.toxicity!r}")
        if not 0.0 <= self.toxicity <= 1.0:
            raise ValueError(f"toxicity must be within 0..1, got {self.toxicity!r}")
        if not self.name:
            object.__setattr__(self, "name", f"{self.type}_{self.stream}")
        if not _NAME.match(self.name):
            raise ValueError(f"toxic name must match {_NAME.pattern}, got {self.name!r}")
        self.build(random.Random(0))  # validates the attributes

    def build(self, rng: random.Random) -> Toxic:
        return KINDS[self.type](dict(self.attributes), rng)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToxicSpec:
        unknown = sorted(set(data) - {"name", "type", "stream", "toxicity", "attributes"})
        if unknown:
            raise ValueError(f"unknown toxic field(s): {', '.join(unknown)}")
        if "type" not in data:
            raise ValueError("a toxic needs a type")
        return cls(
            type=data["type"],
            stream=data.get("stream", "downstream"),
            attributes=dict(data.get("attributes") or {}),
            toxicity=data.get("toxicity", 1.0),
            name=data.get("name", ""),
        )


__all__ = [
    "KINDS",
    "STREAMS",
    "UNITS",
    "Action",
    "Close",
    "Emit",
    "Eof",
    "Stream",
    "Toxic",
    "ToxicSpec",
    "Unit",
    "parse_stream",
]
