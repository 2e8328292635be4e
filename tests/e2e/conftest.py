"""Fixtures shared by the end-to-end fault tests."""

from __future__ import annotations

import docker
import pytest

from harness import Lab, labels
from harness.faults import image as fault_image


@pytest.fixture(scope="session")
def sidecar_image(docker_client: docker.DockerClient) -> str:
    """The fault sidecar image, built if missing (``make test`` builds it first anyway)."""
    return fault_image.build(docker_client, say=print)


def in_server_namespace(lab: Lab, image: str, argv: list[str]) -> str:
    """Run ``argv`` (iptables-save, tc ...) in the lab server's network namespace: what a
    fault left behind is only visible from there."""
    probe = lab.docker.containers.run(
        image,
        command=["idle"],
        network_mode=f"container:{lab.server.id}",
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN"],
        labels=labels.lab_labels(lab.id, "probe"),
        detach=True,
    )
    try:
        code, output = probe.exec_run(argv)
        assert code == 0, output
        return str(output.decode())
    finally:
        probe.remove(force=True)
