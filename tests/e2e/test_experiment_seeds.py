"""Same seed, same faults: one declared experiment run three times through the command line,
twice with one seed and once with another, on the packet engine (nfqueue: delay, jitter and
loss on the server) and the toxic proxy (a reset hitting half of the connections).

What is reproduced, and checked here against what the run's seed prescribes:
- the engine's decisions: the n-th packet it decides on is dropped or not, and held for the
  same drawn delay, in every run of that seed (its decision log, ``Schedule.decisions``);
- the proxy's: the n-th connection it accepts is hit by the same toxics (``affected``).
What is not: which TCP segment is the n-th packet, and which client's connection is the n-th
accepted, follow the traffic's timing, so the lost application messages and the clients
reset differ from run to run. netem draws from the kernel: nothing of it is reproduced.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from echolab_fault_engine.schedule import Schedule
from echolab_proxy.chain import affected

from harness.experiment.expand import run_seed
from harness.paths import ROOT

pytestmark = pytest.mark.timeout(600)

EXPERIMENT = """
[experiment]
name = "seeds"
seed = {seed}
timeout = "60s"
backend = "nfqueue"

[run]
clients = 2
messages = 100
rate = 50
delay = "5ms"
jitter = "2ms"
loss = "5%"
toxics = "flaky"

[toxics]
flaky = [{{ type = "reset_peer", attributes = {{ timeout = "300ms" }}, toxicity = 0.5 }}]
"""
RESET = "reset_peer_downstream"
# Seeds 5 and 6 (their run seeds) hit connections 0-3 as T T F T and F T T T: mixed, and
# different from the first connection on.


def run_experiment(tmp_path: Path, seed: int, name: str) -> dict[str, Any]:
    source = tmp_path / f"{name}.toml"
    source.write_text(EXPERIMENT.format(seed=seed))
    out = tmp_path / name
    done = subprocess.run(
        [sys.executable, "-m", "harness", "experiment", "run", str(source), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*/run.json")]
    assert record["seed"] == run_seed(seed, record["id"])
    return record


def removed(record: dict[str, Any], fault: str) -> dict[str, Any]:
    (entry,) = [e for e in record["timeline"] if e["fault"] == fault and e["event"] == "removed"]
    return entry


def engine_log(record: dict[str, Any]) -> dict[str, Any]:
    (stats,) = removed(record, "g0")["engine"].values()  # one target: the server
    return dict(stats["decisions"])


def prescribed_engine(seed: int, decided: int) -> dict[str, Any]:
    """What a seed prescribes for ``decided`` packets, drawn by the schedule alone."""
    schedule = Schedule(delay_s=0.005, jitter_s=0.002, loss=0.05, seed=seed)
    for n in range(decided):
        schedule.decide(float(n))
    return schedule.decisions()


def proxy_hits(record: dict[str, Any]) -> dict[int, bool]:
    hit = removed(record, "p0")["decisions"]["hit"]
    return {int(conn): RESET in toxics for conn, toxics in hit.items()}


def test_same_seed_same_decisions_another_seed_others(tmp_path: Path) -> None:
    first, again, other = (
        run_experiment(tmp_path, 5, "first"),
        run_experiment(tmp_path, 5, "again"),
        run_experiment(tmp_path, 6, "other"),
    )
    assert first["seed"] == again["seed"] != other["seed"]

    logs = [engine_log(r) for r in (first, again, other)]
    for record, log in zip((first, again, other), logs, strict=True):
        assert log["decided"] >= 200, log["decided"]  # the server's replies, ACKs, handshakes
        assert log == prescribed_engine(record["seed"], log["decided"])
    # The packets each run decided on differ in number (timing), but where the runs overlap
    # their fates are the same with one seed, and not with another.
    common = min(logs[0]["decided"], logs[1]["decided"])
    assert [d for d in logs[0]["drops"] if d < common] == [
        d for d in logs[1]["drops"] if d < common
    ]
    assert logs[0]["drawn_us"] == logs[1]["drawn_us"]
    assert logs[0]["drawn_us"] != logs[2]["drawn_us"]
    assert logs[0]["drops"][:5] != logs[2]["drops"][:5]

    hits = [proxy_hits(r) for r in (first, again, other)]
    for record, hit in zip((first, again, other), hits, strict=True):
        assert len(hit) >= 4, hit  # the first connections and their reconnects
        assert hit == {c: affected(record["seed"], RESET, c, 0.5) for c in hit}
        assert 0 < sum(hit.values()) < len(hit)  # half of them, not all or none
    shared = set(hits[0]) & set(hits[1])
    assert {c: hits[0][c] for c in shared} == {c: hits[1][c] for c in shared}
    differ = set(hits[0]) & set(hits[2])
    assert {c: hits[0][c] for c in differ} != {c: hits[2][c] for c in differ}
    print(
        f"engine: {logs[0]['decided']}/{logs[1]['decided']}/{logs[2]['decided']} decisions, "
        f"first drops {logs[0]['drops'][:6]} / {logs[1]['drops'][:6]} / {logs[2]['drops'][:6]}; "
        f"proxy hits {hits[0]} / {hits[1]} / {hits[2]}"
    )
