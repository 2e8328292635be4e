"""The fault sidecar: the engine image, run in a target's network namespace, applying a plan.

It joins the target's namespace (``network_mode="container:<id>"``) with ``NET_ADMIN`` only; the
target keeps its own capabilities (none, in the lab). It runs the plan's engine (or idles), the
plan's commands are exec'd into it, and ``remove()`` undoes them, stops it (the engine releases
what it holds) and removes it. Every step of removal tolerates what is already gone, so it is
idempotent, and the sidecar carries the lab's labels, so ``Lab.close()`` sweeps it too.

Several sidecars may share one target (stacked faults, and blocks beside them): each has a
*kind* (``impair`` or ``block``) and a *slot* (its NFQUEUE number and iptables table, see
``engine``; always 0 for a block), and a unique name: they are found by their labels, never by
name. Labels say what a sidecar is and how to undo it (so ``heal`` in another process can
remove it and the sweep can undo what a crashed run left in a target that still runs); what it
applies, kept current by every update, is its engine's note (``describe``), read by everyone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels, session, sidecars, sweep
from harness.containers import name_of, output_of
from harness.errors import FaultError
from harness.faults.backend import Argv, Plan

log = logging.getLogger(__name__)
ROLE = "fault"
UNDO_ROLE = "fault-undo"  # the short-lived sidecar that undoes an orphan's leftovers
# The engine releases each packet on time only if it runs when its deadline comes: on a small
# host it competes for the CPU with the very containers it impairs. Its cgroup's CPU weight
# (cgroup v1 cpu.shares; Docker's default is 1024) lets it preempt them when it wakes; it runs
# only around deadlines, so the weight buys promptness, not CPU.
CPU_SHARES = 262144
# The engine also asks for SCHED_FIFO (``echolab_fault_engine.tuning.set_realtime``), which
# SYS_NICE allows. Where the kernel groups real-time time (cgroup v1 with RT_GROUP_SCHED), the
# container needs a budget besides: this many microseconds per second, which Docker grants only
# when the daemon has one to share (its own ``cpu-rt-runtime``). Unset, none is asked for, and
# the engine reports the kernel's refusal in its status.
RT_RUNTIME_ENV = "ECHOLAB_ENGINE_RT_RUNTIME_US"


def engine_scheduling() -> dict[str, Any]:
    """Docker's settings for a container whose thread must wake on time (the engine, and what
    stands beside it to measure the host's floor): its CPU weight and real-time budget."""
    raw = os.environ.get(RT_RUNTIME_ENV, "").strip()
    try:
        budget = int(raw or 0)
    except ValueError:
        raise ValueError(f"{RT_RUNTIME_ENV}={raw!r}: microseconds per second, an integer") from None
    if not 0 <= budget <= 1_000_000:
        raise ValueError(f"{RT_RUNTIME_ENV}={budget}: between 0 and 1000000 microseconds")
    return {"cpu_shares": CPU_SHARES, **({"cpu_rt_runtime": budget} if budget else {})}


@contextlib.contextmanager
def budget_explained(scheduling: dict[str, Any]) -> Iterator[None]:
    """Docker's refusal of the real-time budget (at create on cgroup v2, at start where the
    daemon has none to share) as a FaultError that says what to change."""
    try:
        yield
    except docker.errors.APIError as e:
        budget = scheduling.get("cpu_rt_runtime")
        if budget and ("rt_runtime" in str(e) or "real-time" in str(e).lower()):
            raise FaultError(
                f"Docker would not give the fault engine a real-time budget of {budget} us/s "
                f"({RT_RUNTIME_ENV}): on cgroup v1 the daemon needs one to share (its "
                f"cpu-rt-runtime setting); cgroup v2 has no budgets and needs none. Unset "
                f"{RT_RUNTIME_ENV} to run the engine without. Docker said: {e.explanation or e}"
            ) from e
        raise


class SidecarLike(Protocol):
    """What a fault in force (``impair.Applied``) needs of each of its sidecars: this module's
    ``Sidecar`` on the harness's own engine, or one a Swarm node's agent runs
    (``harness.swarm.agent``)."""

    plan: Plan
    stats: dict[str, Any]

    @property
    def target_name(self) -> str: ...

    def control(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def note(self, description: dict[str, Any]) -> None: ...

    def run(self, commands: list[Argv]) -> None: ...

    def engage(self) -> None: ...

    def remove(self) -> None: ...


@dataclass
class Sidecar:
    client: DockerClient
    target: Container
    lab_id: str
    plan: Plan
    image: str
    container: Container | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    slot: int = 0
    # None: this process's session; labels.USER: the user's (outlives it, like make up)
    session: str | None = None
    description: dict[str, Any] = field(default_factory=dict)
    kind: str = "impair"

    @property
    def target_name(self) -> str:
        return name_of(self.target)

    def apply(self) -> None:
        """Start the sidecar, wait for it, run the plan, note what it applies; on failure
        undo everything."""
        self.start()
        self.engage()

    def start(self) -> None:
        """Everything but the plan: the sidecar runs, its engine is ready, what an earlier run
        left in its slot is cleared, and it notes its fault as ``staged``. The target's traffic
        is untouched until ``engage``, which then takes an exec or two instead of a container
        start (a fault scheduled for a given time needs that). On failure undo everything."""
        try:
            self._clear_leftovers()
            owner = session.owning(self.client, self.image, self.session)
            scheduling = engine_scheduling()
            with budget_explained(scheduling):
                self.container = self.client.containers.create(
                    self.image,
                    command=self.plan.command,
                    name=f"{self.target.name}-fault{self.slot}-{self.kind}-{secrets.token_hex(3)}",
                    network_mode=f"container:{self.target.id}",
                    cap_drop=["ALL"],
                    cap_add=["NET_ADMIN", "SYS_NICE"],  # SYS_NICE: SCHED_FIFO for the engine
                    labels={
                        **labels.lab_labels(self.lab_id, ROLE, owner),
                        labels.FAULT_TARGET: name_of(self.target),
                        labels.FAULT_SLOT: str(self.slot),
                        labels.FAULT_KIND: self.kind,
                        labels.FAULT_BACKEND: self.plan.backend,
                        labels.FAULT_REMOVE: json.dumps(self.plan.remove),
                    },
                    mem_limit="128m",
                    pids_limit=32,
                    **scheduling,
                )
                self.container.start()
            sidecars.wait_ready(self.container, f"fault sidecar of {self.target.name}")
            for argv in self.plan.remove:  # earlier runs' leftovers: idempotent apply
                self._exec(argv, check=False)
            self.control({"op": "note", "note": {**self.description, "staged": True}})
        except BaseException:
            self.remove()
            raise

    def engage(self) -> None:
        """Run the plan on a started sidecar and note what it applies; on failure undo it."""
        try:
            self.run(self.plan.apply)
            self.note(self.description)
        except BaseException:
            self.remove()
            raise

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the sidecar's engine (``set``, ``note``, ``status``); its answer."""
        if self.container is None:
            raise FaultError(f"the fault on {self.target.name} is removed")
        return request_running(self.container, request)

    def note(self, description: dict[str, Any]) -> None:
        """Record what this sidecar applies, in the sidecar: the one place readers ask."""
        self.control({"op": "note", "note": description})
        self.description = description

    def run(self, commands: list[Argv]) -> None:
        for argv in commands:
            self._exec(argv, check=True)

    def remove(self) -> None:
        container, self.container = self.container, None
        if container is not None:
            self.stats = remove_container(self.client, container)

    def _clear_leftovers(self) -> None:
        """Remove a dead sidecar of this target, kind and slot (a crash's leftover), if any:
        a running one is a fault in force (two blocks share slot 0)."""
        found = self.client.containers.list(
            all=True,
            filters=labels.project_filter(
                **{labels.FAULT_TARGET: name_of(self.target), labels.FAULT_SLOT: str(self.slot)}
            ),
        )
        for old in found:
            if old.status == "running" or old.labels.get(labels.FAULT_KIND) != self.kind:
                continue
            with contextlib.suppress(docker.errors.NotFound):
                old.remove(force=True)

    def _exec(self, argv: Argv, *, check: bool) -> None:
        target = self.container
        if target is None:
            raise FaultError(f"the fault on {self.target.name} is removed")
        code, output = target.exec_run(argv)
        if check and code != 0:
            text = output_of(output).decode("utf-8", "replace").strip()
            raise FaultError(f"{' '.join(argv)} failed in {target.name} ({code}): {text}")


def died(container: Container) -> str | None:
    """What a sidecar's death means for its fault, or None if it runs: an engine's packets
    bypass it (its rules say ``--queue-bypass``); kernel rules (netem, tbf, a block) stay in
    force with no one to change them, until they are removed."""
    container.reload()
    if container.status == "running":
        return None
    code = container.attrs["State"]["ExitCode"]
    if (container.attrs["Config"]["Cmd"] or [""])[0] == "run":
        return (
            f"the fault engine in {name_of(container)} has died (exit {code}): traffic bypasses "
            "it (--queue-bypass); remove the fault (heal) to undo its rules"
        )
    return (
        f"the fault sidecar {name_of(container)} has exited (exit {code}): its kernel rules "
        "stay in force but cannot be changed; remove the fault (heal) to undo them"
    )


def request_running(container: Container, request: dict[str, Any]) -> dict[str, Any]:
    """A control request to a sidecar that must be running; FaultError says when it is not."""
    try:
        why = died(container)
    except docker.errors.NotFound:
        raise FaultError(f"the fault sidecar {container.name} is gone (removed or swept)") from None
    if why is not None:
        raise FaultError(why)
    return sidecars.request(container, request)


def describe(container: Container) -> dict[str, Any]:
    """What a running sidecar applies, from its note (the source every reader uses)."""
    note = request_running(container, {"op": "status"}).get("note")
    return dict(note) if isinstance(note, dict) else {}


def of_target(client: DockerClient, target: Container) -> list[Container]:
    """The running fault sidecars of one target container (its faults in force, blocks too)."""
    return list(
        client.containers.list(
            filters=labels.project_filter(**{labels.FAULT_TARGET: name_of(target)})
        )
    )


def remove_container(client: DockerClient, container: Container) -> dict[str, Any]:
    """Undo what a sidecar applied and remove it; its engine's last counters (or, if it had
    died, ``engine_died``). Idempotent: what is gone is skipped."""
    stats: dict[str, Any] = {}
    try:
        container.reload()
        if container.status == "running":
            for argv in _undo_commands(container.labels):
                container.exec_run(argv)
            container.stop(timeout=5)
            stats = sidecars.last_event(container, "stats")
        else:
            # The engine died while the fault was in force: traffic went through unimpaired
            # (--queue-bypass), and its rules are still in the target. Say so, undo them.
            exit_code = container.attrs["State"]["ExitCode"]
            log.warning("%s: undoing its rules", died(container))
            undo_orphan(client, _as_listed(container))
            stats = {"engine_died": True, "exit_code": exit_code}
    except docker.errors.NotFound:
        return stats
    except docker.errors.APIError as error:  # the target died: its namespace is gone too
        log.warning("removing fault sidecar %s: %s", container.name, error)
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)
    return stats


def _undo_commands(own: dict[str, str]) -> list[Argv]:
    return [list(argv) for argv in json.loads(own.get(labels.FAULT_REMOVE, "[]"))]


def undo_orphan(
    client: DockerClient, found: dict[str, Any], removing: Collection[str] = ()
) -> bool:
    """Undo in its target what a fault sidecar about to be swept applied; True if undone.

    ``found`` is the sidecar as the low-level listing gives it (``client.api.containers``);
    ``removing`` the names of the containers swept with it (a target among them is not worth
    cleaning). Nothing to do when the target is gone or stopped (its namespace went with it).
    A running sidecar runs the commands itself; a stopped one (killed, crashed) is replaced by
    a short-lived labelled one with the same image in the target's namespace. Best effort: a
    failure is logged, never raised. Registered with the sweep for the ``fault`` role.
    """
    own = found.get("Labels") or {}
    target_name = own.get(labels.FAULT_TARGET)
    name = ",".join(n.lstrip("/") for n in found.get("Names") or []) or str(found.get("Id"))[:12]
    if not target_name or target_name in removing:
        return False
    try:
        commands = _undo_commands(own)
        if not commands:
            return False
        target = client.containers.get(target_name)
        if target.status != "running":
            return False
        if found.get("State") == "running":
            _run_undo(client.containers.get(found["Id"]), commands)
        else:
            image = found.get("ImageID") or found["Image"]
            runner = client.containers.run(
                image,
                command=["idle"],
                name=f"{target.name}-fault-undo-{secrets.token_hex(3)}",
                network_mode=f"container:{target.id}",
                cap_drop=["ALL"],
                cap_add=["NET_ADMIN"],
                labels={
                    **labels.lab_labels(
                        own.get(labels.LAB, ""), UNDO_ROLE, session.owning(client, image)
                    ),
                    "org.echolab.fault-undo-of": name,
                },
                detach=True,
                mem_limit="128m",
                pids_limit=32,
            )
            try:
                _run_undo(runner, commands)
            finally:
                with contextlib.suppress(docker.errors.NotFound):
                    runner.remove(force=True)
        log.info("undid the leftovers of fault sidecar %s in %s", name, target_name)
        return True
    except docker.errors.NotFound:
        return False
    except Exception as error:  # best effort: the sweep goes on
        log.warning("cannot undo fault sidecar %s in %s: %s", name, target_name, error)
        return False


sweep.register_undo(ROLE, undo_orphan)


def _as_listed(container: Container) -> dict[str, Any]:
    """A container as the low-level listing describes it (what ``undo_orphan`` takes)."""
    return {
        "Id": container.id,
        "Names": [f"/{container.name}"],
        "Labels": container.labels,
        "State": container.status,
        "Image": container.attrs["Image"],
        "ImageID": container.attrs["Image"],
    }


def _run_undo(container: Container, commands: list[Argv]) -> None:
    for argv in commands:
        code, output = container.exec_run(argv)
        if code != 0:  # idempotent removal: a rule already gone is not an error
            text = output_of(output).decode("utf-8", "replace").strip()
            log.debug("%s in %s (%s): %s", " ".join(argv), container.name, code, text)
