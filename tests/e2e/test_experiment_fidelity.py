"""The fidelity probe on real runs: the delay the clients saw beside the one configured, for a
scheduled fault (against the same run outside it) and a whole-run fault (against the
experiment's fault-free run alike), in the run's record, the manifest and the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.experiment.probe import OTHER_RUNS, SAME_RUN
from harness.experiment.report import with_baselines
from harness.experiment.store import Results
from harness.paths import ROOT

pytestmark = pytest.mark.timeout(600)

EXPERIMENT = """
[experiment]
name = "fidelity"
seed = 2
timeout = "60s"
order = "declared"
backend = "{backend}"

[run]
clients = 2
messages = 150
rate = 50

[grid]
schedule = ["none", "slow"]
delay = ["0ms", "10ms"]

[schedules]
slow = [
  {{ at = "1s", action = "impair", target = "server", delay = "20ms" }},
  {{ at = "2.5s", action = "heal" }},
]
"""


def test_the_probe_sees_the_configured_delay(tmp_path: Path, packet_backend: str) -> None:
    source = tmp_path / "fidelity.toml"
    source.write_text(EXPERIMENT.format(backend=packet_backend))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "experiment", "run", str(source), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = Results(out)
    stored = {r: results.run_record(r) for r in results.done()}
    by = {(r["settings"]["schedule"], r["settings"]["delay"]): r for r in stored.values()}

    # A scheduled fault: measured in its own run, at run time, into the manifest.
    (scheduled,) = by[("slow", "0ms")]["fidelity"]["faults"]
    print("scheduled:", {k: scheduled.get(k) for k in ("expected_ms", "probe_ms", "probe")})
    assert scheduled["probe"] == SAME_RUN and scheduled["expected_ms"] == 20.0
    assert scheduled["probe_ok"] is True, scheduled
    # The manifest carries the run's own verdict (the engine's lateness against its bound: on a
    # loaded host a run may honestly say its fault drifted; ``make fidelity`` grades that).
    record = by[("slow", "0ms")]
    assert results.manifest["runs"][record["id"]]["fidelity_ok"] is record["fidelity"]["ok"]
    assert record["fidelity"]["ok"] is not None

    # A grid fault, in force throughout: no baseline in its run; the report's is the
    # fault-free run alike.
    (whole,) = by[("none", "10ms")]["fidelity"]["faults"]
    assert "probe_ms" not in whole and whole["probe"].startswith("no baseline")
    filled = with_baselines(results, stored)[by[("none", "10ms")]["id"]]
    (whole,) = filled["fidelity"]["faults"]
    print("whole run:", {k: whole.get(k) for k in ("expected_ms", "probe_ms", "probe")})
    assert whole["probe"] == OTHER_RUNS and whole["probe_ok"] is True, whole

    # Both faults at once: the grid's is measured outside the scheduled one's time.
    both = by[("slow", "10ms")]["fidelity"]["faults"]
    assert {f["fault"] for f in both} == {"g0", "s0"}

    page = (out / "report.html").read_text()
    assert "probe_ms" in page and OTHER_RUNS.replace("'", "&#x27;") in page
