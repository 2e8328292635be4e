"""Two results folders compared: matching runs found, a known shift measured with its
interval, and warnings where the manifests make the figures incomparable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from echo_client.records import Exchange

from harness.experiment import compare
from harness.experiment.declare import parse
from harness.experiment.expand import expand
from harness.experiment.store import Results
from harness.paths import ROOT

DECLARED = '[experiment]\nname = "c"\nrepetitions = 2\n[grid]\nclients = [1, 2]\n'


def _folder(root: Path, shift_ms: float, kernel: str, seed: int) -> Results:
    runs = expand(parse(DECLARED))
    manifest = {
        "name": "c", "seed": 0, "order": "shuffle", "created": "now", "swept": ["clients"],
        "expanded": [r.as_dict() for r in runs],
        "provenance": {"host_kernel": kernel, "docker": {"version": "20.10"}},
    }  # fmt: skip
    results = Results.create(root, DECLARED, manifest)
    rng = np.random.default_rng(seed)
    for run in runs:
        base = 1.0 + int(run.settings["clients"])  # each point its own level
        rtts = rng.normal(base, 0.1, 400) + shift_ms
        exchanges = [
            Exchange("c0", 0, i, 100.0 + i, 100.0 + i + r / 1e3, float(r), "x", "x")
            for i, r in enumerate(rtts)
        ]
        record = {"id": run.id, "settings": dict(run.settings), "status": "ok",
                  "backend": "nfqueue", "stats": {}}  # fmt: skip
        results.write_run(run.id, exchanges, record)
    return results


def test_a_known_shift_per_matching_run_and_no_shift(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", 0.0, "6.1", seed=1)
    b = _folder(tmp_path / "b", 2.0, "6.1", seed=2)
    same = _folder(tmp_path / "same", 0.0, "6.1", seed=3)
    left, right = compare.pooled(a), compare.pooled(b)
    assert compare.unmatched(left, right) == ([], [])
    rows = compare.compare(left, right, resamples=300)
    assert sorted(r.settings["clients"] for r in rows) == [1, 2]
    for row in rows:
        assert row.replies == (800, 800)  # two repetitions pooled
        median = row.differences[0]
        assert median.statistic == "p50"
        assert abs(median.difference - 2.0) < 0.05
        assert median.low < 2.0 < median.high and median.significant
    for row in compare.compare(left, compare.pooled(same), resamples=300):
        assert not row.differences[0].significant
    assert compare.warnings(a.manifest, b.manifest) == []


def test_incomparable_manifests_are_warned_about(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", 0.0, "6.1", seed=1)
    b = _folder(tmp_path / "b", 0.0, "6.12", seed=2)
    manifest = b.manifest
    manifest["runs"]["000-r0"].update(backend="netem", fidelity_ok=False)
    found = compare.warnings(a.manifest, manifest)
    assert any("host kernel differs: '6.1' vs '6.12'" in w for w in found)
    assert any("fault backends used differ" in w for w in found)
    assert any("B: runs whose faults drifted" in w and "000-r0" in w for w in found)


def test_compare_on_the_command_line(tmp_path: Path) -> None:
    _folder(tmp_path / "a", 0.0, "6.1", seed=1)
    _folder(tmp_path / "b", 2.0, "6.2", seed=2)
    done = subprocess.run(
        [sys.executable, "-m", "harness", "experiment", "compare", str(tmp_path / "a"),
         str(tmp_path / "b"), "--resamples", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: host kernel differs" in done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("clients=")]
    assert len(lines) == 2
    assert all("p50" in line and " *" in line for line in lines)
