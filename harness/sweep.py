"""Removing what the project created, found by label: one lab, orphans, or everything.

Run at every lab start (orphans only: resources whose owner process is gone, e.g. a test run
killed by SIGKILL), and by ``make clean`` (everything, images included).

Before anything is removed, what a swept container changed in another container that keeps
running is undone (``_undo_before_removal``: a fault sidecar's rules and qdiscs in its target,
e.g. the server of ``make up``); the fault package knows how, the sweep only asks.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker.client import DockerClient
from docker.models.networks import Network

from harness import labels

log = logging.getLogger(__name__)


@dataclass
class Swept:
    containers: int = 0
    networks: int = 0
    images: int = 0

    def __str__(self) -> str:
        return f"{self.containers} container(s), {self.networks} network(s), {self.images} image(s)"


def _remove_containers(
    client: DockerClient, filters: dict[str, list[str]], everything: bool
) -> int:
    # The low-level listing: the high-level one inspects each container, and a container that
    # goes away in between (another lab tearing down) would make the sweep itself fail.
    removed = 0
    listed = client.api.containers(all=True, filters=filters)
    doomed = [f for f in listed if everything or labels.owner_is_gone(f.get("Labels") or {})]
    _undo_before_removal(client, doomed)
    for found in doomed:
        try:
            client.api.remove_container(found["Id"], force=True, v=True)
            removed += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:  # already being removed by its owner
            log.warning("cannot remove container %s: %s", found["Id"][:12], error)
    return removed


def _undo_before_removal(client: DockerClient, doomed: list[dict[str, Any]]) -> None:
    """Let each container about to be swept undo what it changed elsewhere (best effort)."""
    faults = [f for f in doomed if (f.get("Labels") or {}).get(labels.ROLE) == "fault"]
    if not faults:
        return
    try:
        from harness.faults.sidecar import undo_orphan  # here: sweep needs no fault package
    except ImportError:
        return
    names = {name.lstrip("/") for found in doomed for name in found.get("Names") or []}
    for found in faults:
        try:
            undo_orphan(client, found, removing=names)
        except Exception as error:  # never out of the sweep
            log.warning("cannot undo container %s: %s", str(found.get("Id"))[:12], error)


def _remove_networks(client: DockerClient, filters: dict[str, list[str]], everything: bool) -> int:
    removed = 0
    for network in client.networks.list(filters=filters):
        if everything or labels.owner_is_gone(network.attrs.get("Labels") or {}):
            try:
                network.remove()
                removed += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:  # still in use by a foreign container
                log.warning("cannot remove network %s: %s%s", network.name, error, _why(network))
    return removed


def _why(network: Network) -> str:
    """A hint when dockerd itself is wrong: "active endpoints" with no container attached is
    an endpoint count that Engine 20.10 leaked (seen here after labs that started dozens of
    containers at once on a loaded host); only a restart of dockerd recounts it."""
    with contextlib.suppress(docker.errors.APIError):
        network.reload()
        if not network.attrs.get("Containers"):
            return (
                " (no container is attached: dockerd leaked this network's endpoint count; "
                "restarting dockerd clears it, then make clean)"
            )
    return ""


def remove_lab(client: DockerClient, lab_id: str) -> Swept:
    filters = labels.project_filter(**{labels.LAB: lab_id})
    return Swept(
        containers=_remove_containers(client, filters, everything=True),
        networks=_remove_networks(client, filters, everything=True),
    )


def sweep(client: DockerClient, *, everything: bool = False, images: bool = False) -> Swept:
    """Remove orphaned resources (or, with ``everything``, all of the project's)."""
    filters = labels.project_filter()
    swept = Swept(
        containers=_remove_containers(client, filters, everything),
        networks=_remove_networks(client, filters, everything),
    )
    if images:
        # Project images first, the base last: the others are built on it.
        found = client.images.list(filters=filters)
        found.sort(key=lambda image: (image.labels or {}).get(labels.ROLE) == "base")
        for image in found:
            try:
                client.images.remove(image.id, force=True)
                swept.images += 1
            except docker.errors.NotFound:
                pass
    return swept
