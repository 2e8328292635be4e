"""An experiment across two simulated Swarm nodes (``[experiment] nodes = 2``): the same paced
clients placed on the server's node and on the other one (``placement``), so a report compares
same-node and cross-node round trips, the overlay's own cost measured rather than assumed.

The batch makes its nodes and removes them (the host's engine never enters swarm mode); each
record says which node ran each client.
"""

from __future__ import annotations

import csv
import gzip
import json
import statistics
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from harness import labels
from harness.paths import ROOT
from harness.swarm import nodes

pytestmark = pytest.mark.timeout(900)

PLACED = """
[experiment]
name = "placement"
engine = "swarm"
nodes = 2
order = "declared"
timeout = "60s"

[run]
clients = 3
messages = 100
rate = 50

[grid]
placement = ["same", "cross"]
"""


def test_an_experiment_compares_same_node_and_cross_node_clients(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    before = docker_client.info()["Swarm"]["LocalNodeState"]
    source = tmp_path / "placement.toml"
    source.write_text(PLACED)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "experiment", "run", str(source), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    records = [json.loads((out / "runs" / r / "run.json").read_text()) for r in manifest["runs"]]
    medians: dict[str, float] = {}
    for record in records:
        placement = record["settings"]["placement"]
        assert record["engine"] == "swarm" and record["status"] == "ok", record["id"]
        assert record["stats"]["replies"] == 300
        ran_on = {client["node"] for client in record["clients"]}
        assert ran_on == ({"node0"} if placement == "same" else {"node1"}), (placement, ran_on)
        with gzip.open(out / "runs" / record["id"] / "exchanges.csv.gz", "rt") as file:
            medians[placement] = statistics.median(
                float(row["rtt_ms"]) for row in csv.DictReader(file)
            )
        print(f"placement {placement}: median rtt {medians[placement]:.3f} ms, "
              f"timings {record['timings']}")  # fmt: skip
    assert set(medians) == {"same", "cross"}
    assert docker_client.info()["Swarm"]["LocalNodeState"] == before
    mine = labels.project_filter(**{labels.ROLE: nodes.ROLE})
    assert docker_client.containers.list(all=True, filters=mine) == [], "the nodes are removed"
