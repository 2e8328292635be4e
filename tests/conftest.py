"""echolab's own suite: the docker marker, and its fixtures from the echolab pytest plugin.

Tests under tests/integration and tests/e2e are marked ``docker`` automatically, so
``pytest -m "not docker"`` runs everything else on a machine without Docker. Labs, their
teardown and their logs on failure come from ``harness.pytest_plugin``, the plugin users get by
installing echolab; ``docker_client`` and ``make_lab`` are its fixtures under shorter names.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from harness import images
from harness.faults import BACKENDS, Report, preflight
from tests.helpers import MakeLab, require

DOCKER_DIRS = ("integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent.name in DOCKER_DIRS:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client(echolab_docker: docker.DockerClient) -> docker.DockerClient:
    return echolab_docker


@pytest.fixture
def make_lab(echolab_lab_factory: MakeLab) -> MakeLab:
    return echolab_lab_factory


# One test leg per packet backend: a test that takes ``packet_backend`` runs once per backend
# (ids ``[netem]``, ``[nfqueue]``); where this host lacks one, its leg is skipped with the
# preflight's own reason, never silently. A test about one backend's behaviour forces it
# (``engine_backend``, or ``require``) and says so in its name.


@pytest.fixture(scope="session")
def sidecar_image(docker_client: docker.DockerClient) -> str:
    """The fault engine's image, built if missing or stale."""
    return images.tag_for(docker_client, "engine")


@pytest.fixture(scope="session")
def host_report(docker_client: docker.DockerClient, sidecar_image: str) -> Report:
    return preflight(docker_client, sidecar_image)


@pytest.fixture(params=tuple(BACKENDS))
def packet_backend(request: pytest.FixtureRequest, host_report: Report) -> str:
    return require(host_report, str(request.param))


@pytest.fixture
def engine_backend(host_report: Report) -> str:
    """For tests of the user-space engine's own behaviour (its death, its slots)."""
    return require(host_report, "nfqueue")
