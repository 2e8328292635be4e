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
from harness.errors import ConfigError, FaultError, LabError
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
from harness.swarm import api, cluster, registry, services, teardown
from harness.swarm.agent import Agent, TaskTarget
from harness.swarm.jobs import SwarmBatch, SwarmClientRun
from harness.waiting import NotReady, WaitTimeout, wait_for

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
        self._nodes: dict[str, str] = {}
        self._registry: registry.Registry | None = None
        # An existing registry every node reaches (``host:port``), instead of the lab's own.
        self.registry_address = registry_address or os.environ.get(REGISTRY_ENV) or None
        # Where the images are built, pushed and the kernel asked what it can do, when that
        # is not the manager's engine (simulated nodes: the host's), and the registry as that
        # engine reaches it.
        self._builder = builder
        self.push_address = push_address
        self.subnet = ""  # the overlay's, chosen at start
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
            owner = self.session
            address = self.registry_address
            if address is None:
                self._registry = registry.start(self.docker, lab_id=self.id, owner=owner)
                address = self._registry.address
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
        if node and node not in self._nodes:
            described = self.docker.api.inspect_node(node)
            self._nodes[node] = str(described["Description"]["Hostname"])
        return self._nodes.get(node, node)

    def node_engine(self, node: str) -> DockerClient:
        """The engine of ``node``: given at construction, or the harness's own for its node."""
        if node in self._node_engines:
            return self._node_engines[node]
        if node == cluster.local_node_id(self.docker):
            return self.docker
        raise LabError(
            f"no Docker engine known for node {self.node_name(node)}: the harness reaches a "
            "node's fault agent through that node's engine (SwarmLab(node_engines={...}))"
        )

    def wait_server_healthy(self, timeout: float | None = None) -> None:
        """Wait until ``replicas`` server tasks run (Swarm says running once the image's health
        probe, a real echo exchange, passed)."""

        def healthy() -> None:
            found = self.tasks("server")
            if len(found) < self.replicas:
                every = [t["Status"] for t in self.tasks("server", running=False)]
                states = sorted(f"{s['State']} {s.get('Err') or ''}".strip() for s in every)
                raise NotReady(f"{len(found)}/{self.replicas} running ({', '.join(states)})")

        try:
            wait_for(
                f"the server service of lab {self.id} to be healthy",
                healthy,
                timeout=timeout or self.spec.health_timeout,
            )
        except WaitTimeout as error:
            raise LabError(str(error), self.logs()) from error

    def wait_agents(self, timeout: float = 60.0) -> None:
        """Wait until an agent task runs on every ready node and the local one answers."""

        def ready() -> None:
            nodes = {n["ID"] for n in self.docker.api.nodes() if n["Status"]["State"] == "ready"}
            covered = {t["NodeID"] for t in self.tasks("agent")}
            if not nodes <= covered:
                raise NotReady(f"agents run on {len(covered)} of {len(nodes)} nodes")
            self.agent_on(cluster.local_node_id(self.docker)).request({"op": "ping"})

        try:
            wait_for(
                f"the fault agents of lab {self.id}",
                ready,
                timeout=timeout,
                transient=(docker.errors.APIError, FaultError),
            )
        except WaitTimeout as error:
            raise LabError(str(error), self.logs()) from error

    def _container_of(self, task: dict[str, Any]) -> str:
        status = task["Status"].get("ContainerStatus") or {}
        ident = status.get("ContainerID")
        if not ident:
            raise NotReady(f"task {task['ID'][:12]} has no container yet")
        return str(ident)

    def resolve_tasks(self, target: str) -> list[TaskTarget]:
        """``"server"``: its running tasks' containers (what faults go to)."""
        if target != "server":
            raise ConfigError(
                f"unknown target {target!r} in Swarm lab {self.id}: faults go to 'server' "
                "(client tasks run to completion as a job, and cannot be held before they send)"
            )
        found = []
        for task in self.tasks("server"):
            ident = self._container_of(task)
            engine = self.node_engine(task["NodeID"])
            name = engine.api.inspect_container(ident)["Name"].lstrip("/")
            found.append(TaskTarget(name, ident, str(task["NodeID"])))
        if not found:
            raise ConfigError(f"no running server task in Swarm lab {self.id}")
        return found

    def agent_on(self, node: str) -> Agent:
        for task in self.tasks("agent"):
            if task["NodeID"] == node:
                engine = self.node_engine(node)
                return Agent(engine.containers.get(self._container_of(task)), self.node_name(node))
        raise FaultError(f"no fault agent runs on node {self.node_name(node)}")

    def kill_server_task(self, index: int = 0) -> str:
        """SIGKILL one server task's container (a crash, no drain); Swarm starts another. The
        killed task's id."""
        task = self.tasks("server")[index]
        engine = self.node_engine(task["NodeID"])
        engine.containers.get(self._container_of(task)).kill()
        return str(task["ID"])

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
        """As ``Lab.proxy``: a container on the lab's (attachable) overlay, on the node of the
        harness's engine; clients started with ``host=proxy.host`` reach the server through it."""
        if self._builder is not None:
            raise ConfigError(
                "the toxic proxy runs on the node of the engine that builds the images; "
                "on simulated nodes it is not there yet"
            )
        return toxic_proxy(self, toxics, name=name, seed=seed)

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

    def create_clients(
        self,
        n: int | None = None,
        workload: Workload | None = None,
        *,
        command: Sequence[str] | None = None,
        host: str | None = None,
    ) -> SwarmBatch:
        """As ``Lab.create_clients``; the job is created at ``.start()`` (a task has no gate:
        it sends as soon as it is placed, so clients cannot be impaired before they send)."""
        if command is not None:
            raise ConfigError("a Swarm lab's clients run the client's own command only")
        return SwarmBatch(lambda: self.start_clients(n, workload, host=host))

    def run_clients(
        self, n: int | None = None, workload: Workload | None = None, *, host: str | None = None
    ) -> RunResult:
        return self.start_clients(n, workload, host=host).wait()

    # -- reports --------------------------------------------------------------------------------

    def task_logs(self, task: dict[str, Any], tail: int | None = None) -> tuple[str, str]:
        """A task's stdout and stderr, from its container on its node."""
        engine = self.node_engine(str(task["NodeID"]))
        container = engine.containers.get(self._container_of(task))
        limit: dict[str, Any] = {} if tail is None else {"tail": tail}
        out = container.logs(stdout=True, stderr=False, **limit)
        err = container.logs(stdout=False, stderr=True, **limit)
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def logs(self, tail: int = 200) -> dict[str, str]:
        """The last lines of each task of the lab's services, for reports."""
        found = dict(self.collected_logs)
        for service in api.services(self.docker, {"label": f"{labels.LAB}={self.id}"}):
            for task in api.tasks(self.docker, {"service": service["ID"]}):
                name = f"{service['Spec']['Name']}.{task['ID'][:12]}"
                if not task.get("NodeID"):  # never placed: no container, no log
                    found[name] = str(task["Status"].get("Err") or task["Status"]["State"])
                    continue
                try:
                    out, err = self.task_logs(task, tail)
                except (docker.errors.DockerException, LabError, NotReady) as error:
                    found[name] = f"(no logs: {error})"
                    continue
                found[name] = out + err
        return found


@contextlib.contextmanager
def single_node_lab(spec: LabSpec, **options: Any) -> Iterator[SwarmLab]:
    """A ``SwarmLab`` on this engine's swarm, made for the ``with`` when it is in none."""
    client = docker.from_env(max_pool_size=32)
    with (
        cluster.single_node(client, session.current_id()),
        SwarmLab(spec, client, **options) as lab,
    ):
        yield lab
