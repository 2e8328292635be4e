"""The sidecar that applies a plan inside a target's network namespace (Docker SDK).

It joins the target's namespace (``network_mode="container:<id>"``) with ``NET_ADMIN`` only; the
target keeps its own capabilities (none, in the lab). It runs the plan's engine (or idles), the
plan's commands are exec'd into it, and ``remove()`` undoes them, stops it (the engine releases
what it holds) and removes it. Every step of removal tolerates what is already gone, so it is
idempotent, and the sidecar carries the lab's labels, so ``Lab.close()`` sweeps it too.

Several sidecars may share one target (stacked faults, and a ``block`` beside them): each has a
*kind* (``impair`` or ``block``) and a *slot* (its NFQUEUE number and iptables table, see
``nfqueue``; always 0 for a block), and a unique name, ``<target>-fault<slot>-<kind>-<random>``:
they are found by their labels, never by name. Its labels say what it applies
(``org.echolab.fault``: the description as JSON; ``org.echolab.fault-remove``: the commands
that undo it), so ``heal`` in another process can list and remove it, and the sweep can undo
what a crashed run left in a target that still runs (``undo_orphan``); the current parameters,
after ``update``, are kept by its engine (``ctl status``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.faults.plan import Plan
from harness.waiting import NotReady, WaitTimeout, wait_for

log = logging.getLogger(__name__)
TARGET = "org.echolab.fault-target"
SLOT = "org.echolab.fault-slot"
BACKEND = "org.echolab.fault-backend"
DESCRIPTION = "org.echolab.fault"
REMOVE = "org.echolab.fault-remove"
KIND = "org.echolab.fault-kind"  # "impair" (the default, also for older sidecars) or "block"
UNDO_ROLE = "fault-undo"  # the short-lived sidecar that undoes an orphan's leftovers
ENGINE = ["python3", "-m", "echolab_fault_engine"]
# The engine releases each packet on time only if it runs when its deadline comes: on a small
# host it competes for the CPU with the very containers it impairs. Its cgroup's CPU weight
# (cgroup v1 cpu.shares; Docker's default is 1024) lets it preempt them when it wakes; it runs
# only around deadlines, so it takes no more CPU than before. See benchmarks/fidelity.py.
CPU_SHARES = 262144


class FaultError(RuntimeError):
    """A fault could not be applied (says which command failed and why)."""


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
    owner_pid: int | None = None  # None: this process; 0: the user's (outlives it, like make up)
    description: dict[str, Any] = field(default_factory=dict)
    kind: str = "impair"

    def apply(self) -> None:
        """Start the sidecar, wait for its engine, run the plan; on failure undo everything."""
        try:
            self._clear_leftovers()
            self.container = self.client.containers.run(
                self.image,
                command=self.plan.engine,
                name=f"{self.target.name}-fault{self.slot}-{self.kind}-{secrets.token_hex(3)}",
                network_mode=f"container:{self.target.id}",
                cap_drop=["ALL"],
                cap_add=["NET_ADMIN"],
                labels={
                    **labels.lab_labels(self.lab_id, "fault", self.owner_pid),
                    TARGET: self.target.name,
                    SLOT: str(self.slot),
                    KIND: self.kind,
                    BACKEND: self.plan.backend,
                    DESCRIPTION: json.dumps(self.description, sort_keys=True),
                    REMOVE: json.dumps(self.plan.remove),
                },
                detach=True,
                mem_limit="128m",
                pids_limit=32,
                cpu_shares=CPU_SHARES,
            )
            self._wait_ready()
            for argv in self.plan.remove:  # earlier runs' leftovers: idempotent apply
                self._exec(argv, check=False)
            for argv in self.plan.apply:
                self._exec(argv, check=True)
            self.control({"op": "note", "note": self.description})
        except BaseException:
            self.remove()
            raise

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the sidecar's engine (``set``, ``note``, ``status``); its answer."""
        target = self.container
        if target is None:
            raise FaultError("the fault sidecar is not running")
        target.reload()
        if target.status != "running":
            raise FaultError(
                f"the fault engine in {target.name} has died (exit "
                f"{target.attrs['State']['ExitCode']}): traffic bypasses it (--queue-bypass)"
            )
        return engine_request(target, request)

    def run(self, commands: list[list[str]]) -> None:
        for argv in commands:
            self._exec(argv, check=True)

    def remove(self) -> None:
        container, self.container = self.container, None
        if container is None:
            return
        try:
            container.reload()
            if container.status == "running":
                for argv in self.plan.remove:
                    self._exec(argv, check=False, container=container)
                container.stop(timeout=5)
                self.stats = _last_event(container, "stats")
            else:
                # The engine died while the fault was in force: traffic went through unimpaired
                # (--queue-bypass), and its rules are still in the target. Say so, undo them.
                exit_code = container.attrs["State"]["ExitCode"]
                log.warning(
                    "fault engine in %s died (exit %s) while in force: traffic bypassed it",
                    container.name,
                    exit_code,
                )
                undo_orphan(self.client, _as_listed(container))
                self.stats = {"engine_died": True, "exit_code": exit_code}
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as error:  # the target died: its namespace is gone too
            log.warning("removing fault sidecar %s: %s", container.name, error)
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)

    def _clear_leftovers(self) -> None:
        """Remove a dead sidecar of this target, kind and slot (a crash's leftover), if any:
        a running one is a fault in force (two blocks share slot 0)."""
        found = self.client.containers.list(
            all=True,
            filters=labels.project_filter(**{TARGET: self.target.name, SLOT: str(self.slot)}),
        )
        for old in found:
            if old.status == "running" or old.labels.get(KIND, "impair") != self.kind:
                continue
            with contextlib.suppress(docker.errors.NotFound):
                old.remove(force=True)

    def _wait_ready(self) -> None:
        container = self.container
        assert container is not None

        def ready() -> None:
            container.reload()
            if container.status in ("exited", "dead"):
                raise FaultError(f"fault sidecar exited: {container.logs().decode()[-2000:]}")
            if not _last_event(container, "ready"):
                raise NotReady(f"status={container.status}")

        try:
            wait_for(f"fault sidecar of {self.target.name}", ready, timeout=20)
        except WaitTimeout as error:
            raise FaultError(f"{error}: {container.logs().decode()[-2000:]}") from error

    def _exec(self, argv: list[str], *, check: bool, container: Container | None = None) -> None:
        target = container or self.container
        assert target is not None
        code, output = target.exec_run(argv)
        if check and code != 0:
            text = output.decode("utf-8", "replace").strip()
            raise FaultError(f"{' '.join(argv)} failed in {target.name} ({code}): {text}")


def engine_request(container: Container, request: dict[str, Any]) -> dict[str, Any]:
    code, output = container.exec_run([*ENGINE, "ctl", json.dumps(request)])
    text = output.decode("utf-8", "replace").strip()
    try:
        answer = dict(json.loads(text.splitlines()[-1]))
    except (ValueError, IndexError) as error:
        raise FaultError(f"{container.name}: the engine did not answer ({code}): {text}") from error
    if code != 0 or not answer.get("ok"):
        raise FaultError(f"{container.name}: the engine refused {request}: {answer.get('error')}")
    return answer


def remove_container(container: Container) -> dict[str, Any]:
    """Undo and remove a sidecar found by its labels (``heal`` from another process)."""
    try:
        commands = json.loads(container.labels.get(REMOVE, "[]"))
        container.reload()
        if container.status == "running":
            for argv in commands:
                container.exec_run(argv)
            container.stop(timeout=5)
        stats = _last_event(container, "stats")
    except docker.errors.NotFound:
        return {}
    except docker.errors.APIError as error:
        log.warning("removing fault sidecar %s: %s", container.name, error)
        stats = {}
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)
    return stats


def undo_orphan(
    client: DockerClient, found: dict[str, Any], removing: Collection[str] = ()
) -> bool:
    """Undo in its target what a fault sidecar about to be swept applied; True if undone.

    ``found`` is the sidecar as the low-level listing gives it (``client.api.containers``);
    ``removing`` the names of the containers swept with it (a target among them is not worth
    cleaning). Nothing to do when the target is gone or stopped (its namespace went with it).
    A running sidecar runs the commands itself; a stopped one (killed, crashed) is replaced by
    a short-lived labelled one with the same image in the target's namespace. Best effort: a
    failure is logged, never raised.
    """
    own = found.get("Labels") or {}
    target_name = own.get(TARGET)
    name = ",".join(n.lstrip("/") for n in found.get("Names") or []) or str(found.get("Id"))[:12]
    if not target_name or target_name in removing:
        return False
    try:
        commands = [list(argv) for argv in json.loads(own.get(REMOVE, "[]"))]
        if not commands:
            return False
        target = client.containers.get(target_name)
        if target.status != "running":
            return False
        if found.get("State") == "running":
            runner = client.containers.get(found["Id"])
            _run_undo(runner, commands)
        else:
            runner = client.containers.run(
                found.get("ImageID") or found["Image"],
                command=["idle"],
                name=f"{target.name}-fault-undo-{secrets.token_hex(3)}",
                network_mode=f"container:{target.id}",
                cap_drop=["ALL"],
                cap_add=["NET_ADMIN"],
                labels={
                    **labels.lab_labels(own.get(labels.LAB, ""), UNDO_ROLE, os.getpid()),
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


def _run_undo(container: Container, commands: list[list[str]]) -> None:
    for argv in commands:
        code, output = container.exec_run(argv)
        if code != 0:  # idempotent removal: a rule already gone is not an error
            text = output.decode("utf-8", "replace").strip()
            log.debug("%s in %s (%s): %s", " ".join(argv), container.name, code, text)


def _last_event(container: Container, event: str) -> dict[str, Any]:
    for line in reversed(container.logs(stdout=True, stderr=False).decode().splitlines()):
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                return dict(record)
    return {}
