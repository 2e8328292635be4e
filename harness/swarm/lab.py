"""The lab on Docker Swarm: the same experiment as ``Lab``, with services instead of containers.

``SwarmLab(spec)`` runs, on the swarm its engine manages (``cluster``), from the lab's own
registry (``registry``: the images every node pulls, pushed at start): the server as a service
of ``replicas`` tasks on an internal, attachable overlay network that belongs to the lab; the
fault agent on every node (``agent``); and each batch of clients as a job whose tasks run to
completion (``jobs``). Results and checks are the single-machine lab's own.

Deployed with the Docker SDK, not ``docker stack deploy`` on compose.yaml: a stack has no job
mode for clients before Compose's ``mode: replicated-job`` (needs docker CLI 24), gives no
handle on a batch's tasks, and the CLI would be one more tool to find; the SDK's services are
the same objects, each created from a pure description (``services``), labelled and owned by
the lab's session like everything the harness makes.

Everything carries the lab's labels; ``close()`` removes the services, then (their tasks gone)
the registry, sidecars and the network, also after a failure in ``start()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import docker
import docker.errors
from docker.client import DockerClient
from docker.types import IPAMConfig, IPAMPool
from echolab_fault_agent import LAB_ENV

from harness import images, labels, session, sweep
from harness.errors import ConfigError, FaultError
from harness.faults import impair as impairs
from harness.faults.backend import Backend
from harness.faults.block import BlockDirection
from harness.faults.impair import Applied
from harness.faults.model import Direction, Distribution, Impairment
from harness.faults.proxy import Proxy, ToxicLike, toxic_proxy
from harness.faults.target import Target
from harness.results import RunResult
from harness.spec import LabSpec, Workload, check_capacity
from harness.swarm import agent as agents
from harness.swarm import api, cluster, health, jobs, registry, services, teardown
from harness.swarm.agent import Agent, TaskTarget
from harness.swarm.jobs import SwarmBatch, SwarmClientRun
from harness.swarm.placement import Nodes, container_id

log = logging.getLogger(__name__)
SWARM_IMAGES = ("server", "client", "engine", "agent")
REGISTRY_ENV = "ECHOLAB_REGISTRY"


class SwarmLab:
    """One server service and its client jobs on a lab-owned overlay (see module doc)."""

    def __init__(
        self,
        spec: LabSpec | None = None,
        client: DockerClient | None = None,
        *,
        replicas: int = 1,
        endpoint_mode: cluster.EndpointMode | None = None,
        lab_id: str | None = None,
        owner: str | None = None,
        node_engines: dict[str, DockerClient] | None = None,
        registry_address: str | None = None,
        builder: DockerClient | None = None,
        push_address: str | None = None,
        server_constraints: list[str] | None = None,
    ) -> None:
        self.spec = spec or LabSpec()
        if replicas < 1:
            raise ConfigError(f"replicas must be >= 1, got {replicas}")
        self.replicas = replicas
        self.server_constraints = list(server_constraints or [])  # ["node.labels.role==sut"]
        self.endpoint_mode = cluster.endpoint_mode(endpoint_mode)
        self.id = lab_id or f"{self.spec.name}-{uuid.uuid4().hex[:8]}"
        self._client = client
        self._owner = owner  # None: this process's session
        self._session: str | None = None
        self._node_engines = dict(node_engines or {})
        self._placement: Nodes | None = None
        self._client_entrypoint: list[str] = []
        self._registry: registry.Registry | None = None
        # An existing registry every node reaches (``host:port``), instead of the lab's own.
        self.registry_address = registry_address or os.environ.get(REGISTRY_ENV) or None
        # Where the images are built, pushed and the kernel asked what it can do, when that
        # is not the manager's engine (simulated nodes: the host's), and the registry as that
        # engine reaches it.
        self._builder = builder
        self.push_address = push_address
        self.subnet = ""  # the overlay's, chosen at start
        self._pull_address = ""  # the registry as the nodes reach it, known at start
        self.references: dict[str, str] = {}  # image name -> its reference in the lab registry
        self._batches = 0
        self._partitions = agents.Partitions(self)
        self.collected_logs: dict[str, str] = {}

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def docker(self) -> DockerClient:
        if self._client is None:
            self._client = docker.from_env(max_pool_size=32)
        return self._client

    @property
    def nodes(self) -> Nodes:
        """The nodes' engines, names and the tasks' containers (``placement``)."""
        if self._placement is None:
            self._placement = Nodes(self.docker, self._node_engines)
        return self._placement

    @property
    def builder(self) -> DockerClient:
        """The engine that builds and pushes the lab's images (the lab's own unless given)."""
        return self._builder or self.docker

    @property
    def session(self) -> str:
        if self._session is None:
            self._session = session.owning(self.builder, self.spec.client_image, self._owner)
        return self._session

    @property
    def network(self) -> str:
        return self.id

    @property
    def engine_image(self) -> str:
        return self.references["engine"]

    def service_name(self, role: str) -> str:
        return f"{self.id}-{role}"

    def __enter__(self) -> SwarmLab:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Push the images to the lab registry, make the overlay, deploy the agents and the
        server, wait until every server task answers a real exchange and every agent runs;
        on any failure remove everything made so far."""
        cluster.require_manager(self.docker)
        try:
            if self._builder is None:
                # Orphans are told by the leases on the same engine; a lab whose session is
                # held on another (the nodes') leaves this to the nodes' own sweep.
                sweep.sweep(self.docker, everything=False)
                teardown.sweep_services(self.docker)
            tags = images.ensure_all(self.builder, SWARM_IMAGES)
            config = self.builder.images.get(tags["client"]).attrs["Config"]
            self._client_entrypoint = list(config.get("Entrypoint") or [])
            owner = self.session
            address = self.registry_address
            if address is None:
                self._registry = registry.start(self.docker, lab_id=self.id, owner=owner)
                address = self._registry.address
            self._pull_address = address
            pushing = self.push_address or address
            for name, tag in tags.items():
                registry.push(self.builder, pushing, tag)
                self.references[name] = registry.reference(address, tag)
            self.subnet = cluster.free_subnet(cluster.subnets_in_use(self.docker))
            self.docker.networks.create(
                self.network,
                driver="overlay",
                internal=True,
                attachable=True,
                scope="swarm",
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=self.subnet)]),
                labels=self._labels("network"),
            )
            self._create(
                services.agent(
                    self.references["agent"],
                    self.service_name("agent"),
                    self._labels("agent"),
                    self.id,
                    LAB_ENV,
                )
            )
            self._create(
                services.server(
                    self.spec,
                    self.references["server"],
                    self.service_name("server"),
                    self.network,
                    self._labels("server"),
                    replicas=self.replicas,
                    endpoint_mode=self.endpoint_mode,
                    constraints=self.server_constraints,
                )
            )
            self.wait_server_healthy()
            self.wait_agents()
        except BaseException:
            self.close()
            raise

    def _create(self, args: services.ServiceArgs) -> str:
        return api.create_service(self.docker, args)

    def close(self) -> None:
        """Remove the lab's services, then (once their tasks are gone) its containers (the
        registry, any sidecar left) and its network."""
        try:
            self._partitions.heal()
        finally:
            teardown.remove_lab(self.docker, self.id)
            self._registry = None

    def _labels(self, role: str) -> dict[str, str]:
        return labels.lab_labels(self.id, role, self.session)

    # -- tasks and nodes ------------------------------------------------------------------------

    def tasks(self, role: str, *, running: bool = True) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {"service": self.service_name(role)}
        if running:
            filters["desired-state"] = "running"
        found = api.tasks(self.docker, filters)
        if running:
            found = [t for t in found if t["Status"]["State"] == "running"]
        return sorted(found, key=lambda t: (int(t.get("Slot") or 0), t["ID"]))

    def node_name(self, node: str) -> str:
        return self.nodes.name(node)

    def node_engine(self, node: str) -> DockerClient:
        return self.nodes.engine(node)

    def wait_server_healthy(self, timeout: float | None = None) -> None:
        health.server_healthy(self, timeout)

    def wait_agents(self, timeout: float = 60.0) -> None:
        health.agents_ready(self, timeout)

    def client_tasks(self) -> list[dict[str, Any]]:
        """The running tasks of every client job of this lab (gated or sending)."""
        filters = {"label": [f"{labels.LAB}={self.id}", f"{labels.ROLE}=clients"]}
        found = []
        for service in api.services(self.docker, filters):
            # not by desired state: a job task's is "complete" while it runs
            found += api.tasks(self.docker, {"service": service["ID"]})
        return [t for t in found if t["Status"]["State"] == "running"]

    def resolve_tasks(self, target: str) -> list[TaskTarget]:
        """``"server"`` (its running tasks), ``"clients"`` (every client task running now) or
        a client id (``c<slot>``): the containers faults go to, each with its node."""
        if target == "server":
            chosen = self.tasks("server")
        else:
            chosen = [t for t in self.client_tasks() if target in ("clients", jobs.client_id(t))]
        if not chosen:
            raise ConfigError(
                f"unknown target {target!r} in Swarm lab {self.id}: no running task of it "
                "(targets: 'server', 'clients' or a running client's id; create clients with "
                "lab.create_clients() to impair them before they send)"
            )
        found = []
        for task in chosen:
            ident = container_id(task)
            engine = self.node_engine(task["NodeID"])
            name = engine.api.inspect_container(ident)["Name"].lstrip("/")
            found.append(TaskTarget(name, ident, str(task["NodeID"])))
        return sorted(found, key=lambda t: t.name)

    def agent_on(self, node: str) -> Agent:
        for task in self.tasks("agent"):
            if task["NodeID"] == node:
                engine = self.node_engine(node)
                return Agent(engine.containers.get(container_id(task)), self.node_name(node))
        raise FaultError(f"no fault agent runs on node {self.node_name(node)}")

    def kill_server_task(self, index: int = 0) -> str:
        """SIGKILL one server task's container (a crash, no drain); Swarm starts another. The
        killed task's id."""
        task = self.tasks("server")[index]
        self.nodes.container(task).kill()
        return str(task["ID"])

    def restart_server(self, timeout: float | None = None) -> list[str]:
        """As ``Lab.restart_server``: every server task stopped (SIGTERM: it drains) and
        replaced in turn (a rolling update); the new tasks' ids once they run, healthy. A new
        task is a new container, on whichever node Swarm picks."""
        return health.restart_server(self, timeout)

    # -- faults ---------------------------------------------------------------------------------

    def report_backend(self, impairment: Impairment, backend: str | None) -> Backend:
        """The backend for ``impairment``: what the builder engine's kernel can do (on one
        node, the node's; simulated nodes share the host's kernel)."""
        return impairs.report(self.builder, self.session).backend_for(impairment, backend)

    def impair(
        self,
        target: Target,
        *,
        delay: str | float = 0,
        jitter: str | float = 0,
        correlation: str | float = 0,
        distribution: Distribution = "uniform",
        loss: str | float = 0,
        rate: str | None = None,
        direction: Direction = "egress",
        seed: int = 0,
        keep_order: bool = True,
        backend: str | None = None,
    ) -> AbstractContextManager[Applied]:
        """As ``Lab.impair``; applied by the fault agent on the node of each target task."""
        impairment = Impairment.parse(
            delay=delay,
            jitter=jitter,
            correlation=correlation,
            distribution=distribution,
            loss=loss,
            rate=rate,
            direction=direction,
            seed=seed,
            keep_order=keep_order,
        )
        return self.impair_with(target, impairment, backend=backend)

    def impair_with(
        self, target: Target, impairment: Impairment, *, backend: str | None = None
    ) -> AbstractContextManager[Applied]:
        return agents.impair(self, target, impairment, backend=backend)

    def proxy(
        self, toxics: Sequence[ToxicLike] = (), *, name: str = "proxy", seed: int = 0
    ) -> AbstractContextManager[Proxy]:
        """As ``Lab.proxy``: a container on the lab's (attachable) overlay, on the manager's
        node; clients started with ``host=proxy.host`` reach the server through it. Its image
        is the builder's; where the manager's engine is another, it is pushed to the lab's
        registry and pulled from there."""
        image = None
        if self._builder is not None:
            tag = images.tag_for(self.builder, "proxy")
            registry.push(self.builder, self.push_address or self._pull_address, tag)
            image = registry.reference(self._pull_address, tag)
            name_only, version = registry.split_reference(image)
            self.docker.images.pull(name_only, tag=version)
        return toxic_proxy(self, toxics, name=name, seed=seed, image=image)

    def partition(self, target: Target) -> list[str]:
        """As ``Lab.partition``, until ``heal``: ``target`` blocked both ways by its agent."""
        return self._partitions.cut(target)

    def heal(self) -> list[str]:
        return self._partitions.heal()

    def block(
        self, target: Target, direction: BlockDirection = "ingress"
    ) -> AbstractContextManager[list[str]]:
        """As ``Lab.block``: ``target``'s packets dropped one way, by its node's agent."""
        return agents.block(self, target, direction)

    def faults(self) -> list[dict[str, Any]]:
        """Every fault sidecar of this lab on every node, as the agents list them."""
        found = []
        for task in self.tasks("agent"):
            agent = self.agent_on(task["NodeID"])
            listed = agent.request({"op": "list", "labels": {labels.LAB: self.id}})["sidecars"]
            found += [{**entry, "node": agent.node} for entry in listed]
        return found

    # -- clients --------------------------------------------------------------------------------

    def start_clients(
        self,
        n: int | None = None,
        workload: Workload | None = None,
        *,
        host: str | None = None,
        constraints: list[str] | None = None,
    ) -> SwarmClientRun:
        """``n`` client tasks as one job, all at once; collect them with ``.wait()``.
        ``constraints`` place them (``["node.labels.role==load"]``)."""
        return self._job(n, workload, host=host, constraints=constraints, gated=False)

    def create_clients(
        self,
        n: int | None = None,
        workload: Workload | None = None,
        *,
        command: Sequence[str] | None = None,
        host: str | None = None,
        constraints: list[str] | None = None,
    ) -> SwarmBatch:
        """As ``Lab.create_clients``: ``n`` client tasks placed and waiting at their gate,
        each on its node; faults applied to them now hold from their first packet;
        ``.start()`` opens the gates."""
        job = self._job(
            n, workload, host=host, constraints=constraints, gated=True, command=command
        )
        try:
            placed = job.wait_placed(timeout=60.0 + 0.5 * job.n)
            return SwarmBatch(job, [self.nodes.container(task) for task in placed])
        except BaseException:
            job.remove()
            raise

    def _job(
        self,
        n: int | None,
        workload: Workload | None,
        *,
        host: str | None,
        constraints: list[str] | None,
        gated: bool,
        command: Sequence[str] | None = None,
    ) -> SwarmClientRun:
        """One job of ``n`` client tasks; ``command``: the client's arguments, when not the
        workload's (``ECHO_CLIENT_ID`` names each task by its slot)."""
        n = self.spec.clients if n is None else n
        workload = workload or self.spec.workload
        check_capacity(self.spec.server, n, workload)
        if self.subnet and not cluster.tasks_fit(self.subnet, n + self.replicas):
            raise ConfigError(f"{n} client tasks do not fit the lab's overlay {self.subnet}")
        began = time.monotonic()
        name = self.service_name(f"clients{self._batches}")
        self._batches += 1
        self._create(
            services.clients(
                self.references["client"],
                name,
                self.network,
                self._labels("clients"),
                n,
                workload,
                host=host,
                constraints=constraints,
                command=jobs.gated(self._client_entrypoint) if gated else None,
                args=None if command is None else list(command),
            )
        )
        return SwarmClientRun(
            self.docker,
            self.id,
            name,
            n,
            workload,
            time.monotonic() - began,
            self.node_name,
            self.task_logs,
            self.logs,
        )

    def run_clients(
        self, n: int | None = None, workload: Workload | None = None, *, host: str | None = None
    ) -> RunResult:
        return self.start_clients(n, workload, host=host).wait()

    # -- reports --------------------------------------------------------------------------------

    def task_logs(self, task: dict[str, Any], tail: int | None = None) -> tuple[str, str]:
        return self.nodes.task_logs(task, tail)

    def logs(self, tail: int = 200) -> dict[str, str]:
        """The last lines of each task of the lab's services, for reports."""
        return {**self.collected_logs, **self.nodes.service_logs(self.id, tail)}


@contextlib.contextmanager
def single_node_lab(spec: LabSpec, **options: Any) -> Iterator[SwarmLab]:
    """A ``SwarmLab`` on this engine's swarm, made for the ``with`` when it is in none."""
    client = docker.from_env(max_pool_size=32)
    with (
        cluster.single_node(client, session.current_id()),
        SwarmLab(spec, client, **options) as lab,
    ):
        yield lab
