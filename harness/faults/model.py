"""Faults described as data (pure): the one unit vocabulary, and the ``Impairment`` a user asks
for, validated before anything in the lab changes.

Units are explicit and spelled as ``tc`` spells them, for packet faults and toxics alike:
durations ``250us``, ``100ms``, ``1.5s``; percentages ``1%``, ``0.5%``; rates ``500kbit``,
``1mbit``, ``1gbit`` (powers of 1000, bits per second). A bare number is refused (is ``100``
milliseconds or seconds?), except ``0``. Bad values raise ``ConfigError`` naming the parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from harness.errors import ConfigError

Direction = Literal["egress", "ingress", "both"]
DIRECTIONS: tuple[Direction, ...] = ("egress", "ingress", "both")
KINDS = ("latency", "loss", "bandwidth")
# netem's delay distributions (``tc ... delay D J distribution NAME``); ``uniform`` is netem's
# built-in default (no table, so no ``distribution`` word on tc's command line).
Distribution = Literal["uniform", "normal", "pareto", "paretonormal"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("uniform", "normal", "pareto", "paretonormal")

_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*([a-zA-Z%]*)\s*$")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_RATE_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}


def _split(what: str, text: str | float) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ConfigError(f"{what} must be a string such as the examples, got {text!r}")
    if not isinstance(text, str):
        if text == 0:
            return 0.0, ""
        raise ConfigError(f"{what} needs a unit, got the bare number {text!r}")
    match = _NUMBER.match(text)
    if not match:
        raise ConfigError(f"{what}: cannot read {text!r}")
    value, unit = float(match.group(1)), match.group(2).lower()
    if value < 0:
        raise ConfigError(f"{what} must be >= 0, got {text!r}")
    if unit == "" and value != 0:
        raise ConfigError(f"{what} needs a unit, got {text!r}")
    return value, unit


def parse_duration(text: str | float, what: str = "duration") -> float:
    """Seconds from ``"250us"``, ``"100ms"``, ``"1.5s"`` (or ``0``)."""
    value, unit = _split(what, text)
    if unit == "":
        return 0.0
    if unit not in _DURATION_UNITS:
        raise ConfigError(
            f"{what}: unknown unit {unit!r} in {text!r}; use one of {', '.join(_DURATION_UNITS)}"
        )
    return value * _DURATION_UNITS[unit]


def parse_percent(text: str | float, what: str = "percentage") -> float:
    """A fraction 0..1 from ``"1%"``, ``"0.5%"`` (or ``0``); over 100 % is an error."""
    value, unit = _split(what, text)
    if unit not in ("%", ""):
        raise ConfigError(f"{what}: unknown unit {unit!r} in {text!r}; write it as '1%'")
    if value > 100:
        raise ConfigError(f"{what} must be within 0%..100%, got {text!r}")
    return value / 100.0


def parse_rate(text: str | float, what: str = "rate") -> int:
    """Bits per second from ``"500kbit"``, ``"1mbit"``, ``"1.5gbit"`` (must be > 0)."""
    value, unit = _split(what, text)
    if unit not in _RATE_UNITS:
        hint = " (tc's 'bps' means bytes/s; write bits, e.g. '8mbit')" if "bps" in unit else ""
        raise ConfigError(
            f"{what}: unknown unit {unit!r} in {text!r}; use one of {', '.join(_RATE_UNITS)}{hint}"
        )
    bits = round(value * _RATE_UNITS[unit])
    if bits < 8:
        raise ConfigError(f"{what} must be at least 8bit, got {text!r}")
    return bits


def parse_direction(text: str) -> Direction:
    if text not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {', '.join(DIRECTIONS)}, got {text!r}")
    return text


def parse_distribution(text: str) -> Distribution:
    if text not in DISTRIBUTIONS:
        raise ConfigError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {text!r}")
    return text


@dataclass(frozen=True)
class Fault:
    """One fault of one kind, as Toxiproxy's toxics: ``latency``, ``loss`` or ``bandwidth``.

    Parameters are plain numbers in base units (seconds, fraction 0..1, bits/s), except
    latency's ``distribution``, a name from ``DISTRIBUTIONS``.
    """

    kind: str
    direction: Direction
    parameters: dict[str, float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"fault kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        parse_direction(self.direction)


@dataclass(frozen=True)
class Impairment:
    """What ``lab.impair(...)`` applies to one target, in base units, validated.

    ``delay`` is added to every packet in ``direction``; the default ``egress`` means packets
    leaving the target, so a round trip through an impaired server grows by exactly ``delay``
    (``both`` adds it on the way in too: ``2 * delay`` per round trip). ``jitter`` spreads it
    uniformly over ``delay +- jitter``, or with another ``distribution`` as netem's tables do
    (``normal``: jitter is the standard deviation; ``pareto``, ``paretonormal``: right-skewed);
    ``loss`` drops each packet with that probability.
    """

    delay: float = 0.0
    jitter: float = 0.0
    correlation: float = 0.0
    loss: float = 0.0
    rate: int | None = None
    direction: Direction = "egress"
    seed: int = 0
    keep_order: bool = True
    distribution: str = "uniform"

    def __post_init__(self) -> None:
        parse_direction(self.direction)
        if not isinstance(self.distribution, str) or self.distribution not in DISTRIBUTIONS:
            raise ConfigError(
                f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}"
            )
        for name in ("delay", "jitter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.jitter > self.delay:
            raise ConfigError(
                f"jitter ({self.jitter * 1e3:g} ms) must not exceed delay "
                f"({self.delay * 1e3:g} ms): a packet cannot leave before it arrived"
            )
        if self.distribution != "uniform" and not self.jitter:
            raise ConfigError(
                f"distribution {self.distribution!r} needs a jitter: it shapes how each "
                "packet's delay spreads around delay (as tc, which refuses it without one)"
            )
        if not 0.0 <= self.correlation <= 1.0:
            raise ConfigError(f"correlation must be within 0%..100%, got {self.correlation!r}")
        if not 0.0 <= self.loss <= 1.0:
            raise ConfigError(f"loss must be within 0%..100%, got {self.loss!r}")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"rate must be > 0, got {self.rate!r}")
        if self.rate is not None and self.direction != "egress":
            raise ConfigError("rate is applied on egress only (kernel tbf); use direction='egress'")
        if self.is_empty():
            raise ConfigError("nothing to impair: give delay, loss or rate")

    @classmethod
    def parse(
        cls,
        *,
        delay: str | float = 0,
        jitter: str | float = 0,
        correlation: str | float = 0,
        loss: str | float = 0,
        rate: str | None = None,
        direction: str = "egress",
        seed: int = 0,
        keep_order: bool = True,
        distribution: str = "uniform",
    ) -> Impairment:
        """From the user's words: ``Impairment.parse(delay="20ms", jitter="2ms", loss="1%")``."""
        return cls(
            delay=parse_duration(delay, "delay"),
            jitter=parse_duration(jitter, "jitter"),
            correlation=parse_percent(correlation, "correlation"),
            loss=parse_percent(loss, "loss"),
            rate=None if rate is None else parse_rate(rate),
            direction=parse_direction(direction),
            seed=int(seed),
            keep_order=keep_order,
            distribution=distribution,
        )

    def words(self) -> dict[str, str | int | bool]:
        """Words that ``parse`` reads back as this impairment (to the microsecond, the
        millionth of a percent): how a fault found in force is updated from other words."""
        words: dict[str, str | int | bool] = {
            "delay": f"{self.delay * 1e6:.3f}us",
            "jitter": f"{self.jitter * 1e6:.3f}us",
            "correlation": f"{self.correlation * 100:.6f}%",
            "loss": f"{self.loss * 100:.6f}%",
            "direction": self.direction,
            "seed": self.seed,
            "keep_order": self.keep_order,
            "distribution": self.distribution,
        }
        if self.rate is not None:
            words["rate"] = f"{self.rate}bit"
        return words

    def is_empty(self) -> bool:
        return self.delay == 0 and self.jitter == 0 and self.loss == 0 and self.rate is None

    def faults(self) -> list[Fault]:
        found = []
        if self.delay or self.jitter:
            found.append(
                Fault(
                    "latency",
                    self.direction,
                    {
                        "delay": self.delay,
                        "jitter": self.jitter,
                        "correlation": self.correlation,
                        "distribution": self.distribution,
                    },
                )
            )
        if self.loss:
            found.append(Fault("loss", self.direction, {"probability": self.loss}))
        if self.rate is not None:
            found.append(Fault("bandwidth", "egress", {"rate": float(self.rate)}))
        return found
