"""The engine's own counters: per-packet samples kept compactly, and their summary (the
``stats`` event and the ``status`` reply)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return round(mean, 1), None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return round(mean, 1), round(var**0.5, 1)


KEPT = 1_000_000  # per-packet samples kept for the summary: 8 MB per series at most


def _samples() -> array[float]:
    """A series of samples: C doubles, 8 bytes each. A list of floats takes ~40 (a pointer, a
    float object, the list's spare room): three series of a million, 120 MB, would not fit the
    sidecar's 128 MB, which a 10,000 packets/s fault reaches in under two minutes."""
    return array("d")


@dataclass
class Stats:
    seen: int = 0
    dropped: int = 0
    released: int = 0
    stamped: int = 0
    late_us: array[float] = field(default_factory=_samples)
    recv_lag_us: array[float] = field(default_factory=_samples)
    # Per released packet: the delay the schedule drew (``drawn``) and the time the engine
    # actually held it, from reading it off the queue to its verdict (``held``): the engine's
    # own log of the delay it applied, to compare with what a client observes.
    drawn_us: array[float] = field(default_factory=_samples)
    held_us: array[float] = field(default_factory=_samples)
    # Per select that ran to its timeout: how late it woke beyond timeout + slack (what the
    # spin has to cover, see spin.py).
    wake_late_us: array[float] = field(default_factory=_samples)
    # Per verdict send of the compiled loop: how long the system call took. Each accepted packet
    # goes on through the rest of the stack inside it, so a long one delays what is due next.
    send_us: array[float] = field(default_factory=_samples)

    def summary(self) -> dict[str, Any]:
        drawn, held = _mean_std(self.drawn_us), _mean_std(self.held_us)
        return {
            "event": "stats",
            "seen": self.seen,
            "dropped": self.dropped,
            "released": self.released,
            "held": self.seen - self.dropped - self.released,
            "late_us_p50": _pct(self.late_us, 0.5),
            "late_us_p99": _pct(self.late_us, 0.99),
            "late_us_max": round(max(self.late_us), 1) if self.late_us else None,
            "stamped": self.stamped,
            "recv_lag_us_p50": _pct(self.recv_lag_us, 0.5),
            "recv_lag_us_p99": _pct(self.recv_lag_us, 0.99),
            "drawn_us_mean": drawn[0],
            "drawn_us_std": drawn[1],
            "held_us_p50": _pct(self.held_us, 0.5),
            "held_us_p90": _pct(self.held_us, 0.9),
            "held_us_mean": held[0],
            "held_us_std": held[1],
            "wakes": len(self.wake_late_us),
            "wake_late_us_p50": _pct(self.wake_late_us, 0.5),
            "wake_late_us_p99": _pct(self.wake_late_us, 0.99),
            "send_us_p50": _pct(self.send_us, 0.5),
            "send_us_p99": _pct(self.send_us, 0.99),
        }
