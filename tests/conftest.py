"""Shared test plumbing: the docker marker, one Docker client, orphan sweeping, lab logs on failure.

Tests under tests/integration and tests/e2e are marked ``docker`` automatically, so
``pytest -m "not docker"`` runs everything else on a machine without Docker.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import docker
import docker.errors
import pytest

from harness import Lab, LabSpec, sweep

DOCKER_DIRS = ("integration", "e2e")
_LABS_KEY = pytest.StashKey[list[Lab]]()


def pytest_configure(config: pytest.Config) -> None:
    # A CI timeout sends SIGTERM, which would skip every teardown (pytest-dev/pytest#5243):
    # unwind like Ctrl-C instead, so fixtures remove what they created.
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent.name in DOCKER_DIRS:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The engine, or a failure that says what is missing (never a skip: CI must not pass empty)."""
    try:
        client = docker.from_env(max_pool_size=32)
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(
            f"no Docker engine reachable ({error}); start dockerd, or run pytest -m 'not docker'",
            pytrace=False,
        )
    # Leftovers of runs that died without teardown (SIGKILL, a crashed up): their owner is gone.
    sweep.sweep(client, everything=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def make_lab(
    request: pytest.FixtureRequest, docker_client: docker.DockerClient
) -> Iterator[Callable[..., Lab]]:
    """Start labs for a test; every one is closed after it, and its logs attach to a failure."""
    labs: list[Lab] = []
    request.node.stash[_LABS_KEY] = labs

    def make(spec: LabSpec | None = None) -> Lab:
        lab = Lab(spec or LabSpec(name="test"), client=docker_client)
        labs.append(lab)
        lab.start()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call" and report.failed:
        for lab in item.stash.get(_LABS_KEY, []):
            for name, text in lab.logs().items():
                report.sections.append((f"lab logs: {name}", text[-10_000:]))
    return report
