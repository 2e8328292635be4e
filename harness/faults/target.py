"""What a fault needs of a lab (``LabLike``), and which containers a target names.

Both the harness's ``Lab`` and a running Compose project (``ComposeLab``) are labs in this
sense: they say their id, their Docker client, who owns what faults make (``session``), the
network their containers talk on, and which containers one target name means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from docker.client import DockerClient
from docker.models.containers import Container

from harness.containers import name_of
from harness.errors import ConfigError

Target = str | Sequence[str]


class LabLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def docker(self) -> DockerClient: ...

    @property
    def session(self) -> str | None:
        """None: this process's session owns the faults; ``"user"``: the user's (they outlive
        the process); another id: that session's (``harness.session``)."""
        ...

    @property
    def network(self) -> str:
        """The name of the network the lab's containers talk on."""
        ...

    def resolve_target(self, target: str) -> list[Container]:
        """The containers one name means; ConfigError names what is allowed."""
        ...


def resolve_targets(lab: LabLike, target: Target) -> list[Container]:
    """The containers ``target`` names: one name, or several (each resolved, in order, each
    container once); ConfigError names the first that is unknown."""
    if isinstance(target, str):
        if not target:
            raise ConfigError("a target is 'server', 'clients' or a client id, got ''")
        return lab.resolve_target(target)
    if not target or not all(isinstance(name, str) for name in target):
        raise ConfigError(f"targets must be a non-empty list of names, got {target!r}")
    found: dict[str, Container] = {}
    for name in target:
        for container in resolve_targets(lab, name):
            found.setdefault(name_of(container), container)
    return list(found.values())
