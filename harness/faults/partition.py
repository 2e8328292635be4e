"""Partitions with Docker's network itself, and one-way blocks with iptables.

- ``partition(lab, target)``: disconnect the target container(s) from the lab network: no
  packet in or out, and the lab's DNS names stop resolving inside it. Its TCP connections are
  not told (no RST, no FIN): what the peers notice is silence.
- ``heal(lab)``: reconnect every container of the lab that is off the lab network, with the DNS
  aliases it had (API 1.41 forgets them on disconnect, moby#24322). Measured on Engine 20.10:
  the healed container got its old IP address back, so a client cut off mid-run for 2 s kept
  its TCP connection (retransmissions resumed, 0 reconnects). Were the address to change, the
  old connections would stay silent (nothing resets them) until the client's own deadline.
- ``block(lab, target, direction)``: inside a ``with``, an iptables ``DROP`` in the target's
  namespace (a ``NET_ADMIN`` sidecar, ``harness.faults.sidecar``): ``ingress`` drops every
  packet arriving on ``eth0``, ``egress`` every packet leaving by it. Loopback is untouched.

All three are idempotent: partitioning what is partitioned, healing what is whole, removing a
block that is gone do nothing. Targets are those of ``impair``: ``"server"``, a client id, or
``"clients"``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import docker.errors
from docker.models.containers import Container

from harness import labels
from harness.faults.api import LabLike, Target, resolve_targets
from harness.faults.plan import Plan
from harness.faults.sidecar import Sidecar

BlockDirection = Literal["ingress", "egress"]
BLOCK_COMMENT = "echolab-block"
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
    network = lab.docker.networks.get(lab.id)
    cut = []
    for container in resolve_targets(lab, target):
        endpoint = _attached(container, lab.id)
        if endpoint is None:
            continue  # already partitioned
        own = {container.id[:12], container.name}
        aliases = [a for a in (endpoint.get("Aliases") or []) if a not in own]  # type: ignore[union-attr]
        _ALIASES[(lab.id, container.name)] = aliases
        try:
            network.disconnect(container)
        except docker.errors.APIError as error:
            if "is not connected" not in str(error):
                raise
        cut.append(container.name)
    return cut


def _aliases(lab_id: str, container: Container) -> list[str]:
    remembered = _ALIASES.pop((lab_id, container.name), None)
    if remembered is not None:
        return remembered
    # Partitioned by another process: the role says which alias it had.
    if container.labels.get(labels.ROLE) == "server":
        from harness.lab import SERVER_ALIAS

        return [SERVER_ALIAS]
    alias = container.labels.get("org.echolab.aliases")
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
        if container.attrs["HostConfig"].get("NetworkMode") != lab.id:
            continue
        if _attached(container, lab.id) is None:
            off.append(container)
    return sorted(off, key=lambda c: c.name)


def heal(lab: LabLike) -> list[str]:
    """Reconnect everything partitioned, with its aliases; returns the names reconnected."""
    network = lab.docker.networks.get(lab.id)
    healed = []
    for container in partitioned(lab):
        try:
            network.connect(container, aliases=_aliases(lab.id, container))
        except docker.errors.APIError as error:
            if "already exists" not in str(error):
                raise
        healed.append(container.name)
    return healed


def block_plan(direction: BlockDirection, dev: str = "eth0", tag: str = "") -> Plan:
    """The iptables rules of a one-way block (pure): ``-I`` to apply, ``-D`` to remove.

    Each block's rule carries its own comment (``echolab-block-<tag>``): two blocks in the same
    direction on one target are then two rules, and ``-D`` of one removes exactly that one
    (iptables deletes the first rule that matches the whole spec, comment included).
    """
    if direction == "ingress":
        rule = ["INPUT", "-i", dev]
    elif direction == "egress":
        rule = ["OUTPUT", "-o", dev]
    else:
        raise ValueError(f"direction must be 'ingress' or 'egress', got {direction!r}")
    if tag and not tag.replace("-", "").isalnum():
        raise ValueError(f"a block's tag is letters, digits and '-', got {tag!r}")
    comment = f"{BLOCK_COMMENT}-{tag}" if tag else BLOCK_COMMENT
    rule += ["-m", "comment", "--comment", comment, "-j", "DROP"]
    return Plan(
        backend="iptables",
        engine=["idle"],
        apply=[["iptables", "-w", "-I", *rule]],
        remove=[["iptables", "-w", "-D", *rule]],
    )


@contextmanager
def block(
    lab: LabLike, target: Target, direction: BlockDirection = "ingress", *, dev: str = "eth0"
) -> Iterator[list[str]]:
    """Drop ``target``'s packets one way inside the ``with``; yields the containers blocked.

    Uses a fault sidecar of kind ``block`` (one per target container, a unique name, found by
    its labels): it coexists with the target's ``impair`` sidecars and other blocks, and each
    comes off on its own.
    """
    from harness.faults import image

    plan = block_plan(direction, dev, tag=secrets.token_hex(4))
    containers = resolve_targets(lab, target)
    client = lab.docker
    client.images.get(image.SIDECAR_IMAGE)  # ImageNotFound says what to build
    sidecars: list[Sidecar] = []
    try:
        for container in containers:
            sidecar = Sidecar(client, container, lab.id, plan, image.SIDECAR_IMAGE, kind="block")
            sidecars.append(sidecar)
            sidecar.apply()
        yield [c.name for c in containers]
    finally:
        for sidecar in reversed(sidecars):
            sidecar.remove()
