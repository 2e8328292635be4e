"""Two Swarm nodes on one machine (``harness.swarm.nodes``): Docker engines in containers,
joined into a swarm on a network the test creates, fed from the lab's own registry.

Client tasks placed on the worker (by its ``role`` label) reach the server task on the
manager across an internal overlay network; every reply is checked by the same checks as a
single-machine lab, from each task's own output on the node that ran it. Closing the cluster
leaves nothing behind, and the host's own engine is never put in swarm mode.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import docker
import docker.errors
import pytest
from docker.types import EndpointSpec

from harness import images, labels
from harness.faults.sidecar import ROLE as SIDECAR_ROLE
from harness.faults.toxic import Toxic
from harness.results import RunResult
from harness.spec import LabSpec, Workload
from harness.swarm import nodes

pytestmark = pytest.mark.timeout(900)  # the first run builds the node's base (mmdebstrap)
CLIENTS, MESSAGES = 4, 50


def _swarm_state(client: docker.DockerClient) -> str:
    return str(client.info()["Swarm"]["LocalNodeState"])


@pytest.fixture(scope="module")
def cluster(docker_client: docker.DockerClient) -> Iterator[nodes.Cluster]:
    before = _swarm_state(docker_client)
    with nodes.start(docker_client, workers=1) as made:
        yield made
    assert _swarm_state(docker_client) == before, "the host's own engine changed swarm state"


def test_the_nodes_form_one_swarm_with_their_roles(cluster: nodes.Cluster) -> None:
    found = {
        n.attrs["Description"]["Hostname"]: n.attrs for n in cluster.manager.docker.nodes.list()
    }
    assert sorted(found) == ["node0", "node1"]
    assert found["node0"]["Spec"]["Role"] == "manager"
    assert found["node1"]["Spec"]["Role"] == "worker"
    assert {h: a["Spec"]["Labels"]["role"] for h, a in found.items()} == {
        "node0": "sut",
        "node1": "load",
    }
    assert all(a["Status"]["State"] == "ready" for a in found.values())


def test_clients_on_the_worker_reach_the_server_on_the_manager(
    docker_client: docker.DockerClient, cluster: nodes.Cluster
) -> None:
    engine = cluster.manager.docker
    server = cluster.image(images.tag_for(docker_client, "server"))
    client = cluster.image(images.tag_for(docker_client, "client"))
    overlay = engine.networks.create(
        f"echolab-{cluster.id}-lab", driver="overlay", internal=True, attachable=True
    )
    # No IPVS on some kernels (this one): the server's name resolves to its task (dnsrr).
    serving = engine.services.create(
        server, name="server", networks=[overlay.name], endpoint_spec=EndpointSpec(mode="dnsrr"),
        constraints=["node.labels.role==sut"],
    )  # fmt: skip
    workload = Workload(count=MESSAGES, pipeline=4, timeout=60, connect_timeout=30)
    try:
        began = time.monotonic()
        result = cluster.run_clients(
            client, str(overlay.name), CLIENTS, workload, constraints=["node.labels.role==load"]
        )
        took = time.monotonic() - began
        hostnames = {n.id: n.attrs["Description"]["Hostname"] for n in engine.nodes.list()}
        placed = {hostnames[t["NodeID"]] for t in serving.tasks()}
        assert placed == {"node0"}, f"server tasks ran on {placed}"
        assert {r.node for r in result.clients} == {"node1"}, "client tasks left the worker"
        assert sorted(r.client for r in result.clients) == [f"c{i}" for i in range(CLIENTS)]
        problems = result.problems()
        assert not problems, "\n".join(map(str, problems[:20]))
        assert sum(len(r.exchanges) for r in result.clients) == CLIENTS * MESSAGES
        rtts = sorted(rtt for r in result.clients for rtt in r.rtts_ms())
        print(f"swarm nodes: {CLIENTS} tasks x {MESSAGES} across the overlay in {took:.1f} s; "
              f"rtt median {rtts[len(rtts) // 2]:.3f} ms")  # fmt: skip
    finally:  # the rest (networks, task containers) goes with the nodes
        serving.remove()


def _median_rtt(result: RunResult) -> float:
    result.assert_ok()
    return statistics.median(rtt for r in result.clients for rtt in r.rtts_ms())


def test_a_lab_on_the_nodes_faults_a_worker_task_through_that_nodes_agent(
    cluster: nodes.Cluster,
) -> None:
    """``SwarmLab`` across the nodes: the server placed on the worker, clients on the manager;
    a delay on the server is applied by the worker's agent (its sidecar on the worker's engine,
    none on the manager's), seen by the clients across the overlay, and removed; a toxic proxy
    on the manager's engine, its image from the lab registry, adds its latency."""
    on_manager = ["node.role==manager"]
    workload = Workload(count=40, timeout=60, connect_timeout=30)
    with cluster.lab(LabSpec(clients=0), server_constraints=["node.role==worker"]) as lab:
        [task] = lab.resolve_tasks("server")
        assert lab.node_name(task.node) == "node1"
        base = _median_rtt(lab.start_clients(3, workload, constraints=on_manager).wait())
        with lab.impair("server", delay="20ms"):
            assert [entry["node"] for entry in lab.faults()] == ["node1"]
            mine = {"label": [f"{labels.LAB}={lab.id}", f"{labels.ROLE}={SIDECAR_ROLE}"]}
            worker, manager = cluster.workers[0].docker, cluster.manager.docker
            assert len(worker.containers.list(filters=mine)) == 1
            assert manager.containers.list(filters=mine) == []
            delayed = lab.start_clients(3, workload, constraints=on_manager).wait()
            assert {r.node for r in delayed.clients} == {"node0"}
        slower = _median_rtt(delayed)
        print(f"swarm nodes: median rtt {base:.2f} ms, {slower:.2f} ms under a 20 ms delay "
              "on the worker's server task")  # fmt: skip
        assert base + 19.0 <= slower < base + 40.0
        assert lab.faults() == []
        assert worker.containers.list(all=True, filters=mine) == []
        # The toxic proxy: built on the host, pulled by the manager from the lab registry.
        with lab.proxy([Toxic("latency", {"latency": "30ms"})]) as proxy:
            assert proxy.container.client.api.base_url == manager.api.base_url
            through = lab.start_clients(3, workload, host=proxy.host, constraints=on_manager)
            proxied = through.wait()
        proxied.assert_ok()
        added = _median_rtt(proxied) - base
        print(f"swarm nodes: +{added:.2f} ms through the proxy's 30 ms latency toxic")
        assert 29.0 <= added < 45.0


def test_a_closed_cluster_leaves_nothing(docker_client: docker.DockerClient) -> None:
    made = nodes.start(docker_client, workers=0, lab_id=f"nodes-close-{time.time_ns() % 10**8}")
    sockets = made.sockets
    volumes = [m["Name"] for n in made.nodes for m in n.container.attrs["Mounts"] if "Name" in m]
    assert volumes, "a node keeps its engine's state in a volume"
    made.close()
    mine = labels.project_filter(**{labels.LAB: made.id})
    assert docker_client.containers.list(all=True, filters=mine) == []
    assert docker_client.networks.list(filters=mine) == []
    for volume in volumes:
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(volume)
    assert not sockets.exists()
