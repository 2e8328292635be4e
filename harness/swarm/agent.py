"""Faults on a Swarm lab, applied by the fault agent on the node that runs the target task.

The harness keeps every decision (validation, backend, slot, plan, stacking), as on one
machine: ``impair.Applied`` is the same object, its ``update`` and ``remove`` the same code.
What differs is who carries the Docker operations out: each sidecar here is an
``AgentSidecar``, whose requests go to the agent's task on the target's node (exec'd
``python3 -m echolab_fault_agent '<json>'``, answered with one JSON line), which starts the
engine's sidecar beside the task (``--network container:<task>``), runs the plan in it and
forwards control requests to it.

The agent is reached through the engine of its node: ``SwarmLab.node_engine`` (the harness's own
engine for the node it runs on; another node's, e.g. a simulated node's socket, when given).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from docker.models.containers import Container

from harness import labels
from harness.containers import output_of
from harness.errors import FaultError
from harness.faults import impair as impairs
from harness.faults.backend import Argv, Backend, Plan
from harness.faults.block import BlockDirection, block_plan
from harness.faults.impair import Applied, Held
from harness.faults.model import Impairment
from harness.faults.sidecar import ROLE, engine_scheduling
from harness.faults.target import Target

AGENT_COMMAND = ["python3", "-m", "echolab_fault_agent"]


@dataclass(frozen=True)
class TaskTarget:
    """A task's container, where a fault goes: its name and id, and the node that runs it."""

    name: str
    id: str
    node: str


@dataclass
class Agent:
    """The agent's task container on one node (``container`` from that node's engine)."""

    container: Container
    node: str

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """One request; its reply, or FaultError with the agent's reason."""
        code, output = self.container.exec_run([*AGENT_COMMAND, json.dumps(message)])
        text = output_of(output).decode("utf-8", "replace").strip()
        try:
            reply = dict(json.loads(text.splitlines()[-1]))
        except (ValueError, IndexError):
            raise FaultError(
                f"the fault agent on node {self.node} gave no answer to {message.get('op')} "
                f"({code}): {text[-1500:]}"
            ) from None
        if code != 0 or not reply.get("ok"):
            raise FaultError(
                f"the fault agent on node {self.node} refused {message.get('op')}: "
                f"{reply.get('error')}"
            )
        return reply


class AgentLab(Protocol):
    """What agent-driven faults need of a Swarm lab (``SwarmLab`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def session(self) -> str:
        """The session that owns what the lab makes (its sidecars too)."""
        ...

    @property
    def engine_image(self) -> str:
        """The fault engine's image as every node pulls it (the lab registry's reference)."""
        ...

    def report_backend(self, impairment: Impairment, backend: str | None) -> Backend: ...

    def resolve_tasks(self, target: str) -> list[TaskTarget]: ...

    def agent_on(self, node: str) -> Agent: ...


@dataclass
class AgentSidecar:
    """A fault sidecar that a node's agent runs (``faults.sidecar.SidecarLike``)."""

    agent: Agent
    target: TaskTarget
    lab_id: str
    plan: Plan
    image: str
    session: str
    slot: int = 0
    description: dict[str, Any] = field(default_factory=dict)
    kind: str = "impair"
    container: str | None = None  # the sidecar's id on the target's node, once applied
    name: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def target_name(self) -> str:
        return self.target.name

    def labels(self) -> dict[str, str]:
        return {
            **labels.lab_labels(self.lab_id, ROLE, self.session),
            labels.FAULT_TARGET: self.target.name,
            labels.FAULT_SLOT: str(self.slot),
            labels.FAULT_KIND: self.kind,
            labels.FAULT_BACKEND: self.plan.backend,
            labels.FAULT_REMOVE: json.dumps(self.plan.remove),
        }

    def apply(self) -> None:
        """The agent starts the sidecar, runs the plan and notes it; on failure it undoes it."""
        reply = self.agent.request(
            {
                "op": "apply",
                "target": self.target.id,
                "image": self.image,
                "name": f"{self.target.name}-fault{self.slot}-{self.kind}-{secrets.token_hex(3)}",
                "command": self.plan.command,
                "labels": self.labels(),
                "apply": self.plan.apply,
                "remove": self.plan.remove,
                "note": self.description,
                **engine_scheduling(),
            }
        )
        self.container, self.name = str(reply["sidecar"]), str(reply["name"])

    def engage(self) -> None:
        """The agent starts and applies a sidecar in one request (no fault is staged on a
        swarm): engaging applies it if it is not in force yet."""
        if self.container is None:
            self.apply()

    def _sidecar(self) -> str:
        if self.container is None:
            raise FaultError(f"the fault on {self.target.name} is removed")
        return self.container

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = self.agent.request(
            {"op": "control", "sidecar": self._sidecar(), "request": request}
        )
        return dict(reply["reply"])

    def note(self, description: dict[str, Any]) -> None:
        self.control({"op": "note", "note": description})
        self.description = description

    def run(self, commands: list[Argv]) -> None:
        if commands:
            self.agent.request({"op": "exec", "sidecar": self._sidecar(), "commands": commands})

    def remove(self) -> None:
        container, self.container = self.container, None
        if container is not None:
            self.stats = dict(self.agent.request({"op": "remove", "sidecar": container})["stats"])


def held_on(agent: Agent, target: TaskTarget) -> list[Held]:
    """The faults in force on ``target``, as its node's agent lists them (their notes)."""
    listed = agent.request({"op": "list", "labels": {labels.FAULT_TARGET: target.name}})
    found = []
    for entry in listed["sidecars"]:
        if entry.get("state") != "running":
            continue
        own = entry.get("labels") or {}
        impairing = own.get(labels.FAULT_KIND) == "impair"
        note = entry.get("note") or {}
        found.append(
            Held(
                sidecar=str(entry.get("name")),
                slot=int(own.get(labels.FAULT_SLOT, "0")),
                backend=str(note.get("backend", "")),
                impairment=impairs.impairment_of(note) if impairing else None,
            )
        )
    return found


def resolve(lab: AgentLab, target: Target) -> list[TaskTarget]:
    names = [target] if isinstance(target, str) else list(target)
    found: dict[str, TaskTarget] = {}
    for name in names:
        for task in lab.resolve_tasks(name):
            found.setdefault(task.id, task)
    return list(found.values())


def apply(
    lab: AgentLab,
    target: Target,
    impairment: Impairment,
    *,
    backend: str | None = None,
    dev: str = "eth0",
) -> Applied:
    """Apply ``impairment`` to every task ``target`` names, each through its node's agent."""
    tasks = resolve(lab, target)
    chosen = lab.report_backend(impairment, backend)
    agents = {task.id: lab.agent_on(task.node) for task in tasks}

    def sidecar_of(task: TaskTarget, plan: Plan, slot: int, note: dict[str, Any]) -> AgentSidecar:
        return AgentSidecar(
            agents[task.id], task, lab.id, plan, lab.engine_image, lab.session, slot=slot,
            description={**note, "node": task.node},
        )  # fmt: skip

    return impairs.put_on(
        chosen, impairment, tasks, dev,
        name=lambda task: task.name, held=lambda task: held_on(agents[task.id], task),
        sidecar=sidecar_of, start=lambda one: one.apply(),
    )  # fmt: skip


@contextmanager
def impair(
    lab: AgentLab,
    target: Target,
    impairment: Impairment,
    *,
    backend: str | None = None,
    dev: str = "eth0",
) -> Iterator[Applied]:
    """Impair ``target``'s traffic inside the ``with``, through the agents."""
    with impairs.holding(apply(lab, target, impairment, backend=backend, dev=dev)) as applied:
        yield applied


@contextmanager
def block(
    lab: AgentLab, target: Target, direction: BlockDirection = "ingress", *, dev: str = "eth0"
) -> Iterator[list[str]]:
    """Drop ``target``'s packets one way inside the ``with`` (``harness.faults.block``'s rule),
    each task's through its node's agent; yields the tasks' container names."""
    plan = block_plan(direction, dev, tag=secrets.token_hex(4))
    tasks = resolve(lab, target)
    sidecars: list[AgentSidecar] = []
    try:
        for task in tasks:
            one = AgentSidecar(
                lab.agent_on(task.node), task, lab.id, plan, lab.engine_image, lab.session,
                kind="block",
                description={"kind": "block", "direction": direction, "target": task.name,
                             "node": task.node},
            )  # fmt: skip
            sidecars.append(one)
            one.apply()
        yield [task.name for task in tasks]
    finally:
        for one in reversed(sidecars):
            one.remove()


class Partitions:
    """Partitions on a Swarm lab: a task cut off is blocked both ways by its node's agent (a
    swarm task cannot be disconnected from its service's network), until ``heal``. Packets are
    dropped, as a link cut between machines drops them, rather than refused at once."""

    def __init__(self, lab: AgentLab) -> None:
        self._lab = lab
        self._held: list[tuple[list[str], ExitStack]] = []

    def cut(self, target: Target) -> list[str]:
        """Cut ``target`` off; its tasks' container names."""
        with ExitStack() as stack:
            names = stack.enter_context(block(self._lab, target, "ingress"))
            stack.enter_context(block(self._lab, target, "egress"))
            self._held.append((names, stack.pop_all()))
        return names

    def heal(self) -> list[str]:
        """Remove every cut; the names healed."""
        healed: list[str] = []
        while self._held:
            names, stack = self._held.pop()
            stack.close()
            healed += names
        return healed
