"""Ctrl-C or SIGTERM in the middle of a run removes everything the run created."""

from __future__ import annotations

import signal
import subprocess
import sys

import docker
import pytest

from harness import labels, wait_for
from harness.waiting import NotReady


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_leaves_nothing_behind(
    docker_client: docker.DockerClient, signum: int
) -> None:
    argv = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--clients",
        "2",
        "--count",
        "5000",
        "--rate",
        "100",
    ]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stderr is not None
    said: list[str] = []
    try:
        # "echolab: lab <id>: server healthy; ...": the lab, then its session (that of the
        # run's process), which everything the run made carries, its lease included.
        while not said or not said[-1].startswith("echolab: lab "):
            said.append(run.stderr.readline())
            assert said[-1], "".join(said)
        lab_id = said[-1].split()[2].rstrip(":")
        (network,) = docker_client.networks.list(
            filters=labels.project_filter(**{labels.LAB: lab_id})
        )
        owned = labels.project_filter(**{labels.SESSION: network.attrs["Labels"][labels.SESSION]})

        def clients_running() -> None:
            found = docker_client.containers.list(filters=owned)
            if sum(c.labels.get(labels.ROLE) == "client" for c in found) < 2:
                raise NotReady(f"{len(found)} container(s) of the run so far")

        wait_for("the run's 2 clients to be running", clients_running, timeout=60)
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=60)
        stderr = "".join(said) + stderr
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert docker_client.containers.list(all=True, filters=owned) == []
    assert docker_client.networks.list(filters=owned) == []
