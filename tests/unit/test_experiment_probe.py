"""The fidelity probe on runs with known answers: the clients' round trips under a fault
against outside it, or against fault-free runs alike."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.experiment.probe import (
    OTHER_RUNS,
    SAME_RUN,
    alike,
    baseline_runs,
    fault_free,
    probe_rows,
)
from harness.experiment.store import Columns

T0 = 1000.0


def columns(rows: list[tuple[str, float, float]]) -> Columns:
    """(client, sent s into the run, round trip ms), every exchange on connection 0."""
    sent = np.array([T0 + s for _, s, _ in rows])
    rtt = np.array([r for _, _, r in rows])
    return Columns([c for c, _, _ in rows], np.zeros(len(rows), dtype=np.int64),
                   np.arange(len(rows)), sent, sent + rtt / 1e3, rtt)  # fmt: skip


def row(fault: str, target: str, delay_ms: float, **more: Any) -> dict[str, Any]:
    return {"fault": fault, "target": target, "backend": "nfqueue", "delay_ms": delay_ms,
            "direction": "egress", "ok": True, **more}  # fmt: skip


def scheduled(fault: str = "s0", on: float = 2.0, off: float = 4.0) -> list[dict[str, Any]]:
    return [
        {"fault": fault, "event": "applied", "action": "impair", "t_s": on, "done_s": on + 0.2},
        {"fault": fault, "event": "removed", "action": "heal", "t_s": off, "done_s": off + 0.1},
    ]


def traffic(delayed: dict[str, float], clients: tuple[str, ...] = ("c0", "c1")) -> Columns:
    """Each client every 50 ms for 6 s: 0.5 ms, plus its delay from 2 to 4.1 s (the fault's
    time, ``scheduled``'s, from its action's start to its removal's end)."""
    rows = []
    for client in clients:
        for n in range(120):
            t = n * 0.05
            inside = 2.0 <= t <= 4.1
            rows.append((client, t, 0.5 + (delayed.get(client, 0.0) if inside else 0.0)))
    return columns(rows)


def test_a_scheduled_delay_on_the_server_is_seen_by_every_client() -> None:
    fidelity = {"ok": True, "bound_us": 1000.0, "faults": [row("s0", "lab-server", 20.0)]}
    (found,) = probe_rows(fidelity, scheduled(), traffic({"c0": 20, "c1": 20}), T0)["faults"]
    assert found["probe_ms"] == pytest.approx(20.0)
    assert found["expected_ms"] == 20.0 and found["probe"] == SAME_RUN
    assert found["probe_ok"] is True and found["ok"] is True
    assert found["probe_samples"] == 2 * 36  # sent from 2.2 s, answered by 4.0 s


def test_a_fault_on_one_client_is_measured_on_that_client_alone() -> None:
    fidelity = {"ok": None, "faults": [row("s0", "lab-c1", 30.0, ok=None)]}
    out = probe_rows(fidelity, scheduled(), traffic({"c1": 30}), T0)
    assert out["faults"][0]["probe_ms"] == pytest.approx(30.0)
    assert out["ok"] is True  # netem-like: the probe is its only verdict


def test_a_delay_that_drifted_is_marked_whatever_the_engine_said() -> None:
    fidelity = {"ok": True, "faults": [row("s0", "lab-server", 20.0)]}
    out = probe_rows(fidelity, scheduled(), traffic({"c0": 26, "c1": 26}), T0)
    (found,) = out["faults"]
    assert found["probe_ms"] == pytest.approx(26.0) and found["probe_bound_ms"] == 2.0
    assert found["probe_ok"] is False and found["ok"] is False and out["ok"] is False


def test_both_directions_double_the_round_trip() -> None:
    fidelity = {"ok": True, "faults": [row("s0", "lab-server", 10.0, direction="both")]}
    (found,) = probe_rows(fidelity, scheduled(), traffic({"c0": 20, "c1": 20}), T0)["faults"]
    assert found["expected_ms"] == 20.0 and found["probe_ok"] is True


def test_a_whole_run_fault_needs_fault_free_runs_alike() -> None:
    whole = [
        {"fault": "g0", "event": "applied", "action": "impair", "t_s": -1.0, "done_s": -0.5},
        {"fault": "g0", "event": "removed", "action": "impair", "t_s": 9.0, "done_s": 9.5},
    ]
    data = columns([("c0", n * 0.05, 15.6) for n in range(100)])
    fidelity = {"ok": True, "faults": [row("g0", "lab-server", 15.0)]}
    (alone,) = probe_rows(fidelity, whole, data, T0)["faults"]
    assert "probe_ms" not in alone and alone["probe"].startswith("no baseline")
    (found,) = probe_rows(fidelity, whole, data, T0, baseline_ms=0.6)["faults"]
    assert found["probe_ms"] == pytest.approx(15.0) and found["probe"] == OTHER_RUNS


def test_no_delay_no_probe() -> None:
    fidelity = {"ok": True, "faults": [row("s0", "lab-server", 0.0, loss=0.01)]}
    (found,) = probe_rows(fidelity, scheduled(), traffic({}), T0)["faults"]
    assert "probe_ms" not in found and "expected_ms" not in found


def test_baselines_come_from_fault_free_runs_alike_only() -> None:
    base = {"clients": 3, "delay": "0", "loss": "0", "jitter": "0", "bandwidth": "",
            "schedule": "none"}  # fmt: skip
    delayed = {**base, "delay": "20ms"}
    assert fault_free(base) and not fault_free(delayed)
    assert fault_free({**base, "delay": "0ms", "loss": "0%", "jitter": "0.0s"})
    assert not fault_free({**base, "delay": "10ms"}) and not fault_free({**base, "loss": "0.5%"})
    assert not fault_free({**base, "schedule": "cut"})
    assert alike(base, delayed) and not alike(base, {**delayed, "clients": 4})
    quiet = columns([("c0", 0.0, 0.4), ("c0", 0.1, 0.6)])
    other = columns([("c0", 0.0, 9.0)])
    assert baseline_runs(delayed, [(base, quiet), (delayed, other)]) == pytest.approx(0.5)
    assert baseline_runs(delayed, [({**base, "clients": 4}, quiet)]) is None
