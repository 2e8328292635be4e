"""Removing what the project created, found by label: one lab, orphans, or everything.

Run at every lab start (orphans only: resources of a session none of whose leases runs, e.g. a
test run killed by SIGKILL, wherever it ran; see ``harness.session`` and ``labels.is_orphan``),
and by ``make clean`` (everything, images included). The user's resources (session ``user``)
and resources with no session label are never orphans.

Resources are listed first, the running leases after them, once per sweep: a process that
starts its lease after the listing of resources cannot have a resource in that listing, so a
live owner is never mistaken for a dead one. A stopped lease goes after its session's resources.

Before anything is removed, what a swept container changed in another container that keeps
running is undone: a fault sidecar's rules and qdiscs in its target, e.g. the server of ``make
up``. The sweep knows no fault module: whoever makes such containers registers an undo hook
for their role (``register_undo``), and the sweep asks it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker.client import DockerClient
from docker.models.networks import Network

from harness import labels

log = logging.getLogger(__name__)

# (client, the container as the low-level listing gives it, names of all containers being swept)
UndoHook = Callable[[DockerClient, dict[str, Any], Collection[str]], object]
_UNDO: dict[str, UndoHook] = {}
LEASE_START_GRACE = 300.0  # seconds a lease may stay created (not started) before it is swept


def register_undo(role: str, hook: UndoHook) -> None:
    """Before a container of ``role`` is swept, ``hook`` undoes what it changed elsewhere."""
    _UNDO[role] = hook


@dataclass
class Swept:
    containers: int = 0
    networks: int = 0
    images: int = 0

    def __str__(self) -> str:
        return f"{self.containers} container(s), {self.networks} network(s), {self.images} image(s)"


def live_sessions(client: DockerClient) -> set[str]:
    """The sessions whose lease runs now (their owner lives), in one listing."""
    leases = client.api.containers(filters=labels.project_filter(**{labels.ROLE: labels.LEASE}))
    return {(f.get("Labels") or {}).get(labels.SESSION, "") for f in leases} - {""}


def _is_lease(found: dict[str, Any]) -> bool:
    return (found.get("Labels") or {}).get(labels.ROLE) == labels.LEASE


def _lease_ended(found: dict[str, Any]) -> bool:
    """A lease not running that never will: exited, or created and never started (a lease is
    created, then attached, then started: a young one is a process acquiring its session)."""
    state = found.get("State")
    young = time.time() - float(found.get("Created") or 0) < LEASE_START_GRACE
    return state in ("exited", "dead") or (state == "created" and not young)


def _list_containers(client: DockerClient, filters: labels.Filters) -> list[dict[str, Any]]:
    # The low-level listing: the high-level one inspects each container, and a container that
    # goes away in between (another lab tearing down) would make the sweep itself fail.
    return list(client.api.containers(all=True, filters=filters))


def _remove_containers(client: DockerClient, doomed: list[dict[str, Any]]) -> int:
    removed = 0
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
    names = {name.lstrip("/") for found in doomed for name in found.get("Names") or []}
    for found in doomed:
        hook = _UNDO.get((found.get("Labels") or {}).get(labels.ROLE, ""))
        if hook is None:
            continue
        try:
            hook(client, found, names)
        except Exception as error:  # never out of the sweep
            log.warning("cannot undo container %s: %s", str(found.get("Id"))[:12], error)


def _remove_networks(client: DockerClient, doomed: list[Network]) -> int:
    removed = 0
    for network in doomed:
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
        containers=_remove_containers(client, _list_containers(client, filters)),
        networks=_remove_networks(client, client.networks.list(filters=filters)),
    )


def sweep(client: DockerClient, *, everything: bool = False, images: bool = False) -> Swept:
    """Remove orphaned resources (or, with ``everything``, all of the project's, running
    leases too: their processes' resources go with them)."""
    filters = labels.project_filter()
    containers = _list_containers(client, filters)
    networks = client.networks.list(filters=filters)
    live = set() if everything else live_sessions(client)  # after the resources: see above

    def doomed(found: dict[str, str]) -> bool:
        return everything or labels.is_orphan(found, live)

    gone = [f for f in containers if doomed(f.get("Labels") or {})]
    leases = [f for f in gone if _is_lease(f) and (everything or _lease_ended(f))]
    swept = Swept(
        containers=_remove_containers(client, [f for f in gone if not _is_lease(f)]),
        networks=_remove_networks(
            client, [n for n in networks if doomed(n.attrs.get("Labels") or {})]
        ),
    )
    swept.containers += _remove_containers(client, leases)
    if images:
        # Project images first, the base last: the others are built on it.
        found = client.images.list(filters=filters)
        found.sort(key=lambda image: (image.labels or {}).get(labels.ROLE) == "base")
        for image in found:
            if image.id is None:  # typed optional by the SDK; a listed image always has one
                continue
            try:
                client.images.remove(image.id, force=True)
                swept.images += 1
            except docker.errors.NotFound:
                pass
    return swept
