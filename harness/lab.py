"""A lab made real with the Docker SDK: a labelled network, a server, N client containers.

Everything the lab creates carries its id (``org.echolab.lab``) and is removed by that label in
``close()``, which runs from ``__exit__`` also after a failure or Ctrl-C, and from ``start()``
when start-up itself fails. Several labs run at once without clashing: names, network and DNS
alias are all scoped by the lab id, and no port is published.

Clients can be made before they run (``create_clients``, see ``harness.clients``), so that
faults hold from their first packet. Faults (``impair``, ``block``, ``partition``, ``proxy``)
are ``harness.faults``'; this is the facade that puts them on the lab.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Literal

import docker
import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container
from docker.models.networks import Network

from harness import containers, images, labels, session, sweep
from harness.clients import GATE_SCRIPT, ClientBatch, ClientRun
from harness.containers import HARDENING, name_of, output_of
from harness.errors import ConfigError, LabError
from harness.faults import block as blocks
from harness.faults import impair as impairs
from harness.faults import partition as partitions
from harness.faults.block import BlockDirection
from harness.faults.impair import Applied
from harness.faults.model import Direction, Distribution, Impairment
from harness.faults.proxy import Proxy, ToxicLike, toxic_proxy
from harness.faults.target import Target
from harness.results import ClientResult, RunResult
from harness.spec import SERVER_ALIAS, LabSpec, Workload, check_capacity
from harness.swarm.lab import SwarmLab
from harness.waiting import NotReady, WaitTimeout, wait_for

log = logging.getLogger(__name__)
HEALTH_PROBE = ["python3", "-m", "echo_server.healthcheck"]


Engine = Literal["docker", "swarm"]


class Lab:
    """One server and its clients on a private, internal network (see ``LabSpec``).

    ``Lab(spec, engine="swarm")`` is the same lab on the swarm this engine manages: a
    ``harness.swarm.lab.SwarmLab`` (services, a lab registry, faults through each node's agent),
    with the same calls to start, run and collect clients, impair, and check. Typed as ``Lab``;
    what only a swarm has (``kill_server_task``, ``tasks``) is ``SwarmLab``'s."""

    def __new__(
        cls,
        spec: LabSpec | None = None,
        client: DockerClient | None = None,
        engine: Engine = "docker",
    ) -> Any:
        if engine == "swarm":
            return SwarmLab(spec, client)
        if engine != "docker":
            raise ConfigError(f"engine must be 'docker' or 'swarm', got {engine!r}")
        return super().__new__(cls)

    def __init__(
        self,
        spec: LabSpec | None = None,
        client: DockerClient | None = None,
        engine: Engine = "docker",
    ) -> None:
        self.spec = spec or LabSpec()
        self.id = f"{self.spec.name}-{uuid.uuid4().hex[:8]}"
        self._client = client
        self._network: Network | None = None
        self._server: Container | None = None
        self._client_count = 0
        self._session: str | None = None  # this process's, once start() acquired its lease
        self._count_lock = threading.Lock()
        self.collected_logs: dict[str, str] = {}

    # -- life cycle -------------------------------------------------------------------------

    @property
    def docker(self) -> DockerClient:
        if self._client is None:
            # One pooled connection per worker thread that starts containers, plus headroom.
            self._client = docker.from_env(max_pool_size=self.spec.start_parallelism + 8)
        return self._client

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def session(self) -> str | None:
        """What this lab creates belongs to this process's session (``harness.session``: swept
        once the process is gone, wherever it ran)."""
        return None

    @property
    def network(self) -> str:
        return self.id

    @property
    def parallelism(self) -> int:
        return self.spec.start_parallelism

    def start(self) -> None:
        """Build what is missing or stale, make the network, start the server, wait until it
        answers a real exchange; on any failure remove everything made so far."""
        try:
            sweep.sweep(self.docker, everything=False)
            self._ensure_images()
            # The lease first: what carries this session is an orphan while none runs.
            self._session = session.acquire(self.docker, self.spec.client_image)
            self._network = self.docker.networks.create(
                self.id, driver="bridge", internal=True, labels=self._labels("network")
            )
            self._server = self._create_server()
            containers.start(self._server)
            self.wait_server_healthy()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove every container and the network of this lab, whatever state they are in."""
        sweep.remove_lab(self.docker, self.id)
        self._network = None
        self._server = None

    # -- server -------------------------------------------------------------------------------

    @property
    def server(self) -> Container:
        if self._server is None:
            raise LabError(f"lab {self.id} is not started")
        return self._server

    def _create_server(self) -> Container:
        backlog = self.spec.backlog
        return self.docker.containers.create(
            self.spec.server_image,
            name=f"{self.id}-server",
            hostname=SERVER_ALIAS,
            environment={**self.spec.server.environment(), "ECHO_BACKLOG": str(backlog)},
            labels={**self._labels("server"), labels.ALIASES: SERVER_ALIAS},
            network=self.id,
            networking_config={
                self.id: self.docker.api.create_endpoint_config(aliases=[SERVER_ALIAS])
            },
            # No periodic HEALTHCHECK in a lab: Docker would exec a Python probe into the server
            # every interval for the whole experiment (CPU taken from the clients being started,
            # and noise in every latency measured). The harness probes readiness itself, with
            # the same real exchange, only while it waits (``wait_server_healthy``).
            healthcheck={"test": ["NONE"]},
            mem_limit="256m",
            pids_limit=256,
            ulimits=containers.file_limit("server", self.spec.server.max_connections),
            sysctls={"net.core.somaxconn": str(backlog)},
            **HARDENING,
        )

    def wait_server_healthy(self, timeout: float | None = None) -> None:
        """Wait until the server answers a real echo exchange (the image's own health probe,
        ``echo_server.healthcheck``, exec'd in the server); a server that exits is an error at
        once, with its logs."""
        server = self.server

        def healthy() -> None:
            server.reload()
            state = server.attrs["State"]
            if state["Status"] in ("exited", "dead"):
                raise LabError(
                    f"server of lab {self.id} exited with {state['ExitCode']}", self.logs()
                )
            if state["Status"] != "running":
                raise NotReady(f"status={state['Status']}")
            try:
                code, output = server.exec_run(HEALTH_PROBE)
            except docker.errors.APIError as error:  # stopped between reload and exec
                raise NotReady(f"probe not run: {error.explanation or error}") from error
            if code != 0:
                raise NotReady(f"probe: {output_of(output).decode(errors='replace').strip()}")

        try:
            wait_for(
                f"server of lab {self.id} to be healthy (a real echo exchange)",
                healthy,
                timeout=timeout or self.spec.health_timeout,
            )
        except WaitTimeout as error:
            raise LabError(str(error), self.logs()) from error

    def resolve_target(self, target: str) -> list[Container]:
        """``"server"``, ``"clients"`` (every client container that exists now) or a client id."""
        if target == "server":
            return [self.server]
        extra = {labels.LAB: self.id, labels.ROLE: "client"}
        if target != "clients":
            extra[labels.CLIENT] = target
        found = self.docker.containers.list(filters=labels.project_filter(**extra))
        if not found:
            which = "no running client" if target == "clients" else f"no running client {target!r}"
            raise ConfigError(
                f"unknown target: {which} in lab {self.id} (targets: 'server', 'clients' or a "
                "running client's id; create clients with lab.create_clients() to impair them "
                "before they start)"
            )
        return sorted(found, key=name_of)

    # -- faults -------------------------------------------------------------------------------

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
        """Packet faults on ``target`` (``"server"``, a client id, several in a list, or
        ``"clients"``) inside a ``with``. Units as tc spells them: ``"20ms"``, ``"1%"``,
        ``"10mbit"``; ``delay`` is added to each packet of ``direction`` (``egress``: leaving
        the target). ``backend`` forces ``"netem"`` or ``"nfqueue"`` (default: the host's best).
        Everything is validated (``ConfigError``) before anything changes."""
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
        """``impair`` for an ``Impairment`` already made (experiments hold theirs)."""
        return impairs.impair(self, target, impairment, backend=backend)

    def proxy(
        self, toxics: Sequence[ToxicLike] = (), *, name: str = "proxy", seed: int = 0
    ) -> AbstractContextManager[Proxy]:
        """A TCP proxy to the server with Toxiproxy's toxics (``Toxic``); start clients with
        ``host=proxy.host``."""
        return toxic_proxy(self, toxics, name=name, seed=seed)

    def partition(self, target: Target) -> list[str]:
        """Disconnect ``target`` from the lab network (until ``heal``)."""
        return partitions.partition(self, target)

    def heal(self) -> list[str]:
        """Reconnect everything ``partition`` cut off, with its DNS aliases."""
        return partitions.heal(self)

    def block(
        self, target: Target, direction: BlockDirection = "ingress"
    ) -> AbstractContextManager[list[str]]:
        """Drop ``target``'s packets one way (``ingress`` or ``egress``) inside a ``with``."""
        return blocks.block(self, target, direction)

    def faults(self) -> list[dict[str, Any]]:
        """Every fault sidecar of this lab, with what it applies now (see ``in_force``)."""
        return impairs.in_force(self.docker, self.id)

    def restart_server(self, stop_timeout: int = 10) -> None:
        """SIGTERM the server (it drains), start it again, wait until healthy."""
        self.server.restart(timeout=stop_timeout)
        self.wait_server_healthy()

    # -- clients ------------------------------------------------------------------------------

    def start_clients(
        self,
        n: int | None = None,
        workload: Workload | None = None,
        *,
        command: Sequence[str] | None = None,
        host: str | None = None,
        before_start: Callable[[ClientBatch], None] | None = None,
    ) -> ClientRun:
        """Create and start ``n`` client containers at once; collect them with ``.wait()``.

        Containers are created and started by a pool of ``spec.start_parallelism`` threads
        (16; why, in ``LabSpec``). ``host``
        is the clients' ``ECHO_HOST`` (default: the server). ``before_start(batch)`` runs
        after the containers exist and before any client sends (see ``create_clients``).
        """
        if before_start is not None:
            batch = self.create_clients(n, workload, command=command, host=host)
            before_start(batch)
            return batch.start()
        return self._launch(n, workload, command=command, host=host, gated=False)

    def create_clients(
        self,
        n: int | None = None,
        workload: Workload | None = None,
        *,
        command: Sequence[str] | None = None,
        host: str | None = None,
    ) -> ClientBatch:
        """``n`` client containers whose network exists but which send nothing until
        ``.start()``: faults applied in between hold from the client's first packet."""
        run = self._launch(n, workload, command=command, host=host, gated=True)
        return ClientBatch(self, run.containers, run.workload)

    def _launch(
        self,
        n: int | None,
        workload: Workload | None,
        *,
        command: Sequence[str] | None,
        host: str | None,
        gated: bool,
    ) -> ClientRun:
        n = self.spec.clients if n is None else n
        workload = workload or self.spec.workload
        check_capacity(self.spec.server, n, workload)
        began = time.monotonic()
        with self._count_lock:
            first = self._client_count
            self._client_count += n
        entrypoint = self._gate(self.spec.client_image) if gated else None

        def launch(index: int) -> Container:
            client_id = f"c{index}"
            container = self._create_client(
                client_id,
                list(command or workload.command(client_id)),
                entrypoint=entrypoint,
                host=host,
                workload=workload,
            )
            containers.start(container)
            return container

        with ThreadPoolExecutor(
            self.spec.start_parallelism, thread_name_prefix="lab-start"
        ) as pool:
            made = list(pool.map(launch, range(first, first + n)))
        return ClientRun(self, made, workload, time.monotonic() - began)

    def _gate(self, image: str) -> list[str]:
        original = self.docker.images.get(image).attrs["Config"].get("Entrypoint") or []
        return ["python3", "-c", GATE_SCRIPT, *original]

    def run_clients(
        self, n: int | None = None, workload: Workload | None = None, *, host: str | None = None
    ) -> RunResult:
        return self.start_clients(n, workload, host=host).wait()

    def run_command(
        self,
        command: Sequence[str],
        *,
        entrypoint: Sequence[str] | None = None,
        timeout: float = 60.0,
        host: str | None = None,
    ) -> ClientResult:
        """Run one container of the client image with any command (e.g. the seed client)."""
        client_id = f"x{self._client_count}"
        with self._count_lock:
            self._client_count += 1
        container = self._create_client(client_id, list(command), entrypoint=entrypoint, host=host)
        containers.start(container)
        run = ClientRun(self, [container], Workload(count=1, timeout=timeout), 0.0)
        return run.wait(timeout).clients[0]

    def _create_client(
        self,
        client_id: str,
        command: list[str],
        entrypoint: Sequence[str] | None = None,
        host: str | None = None,
        workload: Workload | None = None,
    ) -> Container:
        return self.docker.containers.create(
            self.spec.client_image,
            command=command,
            entrypoint=list(entrypoint) if entrypoint else None,
            name=f"{self.id}-{client_id}",
            environment={
                "ECHO_HOST": host or SERVER_ALIAS,
                "ECHO_PORT": "8899",
                "ECHO_CLIENT_ID": client_id,
            },
            labels={**self._labels("client"), labels.CLIENT: client_id},
            network=self.id,
            mem_limit="128m",
            pids_limit=64,
            **containers.client_limits(
                workload.connections if workload else 1,
                workload.output_bytes() if workload else None,
            ),
            **HARDENING,
        )

    # -- reports --------------------------------------------------------------------------------

    def logs(self, tail: int = 200) -> dict[str, str]:
        """The logs of every container of this lab, for failure reports (collected ones too)."""
        found = dict(self.collected_logs)
        try:
            listed = self.docker.containers.list(
                all=True, filters=labels.project_filter(**{labels.LAB: self.id})
            )
        except docker.errors.DockerException as error:
            return {**found, "(docker)": f"cannot list containers: {error}"}
        for container in listed:
            try:
                found[name_of(container)] = container.logs(tail=tail).decode("utf-8", "replace")
            except docker.errors.DockerException as error:
                found[name_of(container)] = f"(no logs: {error})"
        return found

    def _labels(self, role: str) -> dict[str, str]:
        if self._session is None:  # (start() acquires it: only a lab used unstarted comes here)
            self._session = session.acquire(self.docker, self.spec.client_image)
        return labels.lab_labels(self.id, role, self._session)

    def _ensure_images(self) -> None:
        """The lab's own images are built when missing or stale; other tags must exist."""
        spec = self.spec
        for name, tag in (("server", spec.server_image), ("client", spec.client_image)):
            if tag == images.definitions()[name].tag:
                images.tag_for(self.docker, name)
            elif not images.image_present(self.docker, tag):
                raise LabError(f"image {tag} not found: build it, or leave the spec's default")
