"""One-way blocks: ``block(lab, target, direction)`` drops a target's packets one way.

Inside a ``with``, an iptables ``DROP`` in the target's namespace (a fault sidecar of kind
``block``, ``sidecar``): ``ingress`` drops every packet arriving on ``eth0``, ``egress`` every
packet leaving by it. Loopback is untouched. A block coexists with the target's impairments and
other blocks, and each comes off on its own; removing a block that is gone does nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from harness import images
from harness.containers import name_of
from harness.errors import ConfigError
from harness.faults.backend import Plan
from harness.faults.sidecar import Sidecar
from harness.faults.target import LabLike, Target, resolve_targets

BlockDirection = Literal["ingress", "egress"]
BLOCK_COMMENT = "echolab-block"


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
        raise ConfigError(f"direction must be 'ingress' or 'egress', got {direction!r}")
    if tag and not tag.replace("-", "").isalnum():
        raise ConfigError(f"a block's tag is letters, digits and '-', got {tag!r}")
    comment = f"{BLOCK_COMMENT}-{tag}" if tag else BLOCK_COMMENT
    rule += ["-m", "comment", "--comment", comment, "-j", "DROP"]
    return Plan(
        backend="iptables",
        mechanism="iptables",
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
    plan = block_plan(direction, dev, tag=secrets.token_hex(4))
    containers = resolve_targets(lab, target)
    client = lab.docker
    image = images.tag_for(client, "engine")
    sidecars: list[Sidecar] = []
    try:
        for container in containers:
            sidecar = Sidecar(
                client,
                container,
                lab.id,
                plan,
                image,
                session=lab.session,
                kind="block",
                description={"kind": "block", "direction": direction, "target": container.name},
            )
            sidecars.append(sidecar)
            sidecar.apply()
        yield [name_of(c) for c in containers]
    finally:
        for sidecar in reversed(sidecars):
            sidecar.remove()
