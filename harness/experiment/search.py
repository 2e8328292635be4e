"""The breaking point: the smallest value of one fault parameter at which a declared property
breaks, by bisection (pure: the probe is a function given to it).

Declared in the experiment file, beside ``[run]``::

    [search]
    parameter = "delay"         # delay, jitter, loss or bandwidth: a packet fault of [run]
    low = "0ms"                 # where the property is expected to hold
    high = "500ms"              # where it is expected to break
    resolution = "10ms"         # stop when the interval is this narrow
    repeat = 3                  # runs per probe point; a point breaks if any of them breaks
    holds = "p99_ms < 200"      # or "ok" (ordering, format, completeness held), or
                                # "lost == 0", "reconnects <= 2": a summary column, an
                                # operator, a number

Bisection assumes the property breaks monotonically in the parameter; both ends are probed
first and a search whose ends do not bracket a change says so instead of guessing. The
threshold is reported as the interval (last value that held, first that broke] and its
half-width as the uncertainty.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.experiment.declare import ExperimentError
from harness.faults.model import parse_duration, parse_percent, parse_rate

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
}  # fmt: skip
_PROPERTY = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|==|<|>)\s*([0-9.eE+-]+)\s*$")
METRICS = ("replies", "lost", "duplicated", "out_of_order", "malformed", "failed_clients",
           "reconnects", "p50_ms", "p90_ms", "p99_ms", "max_ms", "throughput_msg_s")  # fmt: skip
# parameter -> (parse to base units, spell a base value back as [run] takes it)
PARAMETERS: dict[str, tuple[Callable[[str, str], float], Callable[[float], str]]] = {
    "delay": (lambda t, w: parse_duration(t, w), lambda v: f"{round(v * 1e3, 3):g}ms"),
    "jitter": (lambda t, w: parse_duration(t, w), lambda v: f"{round(v * 1e3, 3):g}ms"),
    "loss": (lambda t, w: parse_percent(t, w), lambda v: f"{round(v * 100, 4):g}%"),
    "bandwidth": (lambda t, w: float(parse_rate(t, w)), lambda v: f"{max(8, round(v))}bit"),
}


@dataclass(frozen=True)
class Property:
    """What must hold of a run's summary row: ``ok``, or ``METRIC OP NUMBER``."""

    text: str

    def __post_init__(self) -> None:
        if self.text != "ok":
            match = _PROPERTY.match(self.text)
            if not match or match.group(1) not in METRICS:
                raise ExperimentError(
                    "search.holds", self.text,
                    f"'ok' or METRIC OP NUMBER, METRIC one of {', '.join(METRICS)}, "
                    f"OP one of {' '.join(_OPS)}",
                )  # fmt: skip

    def holds(self, stats: Mapping[str, Any]) -> bool:
        if self.text == "ok":
            return bool(stats["ok"])
        match = _PROPERTY.match(self.text)
        assert match is not None  # checked on construction
        value = stats.get(match.group(1))
        return value is not None and _OPS[match.group(2)](float(value), float(match.group(3)))


@dataclass(frozen=True)
class Search:
    parameter: str
    low: float
    high: float
    resolution: float
    repeat: int
    holds: Property

    def spell(self, value: float) -> str:
        return PARAMETERS[self.parameter][1](value)


def parse_search(table: Mapping[str, Any]) -> Search:
    """The ``[search]`` table, checked; ``ExperimentError`` names what is wrong."""
    allowed = ("parameter", "low", "high", "resolution", "repeat", "holds")
    for key in table:
        if key not in allowed:
            raise ExperimentError(f"search.{key}", table[key], "a key among " + ", ".join(allowed))
    parameter = table.get("parameter")
    if parameter not in PARAMETERS:
        raise ExperimentError("search.parameter", parameter, f"one of {', '.join(PARAMETERS)}")
    parse = PARAMETERS[str(parameter)][0]
    values = {}
    for key in ("low", "high", "resolution"):
        if key not in table:
            raise ExperimentError(f"search.{key}", None, f"a {parameter} such as [run] takes")
        try:
            values[key] = parse(table[key], f"search.{key}")
        except Exception as error:
            raise ExperimentError(f"search.{key}", table[key], str(error)) from None
    if not values["low"] < values["high"] or values["resolution"] <= 0:
        raise ExperimentError("search", dict(table), "low < high and resolution > 0")
    repeat = table.get("repeat", 3)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ExperimentError("search.repeat", repeat, "an integer >= 1")
    return Search(str(parameter), values["low"], values["high"], values["resolution"], repeat,
                  Property(str(table.get("holds", "ok"))))  # fmt: skip


@dataclass
class Outcome:
    """The result: ``held`` is the largest value probed that held, ``broke`` the smallest
    that broke; ``bracketed`` False when the ends did not (then no threshold is claimed)."""

    held: float | None = None
    broke: float | None = None
    probes: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def bracketed(self) -> bool:
        return self.held is not None and self.broke is not None

    @property
    def threshold(self) -> tuple[float, float] | None:
        """Midpoint of (held, broke] and its half-width."""
        if self.held is None or self.broke is None:
            return None
        return (self.held + self.broke) / 2, (self.broke - self.held) / 2


def bisect(search: Search, probe: Callable[[float], bool]) -> Outcome:
    """Bisect ``[low, high]``; ``probe(value)`` is True when the property held at ``value``."""
    outcome = Outcome()

    def check(value: float) -> bool:
        held = probe(value)
        outcome.probes.append((value, held))
        return held

    if not check(search.low):
        outcome.broke = search.low  # broken already at the low end
        return outcome
    outcome.held = search.low
    if check(search.high):
        outcome.held, outcome.broke = search.high, None  # never broke
        return outcome
    low, high = search.low, search.high
    while high - low > search.resolution:
        middle = (low + high) / 2
        if check(middle):
            low = middle
        else:
            high = middle
    outcome.held, outcome.broke = low, high
    return outcome
