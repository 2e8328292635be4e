"""Client containers in flight: made but gated (``ClientBatch``), or running (``ClientRun``).

A gated client container starts behind a few lines of Python that wait for a file in its
``/tmp`` and then ``exec`` the client: its network namespace exists, so faults can be applied
before the client sends its first packet (its DNS lookup included); ``.start()`` opens the gates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.containers import name_of, output_of
from harness.errors import LabError
from harness.results import ClientResult, RunResult, read_client_output
from harness.spec import Workload
from harness.waiting import NotReady, WaitTimeout, wait_for

GATE_FILE = "/tmp/echolab-go"
# argv: [-c, entrypoint..., command...]. A client run as ``python3 -m MODULE``, as the lab's is,
# has its module imported while the gate is shut, so that opening it starts the sending at
# once, not after the interpreter's imports (a second or more on a loaded host: a fault
# scheduled from the release would otherwise act before the first message). Polls every 5 ms.
GATE_SCRIPT = (
    "import importlib, os, runpy, sys, time\n"
    "argv = sys.argv[1:]\n"
    "python_m = len(argv) > 2 and argv[0].startswith('python') and argv[1] == '-m'\n"
    "module = argv[2] if python_m else None\n"
    "if module:\n"
    "    importlib.import_module(module + '.__main__')\n"
    f"while not os.path.exists({GATE_FILE!r}):\n"
    "    time.sleep(0.005)\n"
    "if module is None:\n"
    "    os.execvp(argv[0], argv)\n"
    "sys.argv = [module, *argv[3:]]\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)


def open_gates(
    containers: Sequence[Container], parallelism: int, logs: Callable[[], dict[str, str]]
) -> None:
    """Open the gate of each container (its file touched, by exec), ``parallelism`` at once;
    LabError, with ``logs()``, naming a client whose gate would not open."""

    def release(container: Container) -> None:
        code, output = container.exec_run(["touch", GATE_FILE])
        if code != 0:
            text = output_of(output).decode(errors="replace")
            raise LabError(f"cannot start client {container.name}: {text}", logs())

    workers = max(1, min(parallelism, len(containers)))
    with ThreadPoolExecutor(workers, thread_name_prefix="release") as pool:
        list(pool.map(release, containers))


class ClientHost(Protocol):
    """What client batches need of their lab (``Lab`` is one)."""

    collected_logs: dict[str, str]  # the stderr of clients collected (and removed) so far

    @property
    def id(self) -> str: ...

    @property
    def docker(self) -> DockerClient: ...

    @property
    def parallelism(self) -> int:
        """How many containers to start, release or collect at once."""
        ...

    def logs(self, tail: int = 200) -> dict[str, str]: ...


def running(client: DockerClient, lab_id: str, names: set[str]) -> list[str]:
    """Which of ``names`` still run. The low-level listing: the high-level one inspects each
    container, and another batch of this lab being removed meanwhile would 404."""
    listed = client.api.containers(
        all=True, filters=labels.project_filter(**{labels.LAB: lab_id, labels.ROLE: "client"})
    )
    found = {name.lstrip("/"): c["State"] for c in listed for name in c["Names"]}
    return [
        name for name, state in found.items() if name in names and state not in ("exited", "dead")
    ]


def collect(lab: ClientHost, containers: list[Container]) -> list[ClientResult]:
    """Read each finished client's output into records, then remove the container."""

    def one(container: Container) -> ClientResult:
        container.reload()
        exit_code = int(container.attrs["State"]["ExitCode"])
        stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        name = name_of(container)
        lab.collected_logs[name] = stderr
        container.remove(force=True)
        return read_client_output(
            container.labels.get(labels.CLIENT, name), name, exit_code, stdout, stderr
        )

    with ThreadPoolExecutor(lab.parallelism, thread_name_prefix="lab-collect") as pool:
        return list(pool.map(one, containers))


class ClientRun:
    """Client containers that were started and are not collected yet (see ``Lab.start_clients``)."""

    def __init__(
        self, lab: ClientHost, containers: list[Container], workload: Workload, start_s: float
    ) -> None:
        self._lab = lab
        self.containers = containers
        self.workload = workload
        self.start_s = start_s
        self._started = time.monotonic() - start_s

    def wait(self, timeout: float | None = None) -> RunResult:
        """Wait until every client exited, collect its records, remove it."""
        deadline = timeout if timeout is not None else self.workload.timeout + 30.0
        names = {name_of(c) for c in self.containers}

        def all_exited() -> None:
            running_now = running(self._lab.docker, self._lab.id, names)
            if running_now:
                raise NotReady(f"{len(running_now)}/{len(names)} clients still running")

        try:
            wait_for(
                f"{len(names)} clients of lab {self._lab.id} to finish",
                all_exited,
                timeout=deadline,
                most=0.25,
            )
        except WaitTimeout as error:
            raise LabError(str(error), self._lab.logs()) from error
        results = collect(self._lab, self.containers)
        return RunResult(
            lab=self._lab.id,
            workload=self.workload,
            clients=results,
            start_s=self.start_s,
            elapsed_s=time.monotonic() - self._started,
        )


class ClientBatch:
    """Client containers made but not yet sending (see ``Lab.create_clients``): impair them,
    then ``.start()``."""

    def __init__(self, lab: ClientHost, containers: list[Container], workload: Workload) -> None:
        self._lab = lab
        self.containers = containers
        self.workload = workload
        self.started: ClientRun | None = None

    @property
    def ids(self) -> list[str]:
        return [c.labels.get(labels.CLIENT, name_of(c)) for c in self.containers]

    def start(self) -> ClientRun:
        """Open every gate (at once, from the lab's pool); collect them with ``.wait()``."""
        if self.started is not None:
            return self.started
        began = time.monotonic()
        open_gates(self.containers, self._lab.parallelism, self._lab.logs)
        self.started = ClientRun(self._lab, self.containers, self.workload, 0.0)
        self.started.start_s = time.monotonic() - began
        return self.started

    def run(self) -> RunResult:
        return self.start().wait()
