"""The experiment's statistics on data whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from harness.checks import Violation
from harness.experiment.stats import bootstrap_difference, cdf, count_kinds, percentile, run_stats


def test_percentiles_interpolate_linearly() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None


def test_run_stats_of_a_known_run() -> None:
    rtt = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float64)
    sent = np.array([10.0, 10.5, 11.0, 11.5])
    received = sent + rtt / 1000
    violations = [
        Violation("c0", 4, "missing", "one reply", "none"),
        Violation("c0", 1, "order", "seq after 2", "1"),
        Violation("c0", 1, "timestamp", "stamp >= x", "y"),
        Violation("c1", 2, "format", "prefix", "junk"),
        Violation("c1", None, "exit code", "0", "1"),
    ]
    stats = run_stats(rtt, sent, received, violations, expected=5, reconnects=2)
    assert stats.replies == 4
    assert stats.expected == 5
    assert (stats.lost, stats.duplicated, stats.out_of_order, stats.malformed) == (1, 0, 2, 1)
    assert stats.failed_clients == 1
    assert stats.reconnects == 2
    assert stats.p50_ms == pytest.approx(2.5)
    assert stats.max_ms == 4.0
    assert stats.throughput_msg_s == pytest.approx(4 / (11.504 - 10.0))
    assert not stats.ok


def test_a_clean_run_is_ok() -> None:
    rtt = np.array([1.0])
    stats = run_stats(rtt, np.array([1.0]), np.array([1.001]), [], expected=1, reconnects=0)
    assert stats.ok
    assert count_kinds([]) == dict.fromkeys(
        ("lost", "duplicated", "out_of_order", "malformed", "failed_clients"), 0
    )


def test_cdf_is_exact_for_few_values_and_bounded_for_many() -> None:
    x, y = cdf(np.array([3.0, 1.0, 2.0]))
    assert list(x) == [1.0, 2.0, 3.0]
    assert list(y) == pytest.approx([1 / 3, 2 / 3, 1.0])
    many = np.arange(1_000_000, dtype=np.float64)
    x, y = cdf(many, points=400)
    assert len(x) <= 400
    assert x[0] == 0.0 and x[-1] == 999_999.0 and y[-1] == 1.0
    assert np.all(np.diff(x) > 0)


def test_bootstrap_finds_a_known_shift_and_no_shift() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(10.0, 1.0, 2000)
    shifted = bootstrap_difference(a, a + 5.0, "p50", resamples=500)
    assert shifted.difference == pytest.approx(5.0)
    assert shifted.low < 5.0 < shifted.high
    assert shifted.high - shifted.low < 0.5
    assert shifted.significant
    same = bootstrap_difference(a, rng.normal(10.0, 1.0, 2000), "p50", resamples=500)
    assert same.low < 0 < same.high
    assert not same.significant
    again = bootstrap_difference(a, a + 5.0, "p50", resamples=500)
    assert (again.low, again.high) == (shifted.low, shifted.high)  # seeded
    tail = bootstrap_difference(a, a * 2, "p99", resamples=300)
    assert tail.difference == pytest.approx(float(np.percentile(a, 99)))
