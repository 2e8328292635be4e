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
    owned = labels.project_filter(**{labels.OWNER_PID: str(run.pid)})
    try:

        def clients_running() -> None:
            found = docker_client.containers.list(filters=owned)
            if sum(c.labels.get(labels.ROLE) == "client" for c in found) < 2:
                raise NotReady(f"{len(found)} container(s) of the run so far")

        wait_for("the run's 2 clients to be running", clients_running, timeout=60)
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert docker_client.containers.list(all=True, filters=owned) == []
    assert docker_client.networks.list(filters=owned) == []
