"""echolab's pytest plugin: labs, faults and the toxic proxy as fixtures, for any test suite.

Installed with echolab (entry point ``pytest11``), as pytest-docker and testcontainers ship
theirs. Fixtures are thin wrappers over the harness's own context managers: everything they
create is labelled and removed after the test, in ``finally``, also when the test fails; a
failed test's report carries the logs of every container of its labs.

- ``echolab_docker`` (session): the Docker client; a missing engine fails (never skips), and
  leftovers of runs that died without teardown are swept once.
- ``echolab_spec``: the ``LabSpec`` of ``echolab_lab`` (override it in your conftest).
- ``echolab_lab``: a started ``Lab`` from ``echolab_spec``.
- ``echolab_lab_factory``: ``make(spec)`` starts more labs in one test.
- ``echolab_impair``: ``impair(target, delay="20ms", ...)`` on ``echolab_lab``, in force until
  the test ends; returns the ``Applied``.
- ``echolab_proxy``: a toxic proxy in front of ``echolab_lab``'s server (add toxics to it).

A CI timeout's SIGTERM would skip every teardown (pytest-dev/pytest#5243): the plugin makes it
unwind like Ctrl-C, so fixtures remove what they created.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from types import FrameType
from typing import Any

import docker
import docker.errors
import pytest

from harness import sweep
from harness.faults.impair import Applied
from harness.faults.proxy import Proxy
from harness.lab import Lab
from harness.spec import LabSpec

_LABS = pytest.StashKey[list[Lab]]()
MakeLab = Callable[..., Lab]


def pytest_configure(config: pytest.Config) -> None:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def echolab_docker() -> Iterator[docker.DockerClient]:
    """The engine, or a failure that says what is missing (a skip would let CI pass empty)."""
    try:
        client = docker.from_env(max_pool_size=32)
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(
            f"no Docker engine reachable ({error}); start dockerd, or deselect these tests",
            pytrace=False,
        )
    sweep.sweep(client, everything=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def echolab_spec() -> LabSpec:
    return LabSpec(name="test")


@pytest.fixture
def echolab_lab_factory(
    request: pytest.FixtureRequest, echolab_docker: docker.DockerClient
) -> Iterator[MakeLab]:
    """Start labs for a test; every one is closed after it, and its logs attach to a failure."""
    labs: list[Lab] = []
    request.node.stash[_LABS] = labs

    def make(spec: LabSpec | None = None) -> Lab:
        lab = Lab(spec or LabSpec(name="test"), client=echolab_docker)
        labs.append(lab)
        lab.start()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()


@pytest.fixture
def echolab_lab(echolab_lab_factory: MakeLab, echolab_spec: LabSpec) -> Lab:
    return echolab_lab_factory(echolab_spec)


@pytest.fixture
def echolab_impair(echolab_lab: Lab) -> Iterator[Callable[..., Applied]]:
    """``impair(target, **lab.impair's keywords)``: in force until the test ends."""
    with ExitStack() as stack:

        def impair(target: str | list[str], **params: Any) -> Applied:
            return stack.enter_context(echolab_lab.impair(target, **params))

        yield impair


@pytest.fixture
def echolab_proxy(echolab_lab: Lab) -> Iterator[Proxy]:
    with echolab_lab.proxy() as proxy:
        yield proxy


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for lab in item.stash.get(_LABS, []):
            for name, text in lab.logs().items():
                report.sections.append((f"lab logs: {name}", text[-10_000:]))
    return report
