"""Partitions with Docker's network itself (one-way blocks are in ``block``).

- ``partition(lab, target)``: disconnect the target container(s) from the lab network: no
  packet in or out, and the lab's DNS names stop resolving inside it. Its TCP connections are
  not told (no RST, no FIN): what the peers notice is silence.
- ``heal(lab)``: reconnect every container of the lab that is off the lab network, with the DNS
  aliases it had (API 1.41 forgets them on disconnect, moby#24322). Engine 20.10 gives the
  healed container its old IP address back, so a TCP connection cut off mid-run resumes by
  retransmission (tests/e2e/test_partition.py). A peer that dropped the connection meanwhile
  (a proxy's reset, its RST lost in the partition) is found out by the client's keepalive
  probes after the heal (tests/e2e/test_recovery.py); so would be a changed address.

Both are idempotent: partitioning what is partitioned and healing what is whole do nothing.
Targets are those of ``impair``: ``"server"``, a client id, or ``"clients"``.
"""

from __future__ import annotations

import docker.errors
from docker.models.containers import Container

from harness import labels
from harness.containers import name_of
from harness.faults.target import LabLike, Target, resolve_targets

# Aliases a partitioned container had, by (lab id, container name), for heal().
_ALIASES: dict[tuple[str, str], list[str]] = {}
_ROLES = ("server", "client", "proxy")


def _attached(container: Container, network: str) -> dict[str, object] | None:
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"] or {}
    found = networks.get(network)
    return dict(found) if found is not None else None


def partition(lab: LabLike, target: Target) -> list[str]:
    """Cut ``target`` off the lab network; returns the names of the containers cut off."""
    network = lab.docker.networks.get(lab.network)
    cut = []
    for container in resolve_targets(lab, target):
        endpoint = _attached(container, lab.network)
        if endpoint is None:
            continue  # already partitioned
        name = name_of(container)
        own = {container.short_id, name}
        listed = endpoint.get("Aliases") or []
        aliases = [a for a in listed if a not in own] if isinstance(listed, list) else []
        _ALIASES[(lab.id, name)] = aliases
        try:
            network.disconnect(container)
        except docker.errors.APIError as error:
            if "is not connected" not in str(error):
                raise
        cut.append(name)
    return cut


def _aliases(lab_id: str, container: Container) -> list[str]:
    remembered = _ALIASES.pop((lab_id, name_of(container)), None)
    if remembered is not None:
        return remembered
    # Partitioned by another process: its label says which alias it had.
    alias = container.labels.get(labels.ALIASES)
    return [alias] if alias else []


def partitioned(lab: LabLike) -> list[Container]:
    """The lab's containers that are off the lab network (sidecars, which share a target's
    namespace, are not counted)."""
    found = lab.docker.containers.list(
        all=True, filters=labels.project_filter(**{labels.LAB: lab.id})
    )
    off = []
    for container in found:
        if container.labels.get(labels.ROLE) not in _ROLES:
            continue
        if container.attrs["HostConfig"].get("NetworkMode") != lab.network:
            continue
        if _attached(container, lab.network) is None:
            off.append(container)
    return sorted(off, key=name_of)


def heal(lab: LabLike) -> list[str]:
    """Reconnect everything partitioned, with its aliases; returns the names reconnected."""
    network = lab.docker.networks.get(lab.network)
    healed = []
    for container in partitioned(lab):
        try:
            network.connect(container, aliases=_aliases(lab.id, container))
        except docker.errors.APIError as error:
            if "already exists" not in str(error):
                raise
        healed.append(name_of(container))
    return healed
