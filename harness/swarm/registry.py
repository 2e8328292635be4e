"""The lab's own image registry: how a Swarm's nodes get the lab's images with no public one.

Swarm nodes pull a service's image by reference; images built on one machine are on that
machine only. So the lab runs a registry of its own (Debian's ``docker-registry``, the CNCF
Distribution server, in ``echolab-registry``, built from the local Debian base) and pushes
its images there. It is published on the host's loopback alone: Docker trusts plain HTTP to
``127.0.0.0/8`` without ``insecure-registries`` (nodes elsewhere reach it through their
daemon's ``insecure-registries``), or an existing registry is used instead
(``ECHOLAB_REGISTRY=host:port``, see ``SwarmLab``): ``push`` works for any. Its storage is the
container's own anonymous volume, removed with it.

    with registry.start(client) as lab_registry:
        reference = lab_registry.push("echolab-server:latest")  # 127.0.0.1:N/echolab-server:latest
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from docker import DockerClient
from docker.models.containers import Container

from harness import images, labels, session
from harness.errors import ImageError, LabError
from harness.waiting import NotReady, wait_for

ROLE = "registry"
PORT = "5000/tcp"
READY_TIMEOUT = 60.0
HTTP_TIMEOUT = 5.0


def split_reference(image: str) -> tuple[str, str]:
    """``name:tag`` (a bare name means ``latest``); a registry part is kept in the name."""
    name, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:  # "host:5000/name" has no tag
        return image, "latest"
    return name, tag


@dataclass
class Registry:
    """A running lab registry: ``address`` is ``127.0.0.1:<port>`` on this host."""

    client: DockerClient
    container: Container
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reference(self, image: str) -> str:
        """What ``image`` (``echolab-server:latest``) is called in this registry."""
        return reference(self.address, image)

    def push(self, image: str) -> str:
        """Push a local image; its reference here (see ``push``)."""
        return push(self.client, self.address, image)

    def get(self, path: str) -> Any:
        """A Registry API v2 call (``/v2/_catalog``), its JSON."""
        url = f"http://{self.address}{path}"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            return json.load(response)

    def catalog(self) -> list[str]:
        return list(self.get("/v2/_catalog").get("repositories", []))

    def tags(self, repository: str) -> list[str]:
        return list(self.get(f"/v2/{repository}/tags/list").get("tags") or [])

    def close(self) -> None:
        """Remove the registry and its storage (the anonymous volume)."""
        self.container.remove(force=True, v=True)

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def reference(address: str, image: str) -> str:
    """What ``image`` is called in the registry at ``address`` (``host:port``)."""
    name, tag = split_reference(image)
    return f"{address}/{name.rsplit('/', 1)[-1]}:{tag}"


def push(client: DockerClient, address: str, image: str) -> str:
    """Push a local image to the registry at ``address``; its reference there. The temporary
    local tag is removed (the image itself stays); a push the registry refuses raises with its
    message."""
    pushed = reference(address, image)
    name, tag = split_reference(pushed)
    client.images.get(image).tag(name, tag)
    try:
        for event in client.api.push(name, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise ImageError(f"pushing {image} to {address}: {event['error']}")
    finally:
        client.images.remove(pushed, noprune=True)
    return pushed


def start(client: DockerClient, *, lab_id: str | None = None, owner: str | None = None) -> Registry:
    """Build the registry's image if needed, start it labelled as ``lab_id``'s (owned by this
    process's session unless ``owner`` says otherwise), and wait until its API answers."""
    image = images.ensure(client, images.definitions()["registry"])
    lab_id = lab_id or f"registry-{uuid.uuid4().hex[:8]}"
    tags = labels.lab_labels(lab_id, ROLE, session.owning(client, image, owner))
    container = client.containers.run(
        image,
        detach=True,
        name=f"echolab-{lab_id}-registry",
        labels=tags,
        ports={PORT: ("127.0.0.1", 0)},  # 0: a free port, chosen by dockerd
        cap_drop=["ALL"],
        read_only=True,
        security_opt=["no-new-privileges"],
    )
    try:
        registry = Registry(client, container, _published_port(container))
        wait_for(
            f"the registry {container.name} to answer GET /v2/ on {registry.address}",
            lambda: _answers(registry),
            timeout=READY_TIMEOUT,
        )
        return registry
    except Exception as error:
        logs = container.logs(tail=40).decode(errors="replace")
        container.remove(force=True, v=True)
        raise LabError(
            f"the registry {container.name} did not start: {error}", {"registry": logs}
        ) from error
    except BaseException:  # Ctrl-C while waiting: nothing left behind
        container.remove(force=True, v=True)
        raise


def _published_port(container: Container) -> int:
    container.reload()
    bound = (container.ports or {}).get(PORT) or []
    if not bound:
        raise LabError(f"{container.name}: port {PORT} was not published")
    return int(bound[0]["HostPort"])


def _answers(registry: Registry) -> None:
    try:
        registry.get("/v2/")
    except (OSError, urllib.error.URLError, ValueError) as error:
        raise NotReady(str(error)) from error
