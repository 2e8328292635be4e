"""Removing what the project created, found by label: one lab, orphans, or everything.

Run at every lab start (orphans only: resources whose owner process is gone, e.g. a test run
killed by SIGKILL), and by ``make clean`` (everything, images included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import docker.errors
from docker.client import DockerClient

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
    for found in client.api.containers(all=True, filters=filters):
        if everything or labels.owner_is_gone(found.get("Labels") or {}):
            try:
                client.api.remove_container(found["Id"], force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:  # already being removed by its owner
                log.warning("cannot remove container %s: %s", found["Id"][:12], error)
    return removed


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
                log.warning("cannot remove network %s: %s", network.name, error)
    return removed


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
