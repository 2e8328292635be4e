"""Fault parameters: parsers and validation (pure, no Docker)."""

from __future__ import annotations

import pytest

from harness.faults.model import Fault, Impairment, parse_duration, parse_percent, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("100ms", 0.1), ("1.5s", 1.5), ("250us", 250e-6), ("0", 0.0), (0, 0.0), (" 20 ms ", 0.02)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-5ms", "must be >= 0"),
        ("100", "needs a unit"),
        (100, "bare number"),
        ("100xs", "unknown unit 'xs'"),
        ("10 minutes", "unknown unit"),
        ("fast", "cannot read"),
        (True, "must be a string"),
    ],
)
def test_bad_durations(text, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(text, "delay")


@pytest.mark.parametrize(("text", "fraction"), [("1%", 0.01), ("0.5%", 0.005), ("100%", 1.0)])
def test_percentages(text, fraction):
    assert parse_percent(text) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("text", "message"),
    [("101%", "within 0%..100%"), ("-1%", ">= 0"), ("5", "needs a unit"), ("5pc", "unknown")],
)
def test_bad_percentages(text, message):
    with pytest.raises(ValueError, match=message):
        parse_percent(text, "loss")


@pytest.mark.parametrize(
    ("text", "bits"),
    [("1mbit", 1_000_000), ("500kbit", 500_000), ("1.5gbit", 1_500_000_000), ("800bit", 800)],
)
def test_rates(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize(
    ("text", "message"),
    [("1mbps", "bytes/s"), ("0mbit", "at least"), ("1m", "unknown unit"), ("-1mbit", ">= 0")],
)
def test_bad_rates(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rate(text)


def test_impairment_from_words():
    imp = Impairment.parse(delay="20ms", jitter="2ms", loss="1%", correlation="25%", seed=7)
    assert (imp.delay, imp.jitter, imp.loss, imp.correlation) == pytest.approx(
        (0.02, 0.002, 0.01, 0.25)
    )
    assert imp.direction == "egress" and imp.seed == 7
    kinds = [f.kind for f in imp.faults()]
    assert kinds == ["latency", "loss"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"delay": "-1ms"}, "delay must be >= 0"),
        ({"loss": "150%"}, "loss must be within"),
        ({"delay": "10ms", "direction": "sideways"}, "direction must be one of"),
        ({"delay": "1ms", "jitter": "2ms"}, "jitter .* must not exceed delay"),
        ({}, "nothing to impair"),
        ({"rate": "1mbit", "direction": "both"}, "egress only"),
        ({"delay": "10 parsecs"}, "unknown unit"),
        ({"delay": "10ms", "jitter": "1ms", "distribution": "gamma"}, "distribution must be"),
        ({"delay": "10ms", "jitter": "1ms", "distribution": "Normal"}, "distribution must be"),
        ({"delay": "10ms", "distribution": "normal"}, "'normal' needs a jitter"),
        ({"loss": "1%", "distribution": "pareto"}, "needs a jitter"),
    ],
)
def test_bad_impairments(params, message):
    with pytest.raises(ValueError, match=message):
        Impairment.parse(**params)


def test_fault_checks_kind_and_direction():
    with pytest.raises(ValueError, match="fault kind"):
        Fault("corrupt", "egress")
    with pytest.raises(ValueError, match="direction"):
        Fault("loss", "up")  # type: ignore[arg-type]


def test_distribution_defaults_to_uniform_and_reaches_the_latency_fault():
    assert Impairment.parse(delay="10ms", jitter="1ms").distribution == "uniform"
    imp = Impairment.parse(delay="10ms", jitter="1ms", distribution="paretonormal")
    assert imp.faults()[0].parameters["distribution"] == "paretonormal"


def test_the_engine_knows_the_same_distributions():
    from echolab_fault_engine import schedule

    from harness.faults.model import DISTRIBUTIONS

    assert schedule.DISTRIBUTIONS == DISTRIBUTIONS
