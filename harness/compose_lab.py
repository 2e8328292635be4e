"""A running Compose project (``make up``) seen as a lab, so the faults API can impair it.

Containers are found by Compose's own labels (``com.docker.compose.project`` /
``com.docker.compose.service``), never by name (v1 and v2 name them differently). Sidecars made
for it carry the lab id ``compose-<project>`` and the session ``user``: they outlive the command
that made them, like the stack itself, and go with ``heal``, ``make down`` or ``make clean``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import docker
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.containers import name_of
from harness.errors import ConfigError
from harness.faults import sidecar
from harness.faults.impair import Applied, attach, in_force

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


@dataclass
class ComposeLab:
    project: str
    client: DockerClient | None = None
    session: str = labels.USER  # the user's, as make up's resources: swept only by make clean
    _server: Container | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"compose-{self.project}"

    @property
    def network(self) -> str:
        """compose.yaml's network, as Compose names it (v1 and v2 alike)."""
        return f"{self.project}_internal"

    @property
    def docker(self) -> DockerClient:
        if self.client is None:
            self.client = docker.from_env()
        return self.client

    def _service(self, service: str) -> list[Container]:
        found = self.docker.containers.list(
            filters={"label": [f"{COMPOSE_PROJECT}={self.project}", f"{COMPOSE_SERVICE}={service}"]}
        )
        return sorted(found, key=name_of)

    @property
    def server(self) -> Container:
        if self._server is None:
            found = self._service("server")
            if not found:
                raise ConfigError(
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
        raise ConfigError(
            f"unknown target {target!r} in Compose project {self.project!r}: give 'server', "
            "'clients', a service or a running container of the project"
        )

    def sidecars(self, target: str | None = None) -> list[Container]:
        """The fault sidecars of this project (of one target's containers, if given)."""
        found = self.docker.containers.list(
            all=True,
            filters=labels.project_filter(**{labels.LAB: self.id, labels.ROLE: sidecar.ROLE}),
        )
        if target is not None:
            names = {c.name for c in self.resolve_target(target)}
            found = [c for c in found if c.labels.get(labels.FAULT_TARGET) in names]
        return sorted(found, key=lambda c: (c.labels.get(labels.FAULT_TARGET, ""), c.name))

    def impairments(self, target: str, slot: int | None = None) -> list[Applied]:
        """The impairment in force on each of ``target``'s containers (in ``slot``, if given),
        attached so it can be updated; ConfigError if a container holds none, or several and
        no slot says which."""
        chosen = []
        running = [
            s
            for s in self.sidecars()
            if s.status == "running" and s.labels.get(labels.FAULT_KIND) == "impair"
        ]
        for container in self.resolve_target(target):
            held = [s for s in running if s.labels.get(labels.FAULT_TARGET) == container.name]
            slots = sorted(int(s.labels.get(labels.FAULT_SLOT, "0")) for s in held)
            if slot is not None:
                held = [s for s in held if int(s.labels.get(labels.FAULT_SLOT, "0")) == slot]
            if not held:
                where = f" in slot {slot}" if slot is not None and slots else ""
                raise ConfigError(
                    f"no impairment in force on {container.name}{where} "
                    f"(slots in force: {slots or 'none'}; see `python -m harness faults`)"
                )
            if len(held) > 1:
                raise ConfigError(
                    f"{container.name} holds impairments in slots {slots}: say which with --slot"
                )
            chosen.append(attach(self.docker, held[0]))
        return chosen

    def faults(self) -> list[dict[str, Any]]:
        """Every fault sidecar of the project, with what it applies now (see ``in_force``)."""
        return in_force(self.docker, self.id)

    def heal(self, target: str | None = None) -> list[str]:
        """Remove the project's faults (one target's, if given); names of the sidecars removed."""
        removed = []
        for found in self.sidecars(target):
            sidecar.remove_container(self.docker, found)
            removed.append(name_of(found))
        return removed
