"""The breaking-point search: bisection on a probe with a known threshold, the property and the
[search] table checked with the promised errors."""

from __future__ import annotations

import math

import pytest

from harness.experiment.declare import ExperimentError
from harness.experiment.search import Property, bisect, parse_search

TABLE = {"parameter": "delay", "low": "0ms", "high": "500ms", "resolution": "10ms",
         "holds": "p99_ms < 200"}  # fmt: skip


def test_bisection_brackets_a_known_threshold_within_the_resolution() -> None:
    search = parse_search(TABLE)
    probed: list[float] = []

    def probe(value: float) -> bool:
        probed.append(value)
        return value < 0.1732  # the property holds below 173.2 ms

    outcome = bisect(search, probe)
    assert outcome.bracketed
    assert outcome.held is not None and outcome.broke is not None
    assert outcome.held < 0.1732 <= outcome.broke
    assert outcome.broke - outcome.held <= 0.010
    middle, half = outcome.threshold or (0, 0)
    assert abs(middle - 0.1732) <= half
    assert probed[:2] == [0.0, 0.5]  # both ends first
    assert len(probed) == 2 + math.ceil(math.log2(0.5 / 0.010))
    assert search.spell(0.1732) == "173.2ms"


def test_ends_that_do_not_bracket_a_change_claim_no_threshold() -> None:
    search = parse_search(TABLE)
    never = bisect(search, lambda value: True)
    assert never.broke is None and not never.bracketed and never.threshold is None
    always = bisect(search, lambda value: False)
    assert always.held is None and always.broke == 0.0 and len(always.probes) == 1


def test_properties() -> None:
    stats = {"ok": True, "p99_ms": 150.0, "lost": 0, "p50_ms": None}
    assert Property("ok").holds(stats)
    assert Property("p99_ms < 200").holds(stats)
    assert not Property("p99_ms <= 100").holds(stats)
    assert Property("lost == 0").holds(stats)
    assert not Property("p50_ms < 1").holds(stats)  # no value: does not hold
    with pytest.raises(ExperimentError, match="METRIC OP NUMBER"):
        Property("p99 < fast")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"parameter": "colour"}, "search.parameter"),
        ({"low": "0 parsecs"}, "search.low"),
        ({"repeat": 0}, "search.repeat"),
        ({"low": "600ms"}, "search"),
        ({"step": "1ms"}, "search.step"),
    ],
)
def test_bad_search_tables_name_the_key(change: dict[str, object], key: str) -> None:
    with pytest.raises(ExperimentError) as raised:
        parse_search({**TABLE, **change})
    assert raised.value.key == key


def test_loss_and_bandwidth_are_spelled_back_as_run_takes_them() -> None:
    loss = parse_search({**TABLE, "parameter": "loss", "low": "0%", "high": "20%",
                         "resolution": "0.5%", "holds": "ok"})  # fmt: skip
    assert loss.spell(0.05) == "5%"
    rate = parse_search({**TABLE, "parameter": "bandwidth", "low": "100kbit", "high": "10mbit",
                         "resolution": "100kbit"})  # fmt: skip
    assert rate.spell(1_500_000.0) == "1500000bit"
