"""Fixtures shared by the end-to-end fault tests."""

from __future__ import annotations

import docker
import pytest

from harness.faults import image as fault_image


@pytest.fixture(scope="session")
def sidecar_image(docker_client: docker.DockerClient) -> str:
    """The fault sidecar image, built if missing (``make test`` builds it first anyway)."""
    return fault_image.build(docker_client, say=print)
