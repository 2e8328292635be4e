"""Helpers the tests share, imported (never from a conftest: a conftest is pytest's, and two
of the same basename once broke collection of the whole suite)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import docker
import pytest
from docker.models.containers import Container

from harness import Lab, compose, labels, session, wait_for
from harness.faults import Report
from harness.waiting import NotReady

MakeLab = Callable[..., Lab]


def in_server_namespace(lab: Lab, image: str, argv: list[str]) -> str:
    """Run ``argv`` (iptables-save, tc ...) in the lab server's network namespace: what a
    fault left behind is only visible from there."""
    probe = lab.docker.containers.run(
        image,
        command=["idle"],
        network_mode=f"container:{lab.server.id}",
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN"],
        labels=labels.lab_labels(lab.id, "probe", session.acquire(lab.docker, image)),
        detach=True,
    )
    try:
        code, output = probe.exec_run(argv)
        assert code == 0, output
        return str(output.decode())
    finally:
        probe.remove(force=True)


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


class Orphaned:
    """The lab, seen by ``apply`` as owned by another session (``SessionOwner``'s: orphaned once
    that process is killed, as a crashed run's)."""

    def __init__(self, lab: Lab, session: str) -> None:
        self._lab = lab
        self.id = lab.id
        self.session = session

    @property
    def docker(self) -> docker.DockerClient:
        return self._lab.docker

    @property
    def network(self) -> str:
        return self._lab.network

    def resolve_target(self, target: str) -> list[Container]:
        return self._lab.resolve_target(target)


# A process that holds a session's lease and nothing else, until it is killed.
_HOLD = """
import sys, time
import docker
from harness import session
image, url = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
client = docker.DockerClient(base_url=url, timeout=120) if url else docker.from_env()
print(session.acquire(client, image), flush=True)
time.sleep(900)
"""


def lease_stopped(client: docker.DockerClient, owner: str, timeout: float = 30.0) -> None:
    """Wait until no lease of session ``owner`` runs (dockerd saw its process's connection
    close): bounded, it fails the test if the lease outlives its process."""

    def stopped() -> None:
        found = client.api.containers(
            filters=labels.project_filter(**{labels.ROLE: labels.LEASE, labels.SESSION: owner})
        )
        if found:
            raise NotReady(f"lease of session {owner} still {found[0]['State']}")

    wait_for(f"the lease of session {owner} to stop", stopped, timeout=timeout)


class SessionOwner:
    """Another process on this host holding a session (its lease running from ``image``, in
    the engine at ``url``, else the environment's) until ``crash()`` kills it with SIGKILL:
    what it owns then becomes a real orphan. ``lease_timeout``: how long dockerd may take to
    see the process's connection close (longer for an emulated VM's engine)."""

    def __init__(self, image: str, url: str | None = None, lease_timeout: float = 30.0) -> None:
        self._lease_timeout = lease_timeout
        self._process = subprocess.Popen(
            [sys.executable, "-c", _HOLD, image, *([url] if url else [])],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.session = self._process.stdout.readline().strip()
        if not self.session:
            self._process.kill()
            self._process.wait()
            raise AssertionError("the session owner exited before acquiring its lease")

    def crash(self, client: docker.DockerClient) -> None:
        """SIGKILL (no atexit, no cleanup), then wait until dockerd has ended its lease."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)
        lease_stopped(client, self.session, timeout=self._lease_timeout)


def require(report: Report, backend: str) -> str:
    """``backend``, or a skip that says why this host cannot run it."""
    why = report.missing(backend)
    if why is not None:
        pytest.skip(f"backend {backend} is not usable on this host: {why}")
    return backend
