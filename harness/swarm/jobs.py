"""A batch of Swarm client tasks (one ``replicated-job`` service) and its results read back.

A batch made by ``SwarmLab.create_clients`` is gated, as on one machine: each task starts
behind the same few lines (``clients.GATE_SCRIPT``) that wait for a file in its ``/tmp``, so
its network namespace exists, on whichever node placed it, and faults can be applied there
before its first packet; ``SwarmBatch.start()`` opens the gates (an exec in each task's
container, through its node's engine).

Each task's records are read from its container's log, through the engine of the node that ran
it, then by the same code as on one machine (``results.read_client_output``) and checked by
the same checks (``RunResult``); each result says which node ran it. The job's service is
removed once read. Not ``docker service logs``: on Engine 20.10 a request for a finished job's
log of 50 tasks never ended (no ``follow``; the response stayed open, measured here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from docker.client import DockerClient
from docker.models.containers import Container

from harness.clients import GATE_SCRIPT, open_gates
from harness.errors import LabError
from harness.results import ClientResult, RunResult, read_client_output
from harness.spec import Workload
from harness.swarm import api
from harness.waiting import NotReady, WaitTimeout, wait_for

DONE = ("complete", "failed", "rejected", "shutdown", "orphaned", "remove")
RELEASE_PARALLELISM = 16


def gated(entrypoint: list[str]) -> list[str]:
    """The command of a gated task whose image's entrypoint is ``entrypoint`` (pure)."""
    return ["python3", "-c", GATE_SCRIPT, *entrypoint]


def client_id(task: dict[str, Any]) -> str:
    """The id a task's client took: ``c<slot>`` (Swarm omits a zero slot from the JSON)."""
    return f"c{int(task.get('Slot') or 0)}"


def reruns(tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Per client id, how many times Swarm ran it when more than once (pure)."""
    counts: dict[str, int] = {}
    for task in tasks:
        counts[client_id(task)] = counts.get(client_id(task), 0) + 1
    return {ident: count for ident, count in counts.items() if count > 1}


def exit_code(task: dict[str, Any]) -> int:
    status = task.get("Status") or {}
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if code is None:  # never ran (rejected: no image, no node): as a crash, never ok
        return -1
    return int(code)


class SwarmClientRun:
    """Client tasks started as one job (``SwarmLab.start_clients``); ``wait()`` collects."""

    def __init__(
        self,
        client: DockerClient,
        lab_id: str,
        service: str,
        n: int,
        workload: Workload,
        start_s: float,
        node_name: Callable[[str], str],
        task_logs: Callable[[dict[str, Any]], tuple[str, str]],
        logs: Callable[[], dict[str, str]],
    ) -> None:
        self._client = client
        self.lab_id = lab_id
        self.service = service
        self.n = n
        self.workload = workload
        self.start_s = start_s
        self._node_name = node_name
        self._task_logs = task_logs
        self._logs = logs
        self._started = time.monotonic() - start_s

    def tasks(self) -> list[dict[str, Any]]:
        return api.tasks(self._client, {"service": self.service})

    def lab_logs(self) -> dict[str, str]:
        """The lab's task logs, for reports."""
        return self._logs()

    def released(self, start_s: float) -> None:
        """The gates opened (``SwarmBatch.start``), taking ``start_s``: the run starts now."""
        self.start_s = start_s
        self._started = time.monotonic() - start_s

    def wait_placed(self, timeout: float) -> list[dict[str, Any]]:
        """Wait until every task of a gated batch runs (its container waits at the gate); a
        task that ended before the gate opened fails the batch with its reason."""

        def placed() -> list[dict[str, Any]]:
            tasks = self.tasks()
            ended = [t for t in tasks if t["Status"]["State"] in DONE]
            if ended:
                reasons = sorted({str(t["Status"].get("Err") or t["Status"]["State"])
                                  for t in ended})  # fmt: skip
                raise LabError(
                    f"{len(ended)} gated client task(s) of lab {self.lab_id} ended before their "
                    f"gate opened: {'; '.join(reasons)}",
                    self._logs(),
                )
            running = [t for t in tasks if t["Status"]["State"] == "running"]
            if len(running) < self.n:
                raise NotReady(f"{len(running)}/{self.n} client tasks run, gated")
            return sorted(running, key=lambda t: int(t.get("Slot") or 0))

        try:
            return wait_for(
                f"{self.n} gated client tasks of lab {self.lab_id} to run", placed, timeout=timeout
            )
        except WaitTimeout as error:
            raise LabError(str(error), self._logs()) from error

    def wait(self, timeout: float | None = None) -> RunResult:
        """Wait until every task has ended, read its records, remove the job."""
        # The job returns before its tasks start: their start-up (about 0.5 s each on 2 cores,
        # one after another at worst) is in the wait, unlike Lab's.
        deadline = timeout if timeout is not None else self.workload.timeout + 60.0 + 0.5 * self.n

        def all_done() -> list[dict[str, Any]]:
            tasks = self.tasks()
            ended = [t for t in tasks if t["Status"]["State"] in DONE]
            if len(tasks) < self.n or len(ended) < len(tasks):
                raise NotReady(f"{len(ended)}/{self.n} client tasks ended")
            return tasks

        try:
            tasks = wait_for(
                f"{self.n} client tasks of lab {self.lab_id} to end",
                all_done,
                timeout=deadline,
                most=0.5,
            )
        except WaitTimeout as error:
            raise LabError(str(error), self._logs()) from error
        rerun = reruns(tasks)
        if rerun:
            self.remove()
            raise LabError(
                f"Swarm ran client tasks again in lab {self.lab_id} ({rerun}): a replicated job "
                "replaces a failed task until it has its count of completions, whatever its "
                "restart policy, so the earlier runs' messages reached the server too; the run "
                f"is not one of {self.n} clients",
                {
                    f"task {t['ID'][:12]}": str(t["Status"].get("Err") or t["Status"]["State"])
                    for t in tasks
                    if t["Status"]["State"] != "complete"
                },
            )
        results = self.collect(tasks)
        self.remove()
        return RunResult(
            lab=self.lab_id,
            workload=self.workload,
            clients=results,
            start_s=self.start_s,
            elapsed_s=time.monotonic() - self._started,
            extra={"engine": "swarm", "service": self.service},
        )

    def collect(self, tasks: list[dict[str, Any]]) -> list[ClientResult]:
        """Every task's records (``SwarmLab.task_logs`` reads its container's log)."""

        def one(task: dict[str, Any]) -> ClientResult:
            ident = str(task["ID"])
            has_container = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
            out, err = self._task_logs(task) if has_container else ("", "")
            if task["Status"]["State"] != "complete" and not err:
                err = str(task["Status"].get("Err") or task["Status"].get("Message") or "")
            return read_client_output(
                client_id(task),
                f"{self.service}.{ident[:12]}",
                exit_code(task),
                out,
                err,
                node=self._node_name(str(task.get("NodeID") or "")),
            )

        ordered = sorted(tasks, key=lambda t: int(t.get("Slot") or 0))
        with ThreadPoolExecutor(8, thread_name_prefix="swarm-collect") as pool:
            return list(pool.map(one, ordered))

    def remove(self) -> None:
        api.remove_service(self._client, self.service)


@dataclass
class SwarmBatch:
    """Client tasks placed and waiting at their gate (``SwarmLab.create_clients``): impair
    them (``"clients"`` or their ids), then ``start()`` opens every gate at once."""

    job: SwarmClientRun
    containers: list[Container] = field(default_factory=list)
    started: SwarmClientRun | None = None

    def start(self) -> SwarmClientRun:
        if self.started is not None:
            return self.started
        began = time.monotonic()
        open_gates(self.containers, RELEASE_PARALLELISM, self.job.lab_logs)
        self.job.released(time.monotonic() - began)
        self.started = self.job
        return self.started

    def run(self) -> RunResult:
        return self.start().wait()
