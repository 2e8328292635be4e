"""Waiting for a Swarm lab to be whole: its server tasks healthy, its agents on every node, a
restarted server's tasks replaced. Each wait has its timeout and says what it waited for; on a
timeout the error carries the lab's task logs."""

from __future__ import annotations

from typing import Any, Protocol

import docker.errors
from docker.client import DockerClient

from harness.errors import FaultError, LabError
from harness.spec import LabSpec
from harness.swarm import api, cluster
from harness.swarm.agent import Agent
from harness.waiting import NotReady, WaitTimeout, wait_for


class Deployed(Protocol):
    """What the waits need of a Swarm lab (``SwarmLab`` is one)."""

    spec: LabSpec
    replicas: int

    @property
    def id(self) -> str: ...

    @property
    def docker(self) -> DockerClient: ...

    def service_name(self, role: str) -> str: ...

    def tasks(self, role: str, *, running: bool = True) -> list[dict[str, Any]]: ...

    def agent_on(self, node: str) -> Agent: ...

    def logs(self, tail: int = 200) -> dict[str, str]: ...


def _waiting(lab: Deployed, what: str, check: Any, timeout: float, **options: Any) -> None:
    try:
        wait_for(what, check, timeout=timeout, **options)
    except WaitTimeout as error:
        raise LabError(str(error), lab.logs()) from error


def server_healthy(lab: Deployed, timeout: float | None = None) -> None:
    """Until ``replicas`` server tasks run (Swarm says running once the image's health probe,
    a real echo exchange, passed)."""

    def healthy() -> None:
        found = lab.tasks("server")
        if len(found) < lab.replicas:
            every = [t["Status"] for t in lab.tasks("server", running=False)]
            states = sorted(f"{s['State']} {s.get('Err') or ''}".strip() for s in every)
            raise NotReady(f"{len(found)}/{lab.replicas} running ({', '.join(states)})")

    what = f"the server service of lab {lab.id} to be healthy"
    _waiting(lab, what, healthy, timeout or lab.spec.health_timeout)


def agents_ready(lab: Deployed, timeout: float = 60.0) -> None:
    """Until an agent task runs on every ready node and the local one answers."""

    def ready() -> None:
        nodes = {n["ID"] for n in lab.docker.api.nodes() if n["Status"]["State"] == "ready"}
        covered = {t["NodeID"] for t in lab.tasks("agent")}
        if not nodes <= covered:
            raise NotReady(f"agents run on {len(covered)} of {len(nodes)} nodes")
        lab.agent_on(cluster.local_node_id(lab.docker)).request({"op": "ping"})

    what = f"the fault agents of lab {lab.id}"
    _waiting(lab, what, ready, timeout, transient=(docker.errors.APIError, FaultError))


def restart_server(lab: Deployed, timeout: float | None = None) -> list[str]:
    """Stop every server task (SIGTERM: it drains) and replace it (a forced update); return
    once the new tasks run, healthy: their ids."""
    old = {t["ID"] for t in lab.tasks("server")}
    api.force_update(lab.docker, lab.service_name("server"))
    new: list[str] = []

    def replaced() -> None:
        running = lab.tasks("server")
        new[:] = [t["ID"] for t in running if t["ID"] not in old]
        if len(running) < lab.replicas or len(new) < len(running):
            raise NotReady(f"{len(new)}/{lab.replicas} new server tasks run")

    what = f"the server tasks of lab {lab.id} to be replaced, healthy"
    _waiting(lab, what, replaced, timeout or lab.spec.health_timeout + 30.0)
    return new
