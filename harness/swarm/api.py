"""The Engine's Swarm calls the harness makes, typed in one place (the SDK's stubs leave the
low-level service and task calls untyped)."""

from __future__ import annotations

import contextlib
from typing import Any

import docker.errors
from docker.client import DockerClient

Filters = dict[str, Any]


def create_service(client: DockerClient, args: dict[str, Any]) -> str:
    created = client.api.create_service(**args)  # type: ignore[no-untyped-call]
    return str(created["ID"])


def tasks(client: DockerClient, filters: Filters) -> list[dict[str, Any]]:
    return list(client.api.tasks(filters=filters))  # type: ignore[no-untyped-call]


def services(client: DockerClient, filters: Filters) -> list[dict[str, Any]]:
    return list(client.api.services(filters=filters))  # type: ignore[no-untyped-call]


def remove_service(client: DockerClient, ident: str) -> None:
    """Remove a service; one already gone is not an error."""
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_service(ident)  # type: ignore[no-untyped-call]


def force_update(client: DockerClient, name: str) -> None:
    """Replace every task of service ``name`` with a new one, its spec unchanged."""
    client.services.get(name).force_update()  # type: ignore[no-untyped-call]
