"""Removing a Swarm lab: its services first (their tasks with them), then its containers and
network by label (``harness.sweep``); and the services of sessions whose process is gone."""

from __future__ import annotations

import time
from typing import Any

from docker.client import DockerClient

from harness import labels, sweep
from harness.swarm import api

REMOVE_TIMEOUT = 60.0
# A task container Swarm is still stopping. A finished job's exited containers stay after
# their service is gone (a minute and more, seen here): the sweep removes those at once.
STOPPING = ["created", "running", "restarting", "removing", "paused"]


def _services(client: DockerClient, **extra: str) -> list[dict[str, Any]]:
    return api.services(client, {"label": labels.project_filter(**extra)["label"]})


def remove_lab(client: DockerClient, lab_id: str, timeout: float = REMOVE_TIMEOUT) -> None:
    """Remove a Swarm lab's services, wait (bounded) until their tasks' containers have
    stopped, then remove its containers and network (``sweep.remove_lab``). Idempotent."""
    for service in _services(client, **{labels.LAB: lab_id}):
        api.remove_service(client, service["ID"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = client.api.containers(
            all=True,
            filters={
                "label": [f"{labels.LAB}={lab_id}", "com.docker.swarm.task"],
                "status": STOPPING,
            },
        )
        if not left:
            break
        time.sleep(0.2)
    while True:  # the overlay's endpoints are released a moment after the tasks are gone
        sweep.remove_lab(client, lab_id)
        left_networks = client.networks.list(filters={"label": f"{labels.LAB}={lab_id}"})
        if not left_networks or time.monotonic() > deadline:
            break
        time.sleep(0.3)


def sweep_services(client: DockerClient) -> int:
    """Remove the services of sessions whose process is gone (as ``sweep`` does containers):
    how many."""
    found = _services(client)
    live = sweep.live_sessions(client)  # after the listing: see harness.sweep
    doomed = [s for s in found if labels.is_orphan(s["Spec"].get("Labels") or {}, live)]
    for service in doomed:
        api.remove_service(client, service["ID"])
    return len(doomed)
