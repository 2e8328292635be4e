"""Simulated Swarm nodes: Docker engines in containers on one machine, joined into one swarm.

A lab across machines is tested where there is one machine: each node is an ``echolab-node``
container (``node/``: Debian's own Docker Engine) on a bridge network of its own that the
cluster creates, ``internal`` (no route out: the swarm's traffic stays between the nodes).
Node 0 is the manager, the others workers; each node gets the label ``role`` (``sut`` on the
manager, ``load`` on the workers unless told otherwise), so services are placed as on real
machines. The lab's registry joins the nodes' network under the name ``registry``, and every
node's engine trusts it over plain HTTP, so the lab's images reach the nodes as they would
reach real ones: pushed once, pulled by each node.

The harness drives each node's engine from the host through a Unix socket in a folder it
mounts into the node (nothing listens on a port). Everything carries the lab's labels and its
session's lease, so a crashed run's nodes are swept like any lab container; a node's inner
engine, swarm state and images live in its anonymous volume and die with it.

    with nodes.start(client, workers=1) as cluster:
        reference = cluster.image("echolab-server:latest")  # registry:5000/echolab-server:latest
        cluster.manager.docker.services.create(reference, ...)
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.errors
from docker import DockerClient
from docker.models.containers import Container
from docker.models.networks import Network

from harness import images, labels, session
from harness.errors import LabError
from harness.results import RunResult
from harness.spec import LabSpec, Workload
from harness.swarm import api, services
from harness.swarm import registry as registries
from harness.swarm.jobs import SwarmClientRun
from harness.swarm.lab import SwarmLab
from harness.waiting import NotReady, wait_for

ROLE = "node"
NETWORK_ROLE = "node-network"
REGISTRY_ALIAS = "registry"
SOCKET_DIR = "/run/echolab-node"
READY_TIMEOUT = 90.0
# What the inner engine needs and a container that is not --privileged may have: every
# capability but CAP_SYS_RESOURCE (which some hosts' engines cannot grant), no seccomp or
# AppArmor filter, a writable /proc/sys, and a cgroup namespace of its own.
SECURITY = ["apparmor=unconfined", "seccomp=unconfined"]


@dataclass
class Node:
    """One simulated node: its container, its engine (``docker``) and its swarm identity."""

    index: int
    container: Container
    docker: DockerClient
    address: str  # on the cluster's network
    role: str  # the node label placement uses: "sut" or "load"

    @property
    def hostname(self) -> str:
        return f"node{self.index}"

    @property
    def manager(self) -> bool:
        return self.index == 0


@dataclass
class Cluster:
    """A running simulated swarm; ``close`` removes all of it (nodes, registry, network)."""

    client: DockerClient
    id: str
    network: Network
    registry: registries.Registry
    sockets: Path
    nodes: list[Node] = field(default_factory=list)

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    @property
    def registry_address(self) -> str:
        """The lab registry as the nodes reach it."""
        return f"{REGISTRY_ALIAS}:{registries.PORT.split('/')[0]}"

    def engines(self) -> dict[str, DockerClient]:
        """Each node's engine, by its host name in the swarm."""
        return {node.hostname: node.docker for node in self.nodes}

    def engines_by_id(self) -> dict[str, DockerClient]:
        """Each node's engine, by its node id in the swarm (what ``SwarmLab`` looks up)."""
        by_name = self.engines()
        return {
            str(n.id): by_name[n.attrs["Description"]["Hostname"]]
            for n in self.manager.docker.nodes.list()
        }

    def lab(self, spec: LabSpec | None = None, **options: Any) -> SwarmLab:
        """A ``SwarmLab`` on this cluster: deployed through the manager, its images built on
        the host and pushed to the cluster's registry (pulled by the nodes as ``registry``),
        its faults applied by the agent of whichever node runs the target task."""
        return SwarmLab(
            spec,
            self.manager.docker,
            node_engines=self.engines_by_id(),
            registry_address=self.registry_address,
            builder=self.client,
            push_address=self.registry.address,
            **options,
        )

    def node_name(self, node_id: str) -> str:
        """A node's host name in the swarm (``node0``), from its id."""
        return str(self.manager.docker.api.inspect_node(node_id)["Description"]["Hostname"])

    def task_logs(self, task: dict[str, Any]) -> tuple[str, str]:
        """A task's stdout and stderr, read from the engine of the node that ran it."""
        engine = self.engines()[self.node_name(str(task["NodeID"]))]
        status = task["Status"].get("ContainerStatus") or {}
        container = engine.containers.get(status["ContainerID"])
        out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        return out, container.logs(stdout=False, stderr=True).decode("utf-8", "replace")

    def run_clients(
        self,
        image: str,
        network: str,
        n: int,
        workload: Workload,
        *,
        constraints: list[str],
        name: str = "clients",
    ) -> RunResult:
        """``n`` client tasks of ``image`` as one job on ``network``, placed by
        ``constraints``; their results, read and checked as a ``SwarmLab``'s are."""
        tags = labels.lab_labels(self.id, "clients", labels.USER)
        began = time.monotonic()
        api.create_service(
            self.manager.docker,
            services.clients(image, name, network, tags, n, workload, constraints=constraints),
        )
        run = SwarmClientRun(
            self.manager.docker, self.id, name, n, workload, time.monotonic() - began,
            self.node_name, self.task_logs, dict,
        )  # fmt: skip
        try:
            return run.wait()
        finally:
            run.remove()

    def image(self, image: str) -> str:
        """Push a local image to the lab registry; its reference as the nodes pull it."""
        pushed = self.registry.push(image)
        return f"{self.registry_address}/{pushed.split('/', 1)[1]}"

    def close(self) -> None:
        """Remove the nodes (their engines and volumes with them), the registry, the
        network and the sockets' folder; whatever is already gone is skipped."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.docker.close()
            with contextlib.suppress(docker.errors.NotFound):
                node.container.remove(force=True, v=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.registry.close()
        with contextlib.suppress(docker.errors.NotFound):
            self.network.remove()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def start(
    client: DockerClient,
    *,
    workers: int = 1,
    roles: Mapping[int, str] | None = None,
    lab_id: str | None = None,
) -> Cluster:
    """Start ``1 + workers`` nodes and join them into a swarm (node 0 manages it); wait until
    every node is ready. ``roles`` overrides a node's ``role`` label by index. On any failure,
    or Ctrl-C, everything started is removed before the error goes on."""
    image = images.ensure(client, images.definitions()["node"])
    lab_id = lab_id or f"nodes-{uuid.uuid4().hex[:8]}"
    owner = session.owning(client, image)
    network = client.networks.create(
        f"echolab-{lab_id}-nodes",
        driver="bridge",
        internal=True,
        labels=labels.lab_labels(lab_id, NETWORK_ROLE, owner),
    )
    sockets = Path(tempfile.mkdtemp(prefix=f"echolab-{lab_id}-"))
    cluster: Cluster | None = None
    try:
        lab_registry = registries.start(client, lab_id=lab_id, owner=owner)
        cluster = Cluster(client, lab_id, network, lab_registry, sockets)
        network.connect(lab_registry.container, aliases=[REGISTRY_ALIAS])
        wanted = {0: "sut", **dict(roles or {})}
        for index in range(1 + workers):
            cluster.nodes.append(
                _start_node(cluster, image, owner, index, wanted.get(index, "load"))
            )
        _form_swarm(cluster)
        return cluster
    except BaseException:
        if cluster is not None:
            cluster.close()
        else:
            network.remove()
            shutil.rmtree(sockets, ignore_errors=True)
        raise


def _start_node(cluster: Cluster, image: str, owner: str, index: int, role: str) -> Node:
    folder = cluster.sockets / f"node{index}"
    folder.mkdir()
    network = str(cluster.network.name)
    api = cluster.client.api
    host_config = api.create_host_config(
        binds={str(folder): {"bind": SOCKET_DIR, "mode": "rw"}},
        cap_add=["ALL"],
        cap_drop=["SYS_RESOURCE"],
        security_opt=SECURITY,
        cgroupns="private",
        network_mode=network,
    )
    # The CLI's --security-opt systempaths=unconfined, which the SDK does not spell: nothing
    # under /proc masked or read-only (the inner engine sets its sysctls there).
    host_config.update(MaskedPaths=[], ReadonlyPaths=[])
    created = api.create_container(
        image,
        name=f"echolab-{cluster.id}-node{index}",
        hostname=f"node{index}",
        labels=labels.lab_labels(cluster.id, ROLE, owner),
        environment={"ECHOLAB_INSECURE_REGISTRIES": cluster.registry_address},
        volumes=[SOCKET_DIR],
        host_config=host_config,
    )
    container = cluster.client.containers.get(created["Id"])
    url = f"unix://{folder / 'docker.sock'}"

    def answers() -> DockerClient:
        container.reload()
        if container.status != "running":
            tail = container.logs(tail=30).decode(errors="replace")
            raise LabError(f"{container.name} stopped ({container.status}): {tail}")
        try:  # the client asks the engine its API version as it is made
            return DockerClient(base_url=url, timeout=60)
        except (docker.errors.DockerException, OSError) as error:
            raise NotReady(f"its engine does not answer yet ({error})") from None

    try:
        container.start()
        engine = wait_for(f"the engine in {container.name}", answers, timeout=READY_TIMEOUT)
        return Node(index, container, engine, _address(container, network), role)
    except BaseException:
        container.remove(force=True, v=True)
        raise


def _address(container: Container, network: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def _form_swarm(cluster: Cluster) -> None:
    manager = cluster.manager
    manager.docker.swarm.init(advertise_addr=manager.address, listen_addr="0.0.0.0:2377")
    manager.docker.swarm.reload()
    token = manager.docker.swarm.attrs["JoinTokens"]["Worker"]
    for worker in cluster.workers:
        worker.docker.swarm.join(
            remote_addrs=[f"{manager.address}:2377"],
            join_token=token,
            advertise_addr=worker.address,
            listen_addr="0.0.0.0:2377",
        )
    wanted = {node.hostname: node.role for node in cluster.nodes}

    def all_ready() -> None:
        found = {n.attrs["Description"]["Hostname"]: n for n in manager.docker.nodes.list()}
        missing = [h for h in wanted if found.get(h) is None]
        if missing:
            raise NotReady(f"not joined yet: {', '.join(missing)}")
        waiting = [h for h, n in found.items() if n.attrs["Status"]["State"] != "ready"]
        if waiting:
            raise NotReady(f"not ready yet: {', '.join(waiting)}")

    wait_for(f"the {len(wanted)} nodes of {cluster.id} to be ready", all_ready, timeout=60)
    for found in manager.docker.nodes.list():
        hostname = found.attrs["Description"]["Hostname"]
        spec = dict(found.attrs["Spec"])
        spec["Labels"] = {**spec.get("Labels", {}), "role": wanted[hostname]}
        found.update(spec)
