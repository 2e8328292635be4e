"""Client containers in flight: made but gated (``ClientBatch``), or running (``ClientRun``).

A gated client container starts behind a few lines of Python that wait for a file in its
``/tmp`` and then ``exec`` the client: its network namespace exists, so faults can be applied
before the client sends its first packet (its DNS lookup included); ``.start()`` opens the gates.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from docker.models.containers import Container

from harness.errors import LabError
from harness.results import RunResult
from harness.spec import Workload
from harness.waiting import NotReady, WaitTimeout, wait_for

if TYPE_CHECKING:
    from harness.lab import Lab

GATE_FILE = "/tmp/echolab-go"
# argv: [-c, entrypoint..., command...]; polls every 5 ms (cheap), then becomes the client.
GATE_SCRIPT = (
    "import os, sys, time\n"
    f"while not os.path.exists({GATE_FILE!r}):\n"
    "    time.sleep(0.005)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


class ClientRun:
    """Client containers that were started and are not collected yet (see ``Lab.start_clients``)."""

    def __init__(
        self, lab: Lab, containers: list[Container], workload: Workload, start_s: float
    ) -> None:
        self._lab = lab
        self.containers = containers
        self.workload = workload
        self.start_s = start_s
        self._started = time.monotonic() - start_s

    def wait(self, timeout: float | None = None) -> RunResult:
        """Wait until every client exited, collect its records, remove it."""
        deadline = timeout if timeout is not None else self.workload.timeout + 30.0
        names = {c.name for c in self.containers}

        def all_exited() -> None:
            running = self._lab.running_clients(names)
            if running:
                raise NotReady(f"{len(running)}/{len(names)} clients still running")

        try:
            wait_for(
                f"{len(names)} clients of lab {self._lab.id} to finish",
                all_exited,
                timeout=deadline,
                most=0.25,
            )
        except WaitTimeout as error:
            raise LabError(str(error), self._lab.logs()) from error
        results = self._lab.collect(self.containers)
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

    def __init__(self, lab: Lab, containers: list[Container], workload: Workload) -> None:
        self._lab = lab
        self.containers = containers
        self.workload = workload
        self.started: ClientRun | None = None

    @property
    def ids(self) -> list[str]:
        return [c.labels.get("org.echolab.client", c.name) for c in self.containers]

    def start(self) -> ClientRun:
        """Open every gate (at once, from the lab's pool); collect them with ``.wait()``."""
        if self.started is not None:
            return self.started
        began = time.monotonic()

        def release(container: Container) -> None:
            code, output = container.exec_run(["touch", GATE_FILE])
            if code != 0:
                raise LabError(
                    f"cannot start client {container.name}: {output.decode(errors='replace')}",
                    self._lab.logs(),
                )

        with ThreadPoolExecutor(
            self._lab.spec.start_parallelism, thread_name_prefix="lab-release"
        ) as pool:
            list(pool.map(release, self.containers))
        self.started = ClientRun(self._lab, self.containers, self.workload, 0.0)
        self.started.start_s = time.monotonic() - began
        return self.started

    def run(self) -> RunResult:
        return self.start().wait()
