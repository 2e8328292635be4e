"""The lab's own registry (``harness.swarm.registry``): what Swarm nodes will pull from.

A real registry container (Debian's docker-registry) on this host's loopback: an image pushed
to it comes back by its reference with the same id, and closing it leaves nothing behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from harness import images, labels
from harness.errors import ImageError
from harness.swarm import registry

pytestmark = pytest.mark.timeout(600)  # the first run builds the registry's base (mmdebstrap)


@pytest.fixture(scope="module")
def lab_registry(docker_client: docker.DockerClient) -> Iterator[registry.Registry]:
    started = registry.start(docker_client)
    try:
        yield started
    finally:
        started.close()


def test_a_pushed_image_comes_back_by_its_reference_with_the_same_id(
    docker_client: docker.DockerClient, lab_registry: registry.Registry
) -> None:
    tag = images.ensure_all(names=("server",))["server"]
    local = docker_client.images.get(tag)
    reference = lab_registry.push(tag)
    assert reference == f"{lab_registry.address}/echolab-server:latest"
    assert "echolab-server" in lab_registry.catalog()
    assert lab_registry.tags("echolab-server") == ["latest"]
    assert reference not in {t for image in docker_client.images.list() for t in image.tags}
    try:
        pulled = docker_client.images.pull(reference)
        assert pulled.id == local.id  # the same image, not a copy built again
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(reference, noprune=True)
    assert docker_client.images.get(tag).id == local.id  # the local tag untouched


def test_a_refused_push_raises_with_the_registry_s_reason(
    docker_client: docker.DockerClient, lab_registry: registry.Registry
) -> None:
    """A registry that is gone: the push fails with the daemon's message, not silently."""
    tag = images.ensure_all(names=("server",))["server"]
    gone = registry.Registry(docker_client, lab_registry.container, port=1)  # nothing listens
    with pytest.raises((ImageError, docker.errors.APIError), match=r"127\.0\.0\.1:1\b"):
        gone.push(tag)
    assert gone.reference(tag) not in {t for i in docker_client.images.list() for t in i.tags}


def test_the_registry_is_labelled_and_close_removes_it_and_its_storage(
    docker_client: docker.DockerClient,
) -> None:
    started = registry.start(docker_client)
    container = docker_client.containers.get(started.container.id)
    assert container.labels[labels.ROLE] == registry.ROLE
    assert container.labels[labels.PROJECT] == labels.PROJECT_VALUE
    volumes = [m["Name"] for m in container.attrs["Mounts"] if m["Type"] == "volume"]
    assert volumes, "the registry's storage is its own volume"
    bound = container.attrs["HostConfig"]["PortBindings"][registry.PORT]
    assert [b["HostIp"] for b in bound] == ["127.0.0.1"]  # never on the host's other addresses
    started.close()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container.id)
    for name in volumes:
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(name)
