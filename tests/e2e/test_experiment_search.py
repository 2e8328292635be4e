"""The breaking-point search end to end: a server delay bisected for where the median round
trip reaches 30 ms, on real labs; the threshold found brackets it, every probe is stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.paths import ROOT

EXPERIMENT = """
[experiment]
name = "search"
backend = "{backend}"
[run]
clients = 2
messages = 30
[search]
parameter = "delay"
low = "0ms"
high = "100ms"
resolution = "20ms"
repeat = 1
holds = "p50_ms < 30"
"""


def test_search_brackets_the_delay_where_the_median_reaches_30ms(
    tmp_path: Path, packet_backend: str
) -> None:
    source = tmp_path / "search.toml"
    source.write_text(EXPERIMENT.format(backend=packet_backend))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "experiment", "search", str(source), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads((out / "manifest.json").read_text())["search"]
    assert outcome["bracketed"]
    held, broke = (float(outcome[k].removesuffix("ms")) for k in ("held", "broke"))
    # The median is the delay plus a sub-millisecond base: it reaches 30 ms just under 30.
    assert held < 30.0 <= broke + 1.0
    assert broke - held <= 20.0
    assert [p["value"] for p in outcome["probes"]][:2] == ["0ms", "100ms"]
    runs = sorted(p.parent.name for p in (out / "runs").glob("*/run.json"))
    assert len(runs) == len(outcome["probes"])
    for probe, run_id in zip(outcome["probes"], runs, strict=True):
        record = json.loads((out / "runs" / run_id / "run.json").read_text())
        assert record["settings"]["delay"] == probe["value"]
        assert (record["stats"]["p50_ms"] < 30) == probe["held"]
    assert "breaks between delay" in done.stdout
