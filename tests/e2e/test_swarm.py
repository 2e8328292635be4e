"""The lab on a single-node Docker Swarm (``harness.swarm``): images from the lab's own
registry, the server as a service, clients as a job, faults through the node's agent.

The swarm is made by the module's fixture only if this engine is in none, and left afterwards
(``docker_gwbridge`` too), also after a failure or Ctrl-C; everything the lab made is removed
by label, and the fixture checks that nothing of it is left. The whole module runs under
``flock /tmp/echolab-heavy.lock`` on shared machines (it changes the daemon for everyone).
"""

from __future__ import annotations

import csv
import gzip
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from harness import labels, session
from harness.cli.lab import SWARM_LAB
from harness.faults.toxic import Toxic
from harness.paths import ROOT
from harness.results import RunResult
from harness.spec import LabSpec, Workload
from harness.swarm import api, cluster
from harness.swarm.lab import SwarmLab

pytestmark = pytest.mark.timeout(900)  # the first run builds the registry's and agent's images


@pytest.fixture(scope="module")
def swarm(docker_client: docker.DockerClient) -> Iterator[bool]:
    before = cluster.state(docker_client)
    networks = {n.name for n in docker_client.networks.list()}
    with cluster.single_node(docker_client, f"test-{session.current_id()}") as made:
        yield made
    assert cluster.state(docker_client) == before
    assert {n.name for n in docker_client.networks.list()} <= networks  # no gwbridge, no overlay


@pytest.fixture(scope="module")
def swarm_lab(docker_client: docker.DockerClient, swarm: bool) -> Iterator[SwarmLab]:
    lab = SwarmLab(LabSpec(name="swarm"), docker_client)
    try:
        began = time.monotonic()
        lab.start()
        print(f"\nswarm lab up in {time.monotonic() - began:.1f} s (registry, pushes, services)")
        yield lab
    finally:
        lab.close()
        mine = labels.project_filter(**{labels.LAB: lab.id})
        assert not docker_client.api.containers(all=True, filters=mine)
        assert not docker_client.networks.list(filters=mine)
        if cluster.state(docker_client) == "active":
            assert not api.services(docker_client, {"label": mine["label"]})


def _median_rtt(result: RunResult) -> float:
    return statistics.median(e.rtt_ms for c in result.clients for e in c.exchanges)


def test_the_stack_runs_from_the_lab_registry_on_an_internal_overlay(
    docker_client: docker.DockerClient, swarm_lab: SwarmLab
) -> None:
    prefix = swarm_lab.references["server"].split("/")[0]
    assert prefix.startswith("127.0.0.1:")
    deployed = {
        s["Spec"]["Name"]: s["Spec"]
        for s in api.services(docker_client, {"label": f"{labels.LAB}={swarm_lab.id}"})
    }
    server = deployed[swarm_lab.service_name("server")]
    image = server["TaskTemplate"]["ContainerSpec"]["Image"]
    assert image.startswith(f"{prefix}/echolab-server:")
    assert server["EndpointSpec"]["Mode"] == cluster.endpoint_mode()
    agent = deployed[swarm_lab.service_name("agent")]
    assert "Global" in agent["Mode"]
    network = docker_client.networks.get(swarm_lab.network)
    assert network.attrs["Driver"] == "overlay"
    assert network.attrs["Internal"] and network.attrs["Attachable"]
    assert network.attrs["Labels"][labels.LAB] == swarm_lab.id
    assert len(swarm_lab.tasks("server")) == swarm_lab.replicas
    nodes = {n["ID"] for n in docker_client.api.nodes()}
    assert {t["NodeID"] for t in swarm_lab.tasks("agent")} == nodes


def test_50_client_tasks_of_100_messages_are_checked_end_to_end(swarm_lab: SwarmLab) -> None:
    began = time.monotonic()
    result = swarm_lab.run_clients(50, Workload(count=100))
    took = time.monotonic() - began
    result.assert_ok()  # nothing lost, duplicated, out of order or malformed
    assert sorted(c.client for c in result.clients) == sorted(f"c{i}" for i in range(50))
    assert all(len(c.exchanges) == 100 and c.exit_code == 0 for c in result.clients)
    hostname = docker.from_env().info()["Name"]
    assert {c.node for c in result.clients} == {hostname}
    print(
        f"\n50 client tasks x 100 messages: {took:.1f} s, median rtt {_median_rtt(result):.2f} ms"
    )


def test_a_delay_applied_through_the_agent_is_seen_by_the_clients(swarm_lab: SwarmLab) -> None:
    workload = Workload(count=50)
    base = _median_rtt(swarm_lab.run_clients(5, workload))
    with swarm_lab.impair("server", delay="20ms") as fault:
        listed = swarm_lab.faults()
        assert [entry["labels"][labels.FAULT_TARGET] for entry in listed] == fault.targets
        assert listed[0]["note"]["delay_s"] == pytest.approx(0.020)
        delayed = swarm_lab.run_clients(5, workload)
    delayed.assert_ok()
    slower = _median_rtt(delayed)
    print(f"\nmedian rtt {base:.2f} ms without, {slower:.2f} ms with a 20 ms egress delay")
    assert slower >= base + 19.0  # egress delay: each round trip grows by it
    assert slower < base + 40.0
    assert swarm_lab.faults() == []  # removed by the agent when the with ended


def test_a_killed_server_task_is_replaced_and_the_clients_lose_nothing(
    swarm_lab: SwarmLab,
) -> None:
    run = swarm_lab.start_clients(10, Workload(count=200, rate=25.0))  # 8 s of traffic
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the clients are sending: every task is running
        states = [t["Status"]["State"] for t in run.tasks()]
        if len(states) == 10 and all(s == "running" for s in states):
            break
        time.sleep(0.2)
    time.sleep(2.0)
    killed = swarm_lab.kill_server_task()
    result = run.wait()
    result.assert_ok()
    assert all(len(c.exchanges) == 200 for c in result.clients)
    reconnects = [c.summary.reconnects for c in result.clients if c.summary]
    assert min(reconnects) >= 1, reconnects  # every client lost its connection, and recovered
    replaced = swarm_lab.tasks("server")
    assert len(replaced) == 1 and replaced[0]["ID"] != killed


def test_gated_client_tasks_are_impaired_one_by_id_before_they_send(
    swarm_lab: SwarmLab,
) -> None:
    """``create_clients`` on a swarm: the tasks run, held at their gate, so a fault on one
    client id (through its node's agent) holds from its first packet; ``start`` releases."""
    batch = swarm_lab.create_clients(3, Workload(count=40))
    assert len(batch.containers) == 3
    assert all(c.exec_run(["ls", "/tmp"]).output.strip() == b"" for c in batch.containers)
    with swarm_lab.impair("c1", delay="20ms") as fault:
        assert [entry["labels"][labels.FAULT_TARGET] for entry in swarm_lab.faults()] == (
            fault.targets
        )
        result = batch.start().wait()
    result.assert_ok()
    by_id = {c.client: statistics.median(e.rtt_ms for e in c.exchanges) for c in result.clients}
    first = {c.client: c.exchanges[0].rtt_ms for c in result.clients}
    print(f"\ngated tasks, 20 ms on c1 alone: medians {by_id}, first exchanges {first}")
    assert by_id["c1"] >= max(by_id["c0"], by_id["c2"]) + 19.0
    assert first["c1"] >= 20.0  # in force from its first packet
    assert max(by_id["c0"], by_id["c2"]) < 10.0
    assert swarm_lab.faults() == []


def test_a_restarted_server_is_replaced_and_the_clients_lose_nothing(
    swarm_lab: SwarmLab,
) -> None:
    """``restart_server`` on a swarm: a forced update stops the task (it drains) and starts a
    new one; the clients reconnect and every message gets its reply."""
    before = {t["ID"] for t in swarm_lab.tasks("server")}
    batch = swarm_lab.create_clients(4, Workload(count=120, rate=20.0, timeout=120))  # 6 s
    run = batch.start()
    time.sleep(1.5)
    began = time.monotonic()
    new = swarm_lab.restart_server()
    took = time.monotonic() - began
    result = run.wait()
    result.assert_ok()
    assert all(len(c.exchanges) == 120 for c in result.clients)
    reconnects = [c.summary.reconnects for c in result.clients if c.summary]
    print(f"\nserver restarted on the swarm in {took:.1f} s; reconnects {reconnects}")
    assert min(reconnects) >= 1, reconnects
    assert len(new) == swarm_lab.replicas and not set(new) & before
    assert {t["ID"] for t in swarm_lab.tasks("server")} == set(new)


def test_a_partitioned_server_task_is_cut_off_then_healed_and_nothing_is_lost(
    swarm_lab: SwarmLab,
) -> None:
    """``partition`` on a swarm: the server task blocked both ways by its node's agent (two
    block sidecars), the clients' replies stop until ``heal``, then all of them arrive."""
    run = swarm_lab.start_clients(4, Workload(count=60, rate=20.0, timeout=60))  # 3 s each
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [t["Status"]["State"] for t in run.tasks()]
        if len(states) == 4 and all(s == "running" for s in states):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    cut = swarm_lab.partition("server")
    cut_at = time.time()
    kinds = sorted(entry["labels"][labels.FAULT_KIND] for entry in swarm_lab.faults())
    time.sleep(2.0)
    healed = swarm_lab.heal()
    healed_at = time.time()
    assert cut == healed and len(cut) == 1
    assert kinds == ["block", "block"]
    assert swarm_lab.faults() == []
    result = run.wait()
    result.assert_ok()
    assert all(len(c.exchanges) == 60 for c in result.clients)
    during = [
        e
        for c in result.clients
        for e in c.exchanges
        if cut_at + 0.1 < e.received < healed_at - 0.1
    ]
    stalled = max(e.rtt_ms for c in result.clients for e in c.exchanges)
    print(f"\npartition of 2.0 s: longest round trip {stalled:.0f} ms, {len(during)} replies in it")
    assert not during, "replies arrived while the server was cut off"
    assert stalled >= 1500.0


def test_clients_through_a_toxic_proxy_on_the_overlay_see_its_latency(
    swarm_lab: SwarmLab,
) -> None:
    """``proxy`` on a swarm: a container on the lab's attachable overlay under the alias
    ``proxy``; client tasks sent through it see its latency toxic, the proxy counts them."""
    workload = Workload(count=30)
    with swarm_lab.proxy([Toxic("latency", {"latency": "30ms"})]) as proxy:
        through = swarm_lab.run_clients(3, workload, host=proxy.host)
        accepted = proxy.stats()["accepted"]
    direct = swarm_lab.run_clients(3, workload)
    through.assert_ok()
    direct.assert_ok()
    added = _median_rtt(through) - _median_rtt(direct)
    print(f"\nthrough the proxy: +{added:.2f} ms for a 30 ms latency toxic")
    assert accepted >= 3
    assert 29.0 <= added < 45.0


def test_up_and_down_with_engine_swarm_leave_a_swarm_they_did_not_make(
    docker_client: docker.DockerClient, swarm: bool
) -> None:
    mine = {"label": f"{labels.LAB}={SWARM_LAB}"}
    if api.services(docker_client, mine):
        pytest.skip(f"the user's swarm lab {SWARM_LAB} is up: not this test's to remove")
    harness = [sys.executable, "-m", "harness"]
    try:
        up = subprocess.run([*harness, "up", "--engine", "swarm"], capture_output=True, timeout=300)
        assert up.returncode == 0, up.stderr.decode()
        assert b"echolab is up on Swarm" in up.stdout
        names = {s["Spec"]["Name"] for s in api.services(docker_client, mine)}
        assert names == {f"{SWARM_LAB}-server", f"{SWARM_LAB}-agent"}
        again = subprocess.run([*harness, "up", "--engine", "swarm"], capture_output=True)
        assert again.returncode == 0 and b"already up" in again.stderr
    finally:
        down = subprocess.run([*harness, "down", "--engine", "swarm"], capture_output=True)
    assert down.returncode == 0, down.stderr.decode()
    assert not api.services(docker_client, mine)
    assert not docker_client.api.containers(all=True, filters=mine)
    assert cluster.state(docker_client) == "active"  # made by the fixture, not by up: kept


SWARM_EXPERIMENT = """
[experiment]
name = "swarm-e2e"
engine = "swarm"
order = "declared"
timeout = "60s"

fault_target = "clients"

[run]
clients = 3
messages = 200
rate = 20

[grid]
delay = ["0ms", "20ms"]

[[schedule]]
at = "0.5s"
action = "impair"
target = "server"
delay = "10ms"

[[schedule]]
at = "0.8s"
action = "heal"

[[schedule]]
at = "1.6s"
action = "restart"
"""


def test_a_declared_experiment_runs_on_the_swarm(
    tmp_path: Path, docker_client: docker.DockerClient, swarm: bool
) -> None:
    """``engine = "swarm"``: each run on a fresh ``SwarmLab``, its whole-run fault on the
    gated client tasks and its scheduled ones on the server applied through the node's agent,
    a scheduled restart replacing the server task, its records those of a single-machine run."""
    source = tmp_path / "swarm.toml"
    source.write_text(SWARM_EXPERIMENT)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "experiment", "run", str(source), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    records = [json.loads((out / "runs" / r / "run.json").read_text()) for r in manifest["runs"]]
    assert len(records) == 2
    medians: dict[str, float] = {}
    for record in records:
        assert record["engine"] == "swarm" and record["status"] == "ok", record["id"]
        assert record["stats"]["replies"] == 600
        assert not docker_client.api.containers(
            all=True, filters={"label": f"{labels.LAB}={record['lab']}"}
        ), "a run's lab is removed before the next"
        with gzip.open(out / "runs" / record["id"] / "exchanges.csv.gz", "rt") as file:
            rows = list(csv.DictReader(file))
        settings = record["settings"]
        events = {(e["fault"], e["event"]) for e in record["timeline"]}
        assert (("g0", "applied") in events) == (settings["delay"] == "20ms")
        assert {("s0", "applied"), ("s0", "removed"), ("s2", "applied")} <= events
        restart = next(e for e in record["timeline"] if e["fault"] == "s2")
        before = record["t0_wall"] + restart["t_s"]  # what the restart's outage cannot touch
        medians[settings["delay"]] = statistics.median(
            float(row["rtt_ms"]) for row in rows if float(row["sent"]) < before
        )
        reconnects = [client["reconnects"] for client in record["clients"]]
        assert min(reconnects) >= 1, reconnects  # the restart cut every connection
        applied = next(e for e in record["timeline"] if e["fault"] == "s0")
        assert applied["staged"] is False  # a swarm's agent applies in one request
        timings = {k: round(v, 1) for k, v in record["timings"].items()}
        print(f"swarm experiment: {settings['delay']}: {timings}")
    assert 19.0 <= medians["20ms"] - medians["0ms"] < 30.0, medians
