"""The added delay a run's clients saw, beside the delay configured: an observer of a packet
fault that is not its engine (pure: records in, numbers out).

The probe is the clients' own round trips, no extra traffic: for each delay fault, the
median round trip of the clients it delays (all of them for a fault on the server, one for a
fault on a client) over the exchanges wholly inside the time it was surely in force, less
their median outside every packet fault and partition of the run. A fault in force for the
whole run (the grid's) has no outside: the baseline is then the median of the experiment's
runs alike but fault-free (``baseline_runs``), at report time. Round trips grow by the
delay once per direction delayed (``both``: twice). The observed value must be within
``max(PROBE_BOUND_MS, PROBE_BOUND_SHARE x expected)`` of the expected one, or the fault is
marked as drifted, whatever its engine said of itself (netem says nothing: this is then its
only fidelity figure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.experiment.store import Columns
from harness.experiment.view import Period, periods

PROBE_BOUND_MS = 2.0
PROBE_BOUND_SHARE = 0.1
MIN_SAMPLES = 5
SAME_RUN = "clients' median round trip under the fault - outside faults, same run"
OTHER_RUNS = "clients' median round trip under the fault - fault-free runs alike"
PACKET_FAULT_KEYS = ("delay", "jitter", "loss", "bandwidth")
CUTS = ("impair", "partition", "restart")  # what makes a round trip no baseline


def expected_ms(row: Mapping[str, Any]) -> float:
    """The round trip's growth the fault is configured for."""
    return float(row.get("delay_ms") or 0.0) * (2.0 if row.get("direction") == "both" else 1.0)


def _delayed_clients(target: str, clients: Sequence[str]) -> set[str]:
    """Whose round trips a fault on ``target`` (a container name, ``<lab>-<role>``) delays."""
    role = target.rsplit("-", 1)[-1]
    return {role} if role in clients else set(clients)


def _overlaps(columns: Columns, windows: Sequence[Period]) -> np.ndarray:
    hit = np.zeros(len(columns), dtype=bool)
    for p in windows:
        hit |= (columns.sent <= p.end) & (columns.received >= p.start)
    return hit


def probe_rows(
    fidelity: Mapping[str, Any],
    timeline: Sequence[Mapping[str, Any]],
    columns: Columns,
    t0: float,
    baseline_ms: float | None = None,
) -> dict[str, Any]:
    """``fidelity`` with each delay fault's probe (``probe_ms``, ``expected_ms``, ``probe``:
    how it was measured, ``probe_ok``) and ``ok`` folding in the probe's verdict. Times in
    ``columns`` are wall clock; ``t0`` is when the clients were let go."""
    if not len(columns):
        return dict(fidelity)
    end = float(columns.received.max()) - t0
    found = periods(timeline, end)
    kinds = {str(e["fault"]): str(e.get("action")) for e in timeline if e.get("event") == "applied"}
    cuts = [p for p in found if kinds.get(p.fault) in CUTS]
    shifted = Columns(columns.client, columns.conn, columns.seq, columns.sent - t0,
                      columns.received - t0, columns.rtt_ms)  # fmt: skip
    clients = np.asarray(shifted.client)
    names = sorted(set(shifted.client))
    outside = ~_overlaps(shifted, cuts)
    rows = []
    for row in fidelity.get("faults", []):
        row = dict(row)
        rows.append(row)
        want = expected_ms(row)
        if want <= 0 or "probe_ms" in row:
            continue
        mine_period = [p for p in found if p.fault == row["fault"]]
        if not mine_period:
            continue
        period = mine_period[0]
        mine = np.isin(clients, sorted(_delayed_clients(str(row["target"]), names)))
        others = [p for p in cuts if p.fault != period.fault]
        inside = (shifted.sent >= period.sure_start) & (shifted.received <= period.sure_end)
        during = mine & inside & ~_overlaps(shifted, others)
        base_sample = shifted.rtt_ms[mine & outside]
        if base_sample.size >= MIN_SAMPLES:
            base, how = float(np.median(base_sample)), SAME_RUN
        elif baseline_ms is not None:
            base, how = baseline_ms, OTHER_RUNS
        else:
            row.update(expected_ms=want, probe="no baseline: no round trip outside the "
                       "fault in this run, no fault-free run alike")  # fmt: skip
            continue
        if int(during.sum()) < MIN_SAMPLES:
            row.update(expected_ms=want, probe=f"{int(during.sum())} round trips under the fault")
            continue
        observed = float(np.median(shifted.rtt_ms[during])) - base
        bound = max(PROBE_BOUND_MS, PROBE_BOUND_SHARE * want)
        ok = abs(observed - want) <= bound
        row.update(expected_ms=want, probe_ms=round(observed, 3), probe_bound_ms=bound,
                   probe=how, probe_samples=int(during.sum()), probe_ok=ok)  # fmt: skip
        row["ok"] = ok if row.get("ok") is None else bool(row["ok"]) and ok
    measured = [r["ok"] for r in rows if r.get("ok") is not None]
    return {**fidelity, "faults": rows, "ok": all(measured) if measured else None}


def _zero(value: Any) -> bool:
    """No fault: unset, 0, or a zero with its unit (``"0ms"``, ``"0%"``, ``"0.0s"``)."""
    return (
        value in (None, "", 0) or re.fullmatch(r"[0.]+\s*[a-z%]*", str(value).lower()) is not None
    )


def fault_free(settings: Mapping[str, Any]) -> bool:
    """A run with no packet fault and no schedule: a baseline for the runs alike."""
    quiet = all(_zero(settings.get(k)) for k in PACKET_FAULT_KEYS)
    return quiet and settings.get("schedule") in (None, "none")


def alike(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two runs' settings equal but for their packet faults and schedule."""
    skip = {*PACKET_FAULT_KEYS, "schedule"}
    return {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }


def baseline_runs(
    settings: Mapping[str, Any], others: Sequence[tuple[Mapping[str, Any], Columns]]
) -> float | None:
    """The median round trip over the fault-free runs alike (None if there is none)."""
    pooled = [c.rtt_ms for s, c in others if fault_free(s) and alike(s, settings) and len(c)]
    return float(np.median(np.concatenate(pooled))) if pooled else None
