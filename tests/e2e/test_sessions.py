"""A lab's owner is judged by its session's lease, never by a pid: the sweep leaves alone a lab
whose owner lives, wherever it runs (another process here; a harness in a container, another PID
namespace, with the Docker socket mounted), and removes it once its owner was SIGKILLed."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from harness import LabSpec, images, labels, sweep, wait_for
from harness.waiting import NotReady
from tests.e2e.harness_image import ROLE, build_harness_image, remove_image
from tests.helpers import MakeLab, lease_stopped

pytestmark = pytest.mark.timeout(300)
OWNER = Path(__file__).parent / "session_owner" / "owner.py"


def _lab_of(client: docker.DockerClient, lab_id: str) -> tuple[list[str], list[str]]:
    """Names of the lab's containers and networks (stopped ones too)."""
    only = labels.project_filter(**{labels.LAB: lab_id})
    containers = [c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters=only)]
    return containers, [n.name or "" for n in client.networks.list(filters=only)]


def _session_of(client: docker.DockerClient, lab_id: str) -> str:
    (network,) = client.networks.list(filters=labels.project_filter(**{labels.LAB: lab_id}))
    return str(network.attrs["Labels"][labels.SESSION])


def _running_lease(client: docker.DockerClient, session: str) -> bool:
    only = labels.project_filter(**{labels.ROLE: labels.LEASE, labels.SESSION: session})
    return bool(client.api.containers(filters=only))


def _remove_all_of(client: docker.DockerClient, lab_id: str | None, session: str | None) -> None:
    """What an owner left, if the test failed before the sweep removed it: its lab, its lease."""
    if lab_id is not None:
        sweep.remove_lab(client, lab_id)
    if session is not None:
        only = labels.project_filter(**{labels.SESSION: session})
        for found in client.api.containers(all=True, filters=only):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(found["Id"], force=True)


def _assert_swept_only_after_death(
    client: docker.DockerClient, lab_id: str, kill: Callable[[], None]
) -> None:
    containers, networks = _lab_of(client, lab_id)
    assert containers and networks == [lab_id]
    owner = _session_of(client, lab_id)
    assert _running_lease(client, owner)

    sweep.sweep(client, everything=False)  # its owner lives: nothing of it is an orphan
    assert sorted(_lab_of(client, lab_id)[0]) == sorted(containers)
    assert _lab_of(client, lab_id)[1] == networks

    kill()
    lease_stopped(client, owner)  # dockerd closed the lease's stdin when the owner's socket went
    sweep.sweep(client, everything=False)
    assert _lab_of(client, lab_id) == ([], [])
    gone = labels.project_filter(**{labels.SESSION: owner})
    assert client.api.containers(all=True, filters=gone) == []  # its stopped lease too


def test_a_lab_owned_by_another_process_lives_as_long_as_it(
    docker_client: docker.DockerClient,
) -> None:
    images.tag_for(docker_client, "server")
    images.tag_for(docker_client, "client")
    owner = subprocess.Popen([sys.executable, str(OWNER)], stdout=subprocess.PIPE, text=True)
    lab_id: str | None = None
    session: str | None = None
    try:
        assert owner.stdout is not None
        said = owner.stdout.readline().split()
        assert said[:1] == ["ready"], said
        lab_id = said[1]
        session = _session_of(docker_client, lab_id)

        def kill() -> None:
            owner.kill()  # SIGKILL: no atexit, no finally, no close()
            owner.wait(timeout=10)

        _assert_swept_only_after_death(docker_client, lab_id, kill)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
        _remove_all_of(docker_client, lab_id, session)


@pytest.fixture(scope="module")
def owner_image(docker_client: docker.DockerClient) -> Iterator[str]:
    base = images.lab_base(docker_client, print)
    tag = build_harness_image(
        docker_client, base, ("harness", "server", "client", "faults", "tests/e2e/session_owner")
    )
    try:
        yield tag
    finally:
        remove_image(docker_client, tag)


def test_a_lab_owned_from_another_pid_namespace_lives_as_long_as_its_owner(
    docker_client: docker.DockerClient, owner_image: str, make_lab: MakeLab
) -> None:
    # A lab of this process, live while the owner in the container starts its own: its
    # Lab.start sweeps. Under the old owner-pid rule that sweep removed this lab (this pid
    # does not exist in the container's PID namespace: "gone"); and the host could never sweep
    # the inner lab once its owner died (its owner's pid there, 1, always exists here).
    here = make_lab(LabSpec(name="host", clients=0))
    server, client = (images.tag_for(docker_client, name) for name in ("server", "client"))
    ids = [str(docker_client.images.get(tag).id) for tag in (server, client)]
    container = docker_client.containers.run(
        owner_image,
        command=["python3", "/src/tests/e2e/session_owner/owner.py", *ids],  # by id: no build
        name=f"echolab-test-owner-{uuid.uuid4().hex[:8]}",
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}},
        network_mode="none",
        labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: ROLE},
        detach=True,
    )
    lab_id: str | None = None
    session: str | None = None
    try:

        def ready() -> str:
            container.reload()
            said = container.logs().decode("utf-8", "replace")
            for line in said.splitlines():
                if line.startswith("ready "):
                    return line.split()[1]
            if container.status != "running":
                raise AssertionError(f"the owner container exited:\n{said[-3000:]}")
            raise NotReady("no ready line yet")

        lab_id = wait_for("the owner in its container to start its lab", ready, timeout=120)
        session = _session_of(docker_client, lab_id)
        assert _lab_of(docker_client, here.id)[0], "the inner lab's sweep removed a live lab"

        def kill() -> None:
            container.kill()  # SIGKILL to its pid 1: the whole PID namespace dies at once

        _assert_swept_only_after_death(docker_client, lab_id, kill)
        assert _lab_of(docker_client, here.id)[0]  # the host's lab: its owner lives
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
        _remove_all_of(docker_client, lab_id, session)
