"""A toxic for the proxy, in the project's one unit vocabulary (pure).

Toxiproxy's names stay (``latency``, ``bandwidth``, ``slicer``, ``reset_peer``, ``timeout``,
``slow_close``, ``limit_data``; ``upstream`` / ``downstream``), its bare numbers in mixed units
do not: durations and rates are spelled as for packet faults (``"20ms"``, ``"1mbit"``); sizes
are plain byte counts. ``Toxic.wire()`` converts to the numbers the proxy's toxics take, as
each toxic's own module declares them (``echolab_proxy.toxics.UNITS``), and the toxic's module
validates them there too, so a bad toxic fails before any container starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from echolab_proxy.toxics import UNITS, ToxicSpec

from harness.errors import ConfigError
from harness.faults.model import parse_duration, parse_rate

Stream = Literal["upstream", "downstream"]
Value = str | int | float

# The proxy's unit -> how a user's spelling becomes that number.
_CONVERT = {
    "ms": lambda text, what: parse_duration(text, what) * 1e3,
    "us": lambda text, what: parse_duration(text, what) * 1e6,
    "KB/s": lambda text, what: parse_rate(text, what) / 8 / 1000,
}


def _size(value: Value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} is a number of bytes >= 0, got {value!r}")
    return value


def _fraction(value: Value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{what} is a fraction within 0..1, got {value!r}")
    return float(value)


def to_wire(kind: str, attributes: Mapping[str, Value]) -> dict[str, float | int]:
    """The attributes in the proxy's units, from the user's spellings; ConfigError names the
    toxic, the attribute and what is allowed."""
    if kind not in UNITS:
        raise ConfigError(f"toxic type must be one of {', '.join(UNITS)}, got {kind!r}")
    units = UNITS[kind]
    unknown = sorted(set(attributes) - set(units))
    if unknown:
        raise ConfigError(
            f"{kind}: unknown attribute(s) {', '.join(unknown)}; allowed: {', '.join(units)}"
        )
    wire: dict[str, float | int] = {}
    for name, value in attributes.items():
        unit, what = units[name], f"{kind} {name}"
        if unit == "bytes":
            wire[name] = _size(value, what)
        elif unit == "fraction":
            wire[name] = _fraction(value, what)
        else:
            wire[name] = _CONVERT[unit](value, what)
    return wire


@dataclass(frozen=True)
class Toxic:
    """One toxic: ``Toxic("latency", {"latency": "20ms", "jitter": "2ms"})``.

    ``stream`` is Toxiproxy's: ``downstream`` (server -> client, the default) or ``upstream``;
    ``toxicity`` the share of connections it hits (seeded by the proxy's ``seed``).
    """

    type: str
    attributes: Mapping[str, Value] = field(default_factory=dict)
    stream: Stream = "downstream"
    toxicity: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        self.wire()  # validated on construction

    def wire(self) -> ToxicSpec:
        """The proxy's own description, in its units (what its control channel carries)."""
        try:
            return ToxicSpec(
                type=self.type,
                stream=self.stream,
                attributes=to_wire(self.type, self.attributes),
                toxicity=self.toxicity,
                name=self.name,
            )
        except ConfigError:
            raise
        except ValueError as error:
            raise ConfigError(str(error)) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Toxic:
        """From a TOML/JSON-style table: ``{"type": ..., "attributes": {...}, ...}``."""
        unknown = sorted(set(data) - {"name", "type", "stream", "toxicity", "attributes"})
        if unknown:
            raise ConfigError(f"unknown toxic field(s): {', '.join(unknown)}")
        if "type" not in data:
            raise ConfigError("a toxic needs a type")
        return cls(
            type=str(data["type"]),
            attributes=dict(data.get("attributes") or {}),
            stream=data.get("stream", "downstream"),
            toxicity=data.get("toxicity", 1.0),
            name=str(data.get("name", "")),
        )

    @property
    def key(self) -> str:
        """The name the proxy knows it by (``<type>_<stream>`` unless named)."""
        return self.wire().name
