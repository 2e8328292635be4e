"""An experiment interrupted (SIGINT, as Ctrl-C) keeps its finished runs and tears its lab
down; ``--resume`` runs only what is missing, and the folder ends with the same runs and
seeds an uninterrupted run has (the expansion is a pure function of the file)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker

from harness import labels
from harness.experiment.declare import parse
from harness.experiment.expand import expand
from harness.paths import ROOT

EXPERIMENT = """
[experiment]
name = "resume"
seed = 11
repetitions = 3
timeout = "60s"

[run]
clients = 1
messages = 40
rate = 20  # 2 s of traffic per run: the interrupt lands in the second
"""


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", "experiment", "run", *args]


def test_interrupted_experiment_keeps_finished_runs_and_resumes(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    source = tmp_path / "resume.toml"
    source.write_text(EXPERIMENT)
    out = tmp_path / "out"
    records = out / "runs"
    process = subprocess.Popen(
        _command(str(source), "--out", str(out)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell's background job inherits SIGINT ignored (and Python then keeps it so):
        # give the experiment Ctrl-C's default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not list(records.glob("*/run.json")):
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no run finished in 180 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr
    kept = {p.parent.name: p.read_text() for p in records.glob("*/run.json")}
    assert 1 <= len(kept) < 3, sorted(kept)
    session_labs = [
        c.name for c in docker_client.containers.list(all=True, filters=labels.project_filter())
        if str(c.name).startswith("exp-")
    ]  # fmt: skip
    assert session_labs == [], "the interrupted run's lab was not torn down"
    assert (out / "report.html").exists()

    done = subprocess.run(
        _command("--resume", str(out)), cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(kept)} already done" in done.stderr
    for run_id, text in kept.items():
        assert (records / run_id / "run.json").read_text() == text  # not run again

    expected = {r.id: (r.seed, dict(r.settings)) for r in expand(parse(EXPERIMENT, "resume"))}
    found = {}
    for path in records.glob("*/run.json"):
        record = json.loads(path.read_text())
        found[record["id"]] = (record["seed"], record["settings"])
        assert record["status"] == "ok"
    assert found == expected
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["id"] for r in manifest["expanded"]] == [
        r.id for r in expand(parse(EXPERIMENT, "resume"))
    ]
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 3
