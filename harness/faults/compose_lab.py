"""A running Compose project (``make up``) seen as a lab, so the faults API can impair it.

Containers are found by Compose's own labels (``com.docker.compose.project`` /
``com.docker.compose.service``), never by name (v1 and v2 name them differently). Sidecars made
for it carry the lab id ``compose-<project>`` and owner pid 0: they outlive the command that made
them, like the stack itself, and go with ``heal``, ``make down`` or ``make clean``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.faults.api import Applied, attach
from harness.faults.sidecar import (
    BACKEND,
    DESCRIPTION,
    KIND,
    SLOT,
    TARGET,
    FaultError,
    engine_request,
    remove_container,
)

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


@dataclass
class ComposeLab:
    project: str
    client: DockerClient | None = None
    owner_pid: int = 0  # the user's, as make up's resources: swept only by make clean
    _server: Container | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"compose-{self.project}"

    @property
    def docker(self) -> DockerClient:
        if self.client is None:
            self.client = docker.from_env()
        return self.client

    def _service(self, service: str) -> list[Container]:
        found = self.docker.containers.list(
            filters={"label": [f"{COMPOSE_PROJECT}={self.project}", f"{COMPOSE_SERVICE}={service}"]}
        )
        return sorted(found, key=lambda c: c.name)

    @property
    def server(self) -> Container:
        if self._server is None:
            found = self._service("server")
            if not found:
                raise ValueError(
                    f"unknown target: no running server in Compose project {self.project!r} "
                    "(start it with make up)"
                )
            self._server = found[0]
        return self._server

    def resolve_target(self, target: str) -> list[Container]:
        """``server``, ``clients`` (running ``compose run client`` containers), any service
        name, or a container name of the project."""
        if target == "server":
            return [self.server]
        if target == "clients":
            target = "client"
        found = self._service(target)
        if found:
            return found
        by_name = [
            c
            for c in self.docker.containers.list(
                filters={"label": [f"{COMPOSE_PROJECT}={self.project}"]}
            )
            if c.name == target
        ]
        if by_name:
            return by_name
        raise ValueError(
            f"unknown target {target!r} in Compose project {self.project!r}: give 'server', "
            "'clients', a service or a running container of the project"
        )

    def sidecars(self, target: str | None = None) -> list[Container]:
        """The fault sidecars of this project (of one target's containers, if given)."""
        found = self.docker.containers.list(
            all=True, filters=labels.project_filter(**{labels.LAB: self.id, labels.ROLE: "fault"})
        )
        if target is not None:
            names = {c.name for c in self.resolve_target(target)}
            found = [c for c in found if c.labels.get(TARGET) in names]
        return sorted(found, key=lambda c: (c.labels.get(TARGET, ""), c.labels.get(SLOT, "")))

    def impairments(self, target: str, slot: int | None = None) -> list[Applied]:
        """The impairment in force on each of ``target``'s containers (in ``slot``, if given),
        attached so it can be updated; ValueError if a container holds none, or several and
        no slot says which."""
        chosen = []
        running = [
            s
            for s in self.sidecars()
            if s.status == "running" and s.labels.get(KIND, "impair") == "impair"
        ]
        for container in self.resolve_target(target):
            held = [s for s in running if s.labels.get(TARGET) == container.name]
            slots = sorted(int(s.labels.get(SLOT, "0")) for s in held)
            if slot is not None:
                held = [s for s in held if int(s.labels.get(SLOT, "0")) == slot]
            if not held:
                where = f" in slot {slot}" if slot is not None and slots else ""
                raise ValueError(
                    f"no impairment in force on {container.name}{where} "
                    f"(slots in force: {slots or 'none'}; see `python -m harness faults`)"
                )
            if len(held) > 1:
                raise ValueError(
                    f"{container.name} holds impairments in slots {slots}: say which with --slot"
                )
            chosen.append(attach(self.docker, held[0]))
        return chosen

    def faults(self) -> list[dict[str, Any]]:
        """Every fault in force: its sidecar, target, slot, backend and current parameters."""
        listed = []
        for sidecar in self.sidecars():
            described = json.loads(sidecar.labels.get(DESCRIPTION, "{}") or "{}")
            entry: dict[str, Any] = {
                "sidecar": sidecar.name,
                "target": sidecar.labels.get(TARGET),
                "slot": int(sidecar.labels.get(SLOT, "0")),
                "backend": sidecar.labels.get(BACKEND),
                "status": sidecar.status,
                "params": described,
            }
            if sidecar.status == "running":
                try:
                    answer = engine_request(sidecar, {"op": "status"})
                    entry["params"] = answer.get("note") or described
                    entry["engine"] = {
                        k: answer[k] for k in ("seen", "dropped", "released") if k in answer
                    }
                except (FaultError, docker.errors.APIError) as error:
                    entry["engine"] = {"error": str(error)}
            listed.append(entry)
        return listed

    def heal(self, target: str | None = None) -> list[str]:
        """Remove the project's faults (one target's, if given); names of the sidecars removed."""
        removed = []
        for sidecar in self.sidecars(target):
            remove_container(sidecar)
            removed.append(sidecar.name)
        return removed
