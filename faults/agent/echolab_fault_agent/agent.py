"""The agent's operations on its node: apply, control, exec, remove and list fault sidecars.

Each takes the request (a JSON object) and returns the reply's fields; an ``AgentError`` is a
refusal, with its reason. Every operation is bounded in time: the waits have deadlines, and the
Docker calls the SDK's own timeout.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

CONTROL = ["python3", "-m", "echolab_control"]
READY_TIMEOUT = 20.0
PROJECT = "org.echolab.project"
LAB = "org.echolab.lab"
ROLE = "org.echolab.role"
FAULT_KIND = "org.echolab.fault-kind"
FAULT_REMOVE = "org.echolab.fault-remove"
SIDECAR_ROLE = "fault"

Reply = dict[str, Any]


class AgentError(Exception):
    """A request the agent refuses or cannot carry out; the message says why."""


def _text(output: bytes | Any) -> str:
    data = output if isinstance(output, bytes) else b"".join(output)
    return data.decode("utf-8", "replace").strip()


def _sidecar(client: docker.DockerClient, ident: str) -> Container:
    """One of the project's fault sidecars on this node (never any other container)."""
    try:
        found = client.containers.get(ident)
    except docker.errors.NotFound:
        raise AgentError(f"no sidecar {ident} on this node") from None
    if found.labels.get(PROJECT) != "echolab" or found.labels.get(ROLE) != SIDECAR_ROLE:
        raise AgentError(f"{ident} is not an echolab fault sidecar")
    return found


def _exec(container: Container, argv: list[str], *, check: bool) -> str:
    code, output = container.exec_run(argv)
    text = _text(output)
    if check and code != 0:
        raise AgentError(f"{' '.join(argv)} failed in {container.name} ({code}): {text}")
    return text


def last_event(container: Container, event: str) -> Reply:
    """The last ``{"event": event}`` line the sidecar printed on stdout, or ``{}``."""
    output = _text(container.logs(stdout=True, stderr=False))
    for line in reversed(output.splitlines()):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                return record
    return {}


def wait_ready(container: Container, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            raise AgentError(f"sidecar {container.name} exited: {_text(container.logs())[-1500:]}")
        if last_event(container, "ready"):
            return
        time.sleep(0.05)
    raise AgentError(f"sidecar {container.name} not ready after {timeout} s")


def control(container: Container, message: Reply) -> Reply:
    """One control request to a running sidecar (the engine's ``set``, ``note``, ``status``)."""
    container.reload()
    if container.status != "running":
        code = container.attrs["State"]["ExitCode"]
        raise AgentError(f"the fault sidecar {container.name} has exited (exit {code})")
    code, output = container.exec_run([*CONTROL, json.dumps(message)])
    text = _text(output)
    try:
        reply = dict(json.loads(text.splitlines()[-1]))
    except (ValueError, IndexError):
        raise AgentError(f"{container.name}: no answer to {message.get('op')}: {text}") from None
    if code != 0 or not reply.get("ok"):
        raise AgentError(f"{container.name} refused {message.get('op')}: {reply.get('error')}")
    return reply


def _pull_if_missing(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        client.images.pull(image)


def op_apply(client: docker.DockerClient, request: Reply) -> Reply:
    """Start a sidecar in the target's namespace, run the plan, note what it applies."""
    target = client.containers.get(str(request["target"]))
    image = str(request["image"])
    _pull_if_missing(client, image)
    labels = {str(k): str(v) for k, v in dict(request["labels"]).items()}
    if labels.get(ROLE) != SIDECAR_ROLE:
        raise AgentError(f"a sidecar's labels must say {ROLE}={SIDECAR_ROLE}")
    container = client.containers.run(
        image,
        command=list(request["command"]),
        name=str(request["name"]),
        network_mode=f"container:{target.id}",
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN", "SYS_NICE"],  # SYS_NICE: SCHED_FIFO for the engine
        labels=labels,
        detach=True,
        mem_limit="128m",
        pids_limit=32,
        cpu_shares=int(request.get("cpu_shares", 1024)),
        cpu_rt_runtime=int(request["cpu_rt_runtime"]) if "cpu_rt_runtime" in request else None,
    )
    try:
        wait_ready(container)
        for argv in request.get("remove", []):  # an earlier run's leftovers: idempotent apply
            _exec(container, list(argv), check=False)
        for argv in request.get("apply", []):
            _exec(container, list(argv), check=True)
        control(container, {"op": "note", "note": request.get("note", {})})
    except BaseException:
        _remove(container)
        raise
    return {"sidecar": container.id, "name": container.name}


def op_control(client: docker.DockerClient, request: Reply) -> Reply:
    return {"reply": control(_sidecar(client, str(request["sidecar"])), dict(request["request"]))}


def op_exec(client: docker.DockerClient, request: Reply) -> Reply:
    container = _sidecar(client, str(request["sidecar"]))
    for argv in request.get("commands", []):
        _exec(container, list(argv), check=True)
    return {}


def _remove(container: Container) -> Reply:
    """Undo the sidecar's rules (its labels say how), stop it, remove it: its last counters.
    Idempotent: what is gone is skipped."""
    stats: Reply = {}
    try:
        container.reload()
        if container.status == "running":
            for argv in json.loads(container.labels.get(FAULT_REMOVE, "[]")):
                _exec(container, list(argv), check=False)
            container.stop(timeout=5)
            stats = last_event(container, "stats")
        else:
            stats = {"engine_died": True, "exit_code": container.attrs["State"]["ExitCode"]}
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:  # the target died: its namespace went with it
        stats = {"error": str(error)}
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    return stats


def op_remove(client: docker.DockerClient, request: Reply) -> Reply:
    try:
        container = _sidecar(client, str(request["sidecar"]))
    except AgentError:
        return {"stats": {}, "gone": True}
    return {"stats": _remove(container)}


def op_list(client: docker.DockerClient, request: Reply) -> Reply:
    """The project's fault sidecars on this node matching ``labels``, with the note of each
    running impairment (what it applies now)."""
    wanted = {PROJECT: "echolab", ROLE: SIDECAR_ROLE, **dict(request.get("labels", {}))}
    found = client.containers.list(
        all=True, filters={"label": [f"{k}={v}" for k, v in wanted.items()]}
    )
    listed = []
    for container in found:
        entry: Reply = {"id": container.id, "name": container.name}
        entry.update(labels=container.labels, state=container.status)
        if container.status == "running" and container.labels.get(FAULT_KIND) == "impair":
            with contextlib.suppress(AgentError):
                entry["note"] = control(container, {"op": "status"}).get("note") or {}
        listed.append(entry)
    return {"sidecars": listed}


def remove_lab(client: docker.DockerClient, lab: str) -> int:
    """Remove every sidecar of ``lab`` on this node (the agent's exit): how many."""
    found = client.containers.list(
        all=True,
        filters={"label": [f"{PROJECT}=echolab", f"{ROLE}={SIDECAR_ROLE}", f"{LAB}={lab}"]},
    )
    for container in found:
        _remove(container)
    return len(found)


OPS: dict[str, Callable[[docker.DockerClient, Reply], Reply]] = {
    "apply": op_apply,
    "control": op_control,
    "exec": op_exec,
    "remove": op_remove,
    "list": op_list,
}


def handle(client: docker.DockerClient, request: Reply) -> Reply:
    """One request's reply: ``{"ok": true, ...}`` or ``{"ok": false, "error": why}``."""
    op = request.get("op")
    if op == "ping":
        return {"ok": True}
    if op not in OPS:
        return {"ok": False, "error": f"unknown op {op!r} (one of {sorted(OPS)})"}
    try:
        return {"ok": True, **OPS[str(op)](client, request)}
    except (AgentError, KeyError, docker.errors.DockerException) as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
