"""A lab made real with the Docker SDK: a labelled network, a server, N client containers.

Everything the lab creates carries its id (``org.echolab.lab``) and is removed by that label in
``close()``, which runs from ``__exit__`` also after a failure or Ctrl-C, and from ``start()``
when start-up itself fails. Several labs run at once without clashing: names, network and DNS
alias are all scoped by the lab id, and no port is published.

Clients can be made before they run (``create_clients``, see ``harness.clients``), so that
faults hold from their first packet.
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
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container
from docker.models.networks import Network

from harness import labels, sweep
from harness.clients import GATE_SCRIPT, ClientBatch, ClientRun
from harness.errors import LabError
from harness.results import ClientResult, RunResult, read_client_output
from harness.spec import LabSpec, Workload
from harness.waiting import NotReady, WaitTimeout, wait_for

if TYPE_CHECKING:
    from harness.faults import Applied
    from harness.faults.proxy.api import Proxy

log = logging.getLogger(__name__)

SERVER_ALIAS = "server"
HEALTH_PROBE = ["python3", "-m", "echo_server.healthcheck"]
# Hardening that costs nothing: what compose.yaml applies to the same images.
_HARDENING: dict[str, object] = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "tmpfs": {"/tmp": "size=16m"},
}


class Lab:
    """One server and its clients on a private, internal network (see ``LabSpec``)."""

    def __init__(self, spec: LabSpec | None = None, client: DockerClient | None = None) -> None:
        self.spec = spec or LabSpec()
        self.id = f"{self.spec.name}-{uuid.uuid4().hex[:8]}"
        self._client = client
        self._network: Network | None = None
        self._server: Container | None = None
        self._client_count = 0
        self._count_lock = threading.Lock()
        self._collected_logs: dict[str, str] = {}

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

    def start(self) -> None:
        try:
            sweep.sweep(self.docker, everything=False)
            self._require_images()
            self._network = self.docker.networks.create(
                self.id, driver="bridge", internal=True, labels=self._labels("network")
            )
            self._server = self._create_server()
            self._server.start()
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
        return self.docker.containers.create(
            self.spec.server_image,
            name=f"{self.id}-server",
            hostname=SERVER_ALIAS,
            environment=self.spec.server.environment(),
            labels=self._labels("server"),
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
            **_HARDENING,
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
                raise NotReady(f"probe: {output.decode(errors='replace').strip()}")

        try:
            wait_for(
                f"server of lab {self.id} to be healthy (a real echo exchange)",
                healthy,
                timeout=timeout or self.spec.health_timeout,
            )
        except WaitTimeout as error:
            raise LabError(str(error), self.logs()) from error

    def impair(self, target: str | Sequence[str], **params: Any) -> AbstractContextManager[Applied]:
        """Network faults on ``target`` (``"server"``, a client id, several in a list, or
        ``"clients"``) for the duration of a ``with``: see ``harness.faults``."""
        from harness.faults import impair  # the fault machinery loads only when used

        return impair(self, target, **params)

    def proxy(self, toxics: Sequence[object] = (), **options: Any) -> AbstractContextManager[Proxy]:
        """A TCP proxy to the server with Toxiproxy's toxics; start clients with its ``host``."""
        from harness.faults.proxy.api import toxic_proxy

        return toxic_proxy(self, toxics, **options)  # type: ignore[arg-type]

    def partition(self, target: str | Sequence[str]) -> list[str]:
        """Disconnect ``target`` from the lab network (until ``heal``)."""
        from harness.faults.partition import partition

        return partition(self, target)

    def heal(self) -> list[str]:
        """Reconnect everything ``partition`` cut off, with its DNS aliases."""
        from harness.faults.partition import heal

        return heal(self)

    def block(
        self, target: str | Sequence[str], direction: str = "ingress"
    ) -> AbstractContextManager[list[str]]:
        """Drop ``target``'s packets one way (``ingress`` or ``egress``) inside a ``with``."""
        from harness.faults.partition import block

        return block(self, target, direction)  # type: ignore[arg-type]

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
            )
            container.start()
            return container

        with ThreadPoolExecutor(
            self.spec.start_parallelism, thread_name_prefix="lab-start"
        ) as pool:
            containers = list(pool.map(launch, range(first, first + n)))
        return ClientRun(self, containers, workload, time.monotonic() - began)

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
        container.start()
        run = ClientRun(self, [container], Workload(count=1, timeout=timeout), 0.0)
        return run.wait(timeout).clients[0]

    def _create_client(
        self,
        client_id: str,
        command: list[str],
        entrypoint: Sequence[str] | None = None,
        host: str | None = None,
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
            labels={**self._labels("client"), "org.echolab.client": client_id},
            network=self.id,
            mem_limit="128m",
            pids_limit=64,
            **_HARDENING,
        )

    def running_clients(self, names: set[str]) -> list[str]:
        """Which of ``names`` still run. The low-level listing: the high-level one inspects
        each container, and another batch of this lab being removed meanwhile would 404."""
        listed = self.docker.api.containers(
            all=True, filters=labels.project_filter(**{labels.LAB: self.id, labels.ROLE: "client"})
        )
        found = {name.lstrip("/"): c["State"] for c in listed for name in c["Names"]}
        return [
            name
            for name, state in found.items()
            if name in names and state not in ("exited", "dead")
        ]

    def collect(self, containers: list[Container]) -> list[ClientResult]:
        """Read each finished client's output into records, then remove the container."""

        def one(container: Container) -> ClientResult:
            container.reload()
            exit_code = int(container.attrs["State"]["ExitCode"])
            stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
            client_id = container.labels.get("org.echolab.client", container.name)
            self._collected_logs[container.name] = stderr
            container.remove(force=True)
            return read_client_output(client_id, container.name, exit_code, stdout, stderr)

        with ThreadPoolExecutor(
            self.spec.start_parallelism, thread_name_prefix="lab-collect"
        ) as pool:
            return list(pool.map(one, containers))

    # -- reports --------------------------------------------------------------------------------

    def logs(self, tail: int = 200) -> dict[str, str]:
        """The logs of every container of this lab, for failure reports (collected ones too)."""
        found = dict(self._collected_logs)
        try:
            listed = self.docker.containers.list(
                all=True, filters=labels.project_filter(**{labels.LAB: self.id})
            )
        except docker.errors.DockerException as error:
            return {**found, "(docker)": f"cannot list containers: {error}"}
        for container in listed:
            try:
                found[container.name] = container.logs(tail=tail).decode("utf-8", "replace")
            except docker.errors.DockerException as error:
                found[container.name] = f"(no logs: {error})"
        return found

    def _labels(self, role: str) -> dict[str, str]:
        return labels.lab_labels(self.id, role)

    def _require_images(self) -> None:
        missing = []
        for image in (self.spec.server_image, self.spec.client_image):
            try:
                self.docker.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
        if missing:
            raise LabError(
                f"image(s) {', '.join(missing)} not found: build them with `make images`"
            )
