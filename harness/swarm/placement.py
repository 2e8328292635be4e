"""Where a Swarm lab's tasks run and how the harness reaches them.

A task's container lives on the node that runs it; the manager's engine lists the task, but
only that node's engine can exec in the container, read its log or kill it. ``Nodes`` holds the
engines the harness knows (given by id, e.g. simulated nodes' sockets; else the harness's own
engine for the node it is on) and answers, per task, its node's name, engine and container.
"""

from __future__ import annotations

from typing import Any

import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.errors import LabError
from harness.swarm import api, cluster
from harness.waiting import NotReady


def container_id(task: dict[str, Any]) -> str:
    """The id of ``task``'s container; NotReady while it has none (pure)."""
    status = task["Status"].get("ContainerStatus") or {}
    ident = status.get("ContainerID")
    if not ident:
        raise NotReady(f"task {task['ID'][:12]} has no container yet")
    return str(ident)


class Nodes:
    """The swarm's nodes as the harness reaches them (see module doc)."""

    def __init__(self, manager: DockerClient, engines: dict[str, DockerClient]) -> None:
        self._manager = manager
        self._engines = dict(engines)
        self._names: dict[str, str] = {}

    def name(self, node: str) -> str:
        """The node's hostname (what results report), ``node`` itself for an unplaced task."""
        if node and node not in self._names:
            described = self._manager.api.inspect_node(node)
            self._names[node] = str(described["Description"]["Hostname"])
        return self._names.get(node, node)

    def engine(self, node: str) -> DockerClient:
        """The engine of ``node``: given at construction, or the harness's own for its node."""
        if node in self._engines:
            return self._engines[node]
        if node == cluster.local_node_id(self._manager):
            return self._manager
        raise LabError(
            f"no Docker engine known for node {self.name(node)}: the harness reaches a "
            "node's tasks through that node's engine (SwarmLab(node_engines={...}))"
        )

    def container(self, task: dict[str, Any]) -> Container:
        """``task``'s container, from its node's engine."""
        return self.engine(str(task["NodeID"])).containers.get(container_id(task))

    def task_logs(self, task: dict[str, Any], tail: int | None = None) -> tuple[str, str]:
        """A task's stdout and stderr, from its container on its node."""
        container = self.container(task)
        limit: dict[str, Any] = {} if tail is None else {"tail": tail}
        out = container.logs(stdout=True, stderr=False, **limit)
        err = container.logs(stdout=False, stderr=True, **limit)
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def service_logs(self, lab_id: str, tail: int) -> dict[str, str]:
        """The last lines of each task of a lab's services (by label), for reports: a task
        never placed gives its reason, one whose log cannot be read says why."""
        found = {}
        for service in api.services(self._manager, {"label": f"{labels.LAB}={lab_id}"}):
            for task in api.tasks(self._manager, {"service": service["ID"]}):
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
