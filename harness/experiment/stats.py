"""The numbers of a run and of a comparison, from records (pure: arrays in, numbers out).

Percentiles interpolate linearly between order statistics (numpy's default, the one most
tools print), so a reader can recompute any figure from ``exchanges.csv.gz``. A violation
counts once in the column of its kind: ``missing`` is lost, ``duplicate`` duplicated,
``order``/``timestamp`` out of order, ``format``/``echo``/``unexpected`` malformed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.checks import Violation

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
PERCENTILES = (50, 90, 99)
KIND_OF_CHECK = {
    "missing": "lost",
    "duplicate": "duplicated",
    "order": "out_of_order",
    "timestamp": "out_of_order",
    "format": "malformed",
    "echo": "malformed",
    "unexpected": "malformed",
    "exit code": "failed_clients",
}
VERDICT_COLUMNS = ("lost", "duplicated", "out_of_order", "malformed", "failed_clients")


@dataclass(frozen=True)
class RunStats:
    """One row of the summary table."""

    replies: int  # replies received (the settings' messages is per client)
    expected: int
    lost: int
    duplicated: int
    out_of_order: int
    malformed: int
    failed_clients: int
    reconnects: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    throughput_msg_s: float | None

    @property
    def ok(self) -> bool:
        """Ordering, format and completeness held, and every client said so too."""
        return all(getattr(self, column) == 0 for column in VERDICT_COLUMNS)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def percentile(values: Sequence[float] | Floats, q: float) -> float | None:
    """The ``q``-th percentile (0..100), linearly interpolated; None for no values."""
    array = np.asarray(values, dtype=np.float64)
    return float(np.percentile(array, q)) if array.size else None


def count_kinds(violations: Iterable[Violation]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICT_COLUMNS, 0)
    for violation in violations:
        counts[KIND_OF_CHECK.get(violation.check, "malformed")] += 1
    return counts


def run_stats(
    rtt_ms: Floats,
    sent: Floats,
    received: Floats,
    violations: Iterable[Violation],
    *,
    expected: int,
    reconnects: int,
) -> RunStats:
    """A run's row: its round trips' percentiles, its violations counted by kind, its
    throughput (replies per second between the first send and the last reply)."""
    counts = count_kinds(violations)
    span = float(received.max() - sent.min()) if rtt_ms.size else 0.0
    return RunStats(
        replies=int(rtt_ms.size),
        expected=expected,
        reconnects=reconnects,
        p50_ms=percentile(rtt_ms, 50),
        p90_ms=percentile(rtt_ms, 90),
        p99_ms=percentile(rtt_ms, 99),
        max_ms=float(rtt_ms.max()) if rtt_ms.size else None,
        throughput_msg_s=rtt_ms.size / span if span > 0 else None,
        **counts,
    )


def cdf(values: Floats, points: int = 400) -> tuple[Floats, Floats]:
    """At most ``points`` (value, fraction <= value) pairs of the empirical CDF: enough for a
    plot of a million samples, exact at both ends."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if ordered.size == 0:
        return ordered, ordered
    fractions = np.arange(1, ordered.size + 1, dtype=np.float64) / ordered.size
    if ordered.size <= points:
        return ordered, fractions
    index = np.unique(np.linspace(0, ordered.size - 1, points).round().astype(np.int64))
    return ordered[index], fractions[index]


@dataclass(frozen=True)
class Difference:
    """``b - a`` of a statistic, with a percentile-bootstrap confidence interval."""

    statistic: str
    a: float
    b: float
    difference: float
    low: float
    high: float
    confidence: float
    resamples: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def bootstrap_difference(
    a: Floats,
    b: Floats,
    statistic: str,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """The difference of a percentile (``"p50"``, ``"p99"``) of two samples, with the
    percentile bootstrap: both samples resampled with replacement ``resamples`` times, the
    interval the central ``confidence`` of the resampled differences. Seeded: the same data
    give the same interval."""
    q = float(statistic.removeprefix("p"))
    rng = np.random.default_rng(seed)
    measure: Callable[[Floats], Floats] = lambda x: np.percentile(x, q, axis=-1)  # noqa: E731
    diffs = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(a.size, b.size, 1))  # bound memory for large samples
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        ra = a[rng.integers(0, a.size, (n, a.size))]
        rb = b[rng.integers(0, b.size, (n, b.size))]
        diffs[start : start + n] = measure(rb) - measure(ra)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    pa, pb = float(np.percentile(a, q)), float(np.percentile(b, q))
    return Difference(statistic, pa, pb, pb - pa, float(low), float(high), confidence, resamples)


# The engine releases a held packet at its deadline; later than this at the 99th percentile
# and the run's delays were not the ones configured (machine.md: 25 us median, 1.2 ms p99 under
# heavy load on 2 shared cores).
FIDELITY_BOUND_US = 1000.0


def fidelity(
    faults: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]],
    bound_us: float = FIDELITY_BOUND_US,
) -> dict[str, Any]:
    """Configured against observed for each packet fault of a run: ``faults`` is (fault id,
    its description, per target its engine's last counters). The user-space engine reports
    how late it released packets, how long it held them and what it dropped; netem's kernel
    reports nothing to compare, which is said, not guessed. ``ok`` is None when nothing was
    measured."""
    rows = []
    for fault, described, per_target in faults:
        for target, engine in per_target.items():
            row: dict[str, Any] = {
                "fault": fault,
                "target": target,
                "backend": described.get("backend"),
                "direction": described.get("direction"),
                "delay_ms": float(described.get("delay_s") or 0) * 1e3,
                "loss": float(described.get("loss") or 0),
            }
            if engine.get("engine_died"):
                row.update(ok=False, why="the engine died: traffic went unimpaired")
            elif engine.get("late_us_p99") is None:
                row.update(ok=None, why=f"{row['backend']}: nothing observable from user space")
            else:
                seen = int(engine.get("seen") or 0)
                row.update(
                    late_us_p50=engine.get("late_us_p50"),
                    late_us_p99=engine.get("late_us_p99"),
                    late_us_max=engine.get("late_us_max"),
                    held_ms_p50=_ms(engine.get("held_us_p50")),
                    loss_observed=(int(engine.get("dropped") or 0) / seen) if seen else None,
                    packets=seen,
                    ok=float(engine["late_us_p99"]) <= bound_us,
                )
            rows.append(row)
    measured = [r["ok"] for r in rows if r["ok"] is not None]
    return {"bound_us": bound_us, "ok": all(measured) if measured else None, "faults": rows}


def _ms(us: object) -> float | None:
    return None if us is None else float(str(us)) / 1e3
