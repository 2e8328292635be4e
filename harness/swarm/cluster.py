"""The swarm the lab runs on: is this engine a manager, which endpoint mode works, and a
single-node swarm made for a lab and left as it was found.

A service's virtual IP (``endpoint_mode: vip``, Swarm's default) and the ingress routing mesh
are IPVS load balancers in the kernel; a kernel without IPVS (``/proc/net/ip_vs`` absent, as on
these build machines) accepts such a service and never answers on its address. With ``dnsrr``
the service's name resolves to its tasks' own addresses, which needs nothing of the kernel:
``endpoint_mode()`` chooses by what the kernel has, unless told.

``docker swarm init`` changes the daemon for everyone who uses it. A swarm this module makes is
marked (a label on the node, ``org.echolab.swarm-owner``) so that whoever made it, and only
they, can leave it (``leave_if_ours``); leaving also removes the ``docker_gwbridge`` network the
swarm created, which ``docker swarm leave --force`` leaves behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import docker.errors
from docker.client import DockerClient

from harness.errors import ConfigError, LabError

log = logging.getLogger(__name__)
IPVS = Path("/proc/net/ip_vs")
OWNER = "org.echolab.swarm-owner"  # on the node of a swarm echolab made: who made it
GWBRIDGE = "docker_gwbridge"
EndpointMode = Literal["vip", "dnsrr"]
# A lab's overlay: Swarm's default /24 holds about 250 tasks, and a job of more had its
# tasks fail for want of an address (and, as a job, rerun). A /20 holds 4,090.
LAB_PREFIX = 20
LAB_POOL = "10.128.0.0/9"


def has_ipvs(proc: Path = IPVS) -> bool:
    """Whether this kernel has IPVS (the harness runs beside the node's engine; a remote
    engine's kernel is not this one's: say ``endpoint_mode`` then)."""
    return proc.exists()


def endpoint_mode(requested: EndpointMode | None = None, proc: Path = IPVS) -> EndpointMode:
    """``requested``, or ``vip`` where the kernel has IPVS and ``dnsrr`` where it has none."""
    if requested is not None:
        if requested not in ("vip", "dnsrr"):
            raise LabError(f"endpoint_mode must be 'vip' or 'dnsrr', got {requested!r}")
        return requested
    return "vip" if has_ipvs(proc) else "dnsrr"


def state(client: DockerClient) -> str:
    """``inactive``, ``active``, ``pending``, ``error`` or ``locked``."""
    return str(client.info()["Swarm"]["LocalNodeState"])


def is_manager(client: DockerClient) -> bool:
    swarm = client.info()["Swarm"]
    return swarm["LocalNodeState"] == "active" and bool(swarm.get("ControlAvailable"))


def require_manager(client: DockerClient) -> None:
    if not is_manager(client):
        raise LabError(
            f"this Docker engine is not a swarm manager (swarm: {state(client)}): run "
            "`docker swarm init --advertise-addr 127.0.0.1`, or `python -m harness up "
            "--engine swarm`, which makes a single-node swarm and `down` leaves it"
        )


def local_node_id(client: DockerClient) -> str:
    return str(client.info()["Swarm"]["NodeID"])


def init(client: DockerClient, owner: str, advertise_addr: str = "127.0.0.1") -> bool:
    """Make this engine a single-node swarm marked as ``owner``'s; False (nothing changed) if
    it already is in one."""
    if state(client) != "inactive":
        return False
    client.swarm.init(advertise_addr=advertise_addr, listen_addr=f"{advertise_addr}:2377")
    try:
        node = client.nodes.get(local_node_id(client))
        spec = dict(node.attrs["Spec"])
        spec["Labels"] = {**(spec.get("Labels") or {}), OWNER: owner}
        node.update(spec)
    except BaseException:
        leave(client)
        raise
    log.info("made a single-node swarm (owner %s)", owner)
    return True


def owner(client: DockerClient) -> str | None:
    """Who made this swarm, if echolab did (the label on this node)."""
    if state(client) != "active":
        return None
    with contextlib.suppress(docker.errors.APIError):
        node = client.nodes.get(local_node_id(client))
        return (node.attrs["Spec"].get("Labels") or {}).get(OWNER)
    return None


def leave(client: DockerClient, timeout: float = 30.0) -> None:
    """Leave the swarm (forced: the only manager) and remove ``docker_gwbridge`` once nothing
    uses it; bounded by ``timeout``."""
    if state(client) != "inactive":
        client.swarm.leave(force=True)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.networks.get(GWBRIDGE).remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as error:  # endpoints still being released
            last = error
            time.sleep(0.2)
    log.warning("cannot remove %s: %s", GWBRIDGE, last)


def leave_if_ours(client: DockerClient, who: str) -> bool:
    """Leave the swarm if ``who`` made it (``init``); True if left."""
    if owner(client) != who:
        return False
    leave(client)
    return True


@contextlib.contextmanager
def single_node(client: DockerClient, who: str) -> Iterator[bool]:
    """A swarm for the ``with``: made (and left afterwards, also on failure or Ctrl-C) only if
    this engine was in none; True if made here."""
    made = init(client, who)
    try:
        yield made
    finally:
        if made:
            leave(client)


def free_subnet(used: list[str], prefix: int = LAB_PREFIX, pool: str = LAB_POOL) -> str:
    """The first ``/prefix`` of ``pool`` that overlaps none of ``used`` (pure)."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used if ":" not in u]
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise LabError(f"no free /{prefix} left in {pool} for the lab's overlay network")


def subnets_in_use(client: DockerClient) -> list[str]:
    """Every subnet of every network this engine knows (swarm-scoped ones too)."""
    found = []
    for network in client.api.networks():
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet"):
                found.append(str(config["Subnet"]))
    return found


def tasks_fit(subnet: str, tasks: int) -> bool:
    """Whether ``tasks`` more addresses fit in ``subnet`` beside the lab's own (pure): each
    task takes one, and each node's load balancer and the service's VIP one more."""
    return tasks + 16 <= ipaddress.ip_network(subnet).num_addresses - 2


# Placement by the node label ``role`` (simulated nodes: ``sut`` on the manager, ``load`` on
# the workers; on your own swarm, ``docker node update --label-add role=sut NODE``).
SUT = "node.labels.role==sut"
NOT_SUT = "node.labels.role!=sut"


def placement(where: str) -> tuple[list[str], list[str]]:
    """The server's and the clients' constraints for ``where`` (pure): ``"any"`` none,
    ``"same"`` both on the ``role=sut`` node, ``"cross"`` the clients on other nodes."""
    if where == "any":
        return [], []
    if where == "same":
        return [SUT], [SUT]
    if where == "cross":
        return [SUT], [NOT_SUT]
    raise ConfigError(f"placement must be 'any', 'same' or 'cross', got {where!r}")


def check_placement(client: DockerClient, where: str) -> None:
    """ConfigError, before anything is deployed, when the swarm's nodes cannot hold ``where``
    (Swarm would leave the tasks pending, and say so only as a timeout)."""
    if where == "any":
        return
    roles = [n.attrs["Spec"].get("Labels", {}).get("role") for n in client.nodes.list()]
    sut = sum(role == "sut" for role in roles)
    if sut == 0 or (where == "cross" and sut == len(roles)):
        need = "a node labelled role=sut" + (" and one not" if where == "cross" else "")
        raise ConfigError(
            f"placement {where!r} needs {need}; this swarm's nodes have roles {roles} "
            "(docker node update --label-add role=sut NODE, or [experiment] nodes = 2)"
        )
