"""A small declared experiment end to end, through the command line: 2 runs x 3 clients x 50
messages, one with a fault scheduled on the server; the results folder, its summary and the
report checked against each other and against what the clients measured."""

from __future__ import annotations

import base64
import csv
import gzip
import json
import shutil
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import docker
import numpy as np
import pytest
from matplotlib import image

from harness import labels
from harness.paths import ROOT
from tests.vm.netem_vm import Unavailable, _apt_install

EXPERIMENT = """
[experiment]
name = "e2e"
seed = 5
timeout = "60s"
backend = "{backend}"

[run]
clients = 3
messages = 50
rate = 25

[grid]
schedule = ["none", "slow"]

[schedules]
slow = [
  {{at = "0.5s", action = "impair", target = "server", delay = "20ms"}},
  {{at = "1.5s", action = "heal"}},
]
"""


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.plots: list[tuple[str, str, str]] = []  # (kind, run, svg)
        self.verdicts: dict[str, str] = {}
        self.cells: dict[tuple[str, str], str] = {}
        self._figure: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "figure":
            self._figure = (a["data-plot"], a.get("data-run", ""))
        elif tag == "img" and self._figure is not None:
            svg = base64.b64decode(a["src"].removeprefix("data:image/svg+xml;base64,")).decode()
            self.plots.append((*self._figure, svg))
            self._figure = None
        elif tag == "tr" and "data-verdict" in a:
            self.verdicts[a["data-run"]] = a["data-verdict"]
        elif tag == "td" and "data-check" in a:
            self.cells[(a["data-run"], a["data-check"])] = a["class"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed where missing (root and apt-get only)."""
    if shutil.which("chromium") is None:
        try:
            _apt_install("chromium")
        except Unavailable as error:
            pytest.fail(f"the report's screenshot check needs chromium: {error}")
    return str(shutil.which("chromium"))


def screenshot(chromium: str, page: Path, out: Path) -> np.ndarray:
    """The page as headless Chromium draws it (RGB, 0..1), no network, a throwaway profile."""
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={out.parent / 'chromium-profile'}", f"--screenshot={out}",
         "--window-size=1200,2400", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    return np.asarray(image.imread(out))[:, :, :3]


def near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: float = 0.08) -> int:
    """How many pixels are within ``tolerance`` of a colour (matplotlib's own cycle)."""
    target = np.array(rgb, dtype=np.float64) / 255
    return int((np.abs(pixels - target).max(axis=2) < tolerance).sum())


def _rows(folder: Path) -> list[dict[str, str]]:
    with gzip.open(folder / "exchanges.csv.gz", "rt", newline="") as file:
        return list(csv.DictReader(file))


def test_declared_experiment_runs_stores_and_reports(
    tmp_path: Path, packet_backend: str, docker_client: docker.DockerClient, chromium: str
) -> None:
    declared = EXPERIMENT.format(backend=packet_backend)
    source = tmp_path / "e2e.toml"
    source.write_text(declared)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "experiment", "run", str(source), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    # The folder describes itself.
    assert (out / "experiment.toml").read_text() == declared
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["settings"]["schedule"] for r in manifest["expanded"]].count("slow") == 1
    provenance = manifest["provenance"]
    assert len(provenance["echolab"]["commit"]) == 40
    assert provenance["docker"]["version"] and provenance["docker"]["engine_kernel"]
    assert "applies" in provenance["preflight"]
    runs = {r["id"]: r for r in manifest["expanded"]}
    assert set(manifest["runs"]) == set(runs)

    with (out / "summary.csv").open() as file:
        summary = {row["run"]: row for row in csv.DictReader(file)}
    assert set(summary) == set(runs)
    for run_id, row in summary.items():
        record = json.loads((out / "runs" / run_id / "run.json").read_text())
        exchanges = _rows(out / "runs" / run_id)
        assert len(exchanges) == int(row["replies"]) == 150
        assert {e["run"] for e in exchanges} == {run_id}
        assert sorted({e["client"] for e in exchanges}) == ["c0", "c1", "c2"]
        assert row["lost"] == row["out_of_order"] == row["malformed"] == "0"
        assert record["status"] == "ok" and row["ok"] == "True"
        assert record["seed"] == runs[run_id]["seed"]

    # The scheduled fault happened as the timeline says: replies slowed by 20 ms while it
    # surely held, not before it was applied nor after it was removed.
    slow = next(r for r in runs if runs[r]["settings"]["schedule"] == "slow")
    record = json.loads((out / "runs" / slow / "run.json").read_text())
    events = {(e["fault"], e["event"]): e for e in record["timeline"]}
    applied, removed = events[("s0", "applied")], events[("s0", "removed")]
    assert applied["backend"] == packet_backend == record["backend"]
    assert applied["staged"] is True, "a scheduled impair is started before the clients go"
    assert applied["t_s"] == pytest.approx(0.5, abs=0.1)
    assert removed["t_s"] == pytest.approx(1.5, abs=0.2)
    t0 = record["t0_wall"]
    rtt: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    for row in _rows(out / "runs" / slow):
        t = float(row["sent"]) - t0
        if t < applied["t_s"]:
            rtt["before"].append(float(row["rtt_ms"]))
        elif applied["done_s"] < t < removed["t_s"] - 0.05:
            rtt["during"].append(float(row["rtt_ms"]))
        elif t > removed["done_s"] + 0.1:
            rtt["after"].append(float(row["rtt_ms"]))
    assert all(len(v) >= 3 for v in rtt.values()), {k: len(v) for k, v in rtt.items()}
    assert statistics.median(rtt["during"]) >= 20.0
    assert statistics.median(rtt["before"]) < 10.0
    assert statistics.median(rtt["after"]) < 10.0
    fidelity = record["fidelity"]["faults"]
    assert [f["fault"] for f in fidelity] == ["s0"]
    assert fidelity[0]["delay_ms"] == 20.0

    # The report: one file, its plots present, its verdicts those of the results.
    page = Page()
    page.feed((out / "report.html").read_text())
    kinds = [kind for kind, _, _ in page.plots]
    assert kinds.count("cdf") == 1 and kinds.count("sweep") == 1
    timelines = {run: svg for kind, run, svg in page.plots if kind == "timeline"}
    assert set(timelines) == set(runs)
    assert "impair server delay 20ms" in timelines[slow]
    assert all("<path" in svg for _, _, svg in page.plots)
    for run_id in runs:
        status = json.loads((out / "runs" / run_id / "run.json").read_text())["status"]
        assert page.verdicts[run_id] == ("ok" if status == "ok" else "violations")
        assert page.cells[(run_id, "order")] == "ok"

    # As a browser shows it: plots drawn (matplotlib's blue, orange and green lines), the
    # fault shaded (light red), verdicts in green cells.
    shot = screenshot(chromium, out / "report.html", tmp_path / "report.png")
    assert (shot < 0.95).any(axis=2).mean() > 0.02, "the page is nearly blank"
    assert near(shot, (31, 119, 180)) > 500  # tab:blue
    assert near(shot, (255, 127, 14)) > 200  # tab:orange
    assert near(shot, (44, 160, 44)) > 100  # tab:green (the third client)
    assert near(shot, (223, 245, 223), 0.02) > 1000  # the verdict cells that held

    # Nothing of the experiment's labs is left.
    for run_id in runs:
        lab = json.loads((out / "runs" / run_id / "run.json").read_text())["lab"]
        left = docker_client.containers.list(all=True, filters=labels.project_filter(
            **{labels.LAB: lab}))  # fmt: skip
        assert left == []
