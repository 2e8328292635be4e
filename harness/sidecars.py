"""Talking to a running sidecar (the fault engine or the toxic proxy): one protocol, one client.

Both sidecars serve ``echolab_control`` (``faults/control``): a JSON request in, a JSON reply
out, over a Unix datagram socket inside the container, reached by exec'ing ``python3 -m
echolab_control '<json>'`` (nothing is published or reachable from outside). Both print one
``{"event": "ready"}`` line on stdout once they serve, and ``{"event": "stats"}`` when they stop.
"""

from __future__ import annotations

import json
from typing import Any

import docker.errors
from docker.models.containers import Container

from harness.containers import output_of
from harness.errors import FaultError
from harness.waiting import NotReady, WaitTimeout, wait_for

CONTROL = ["python3", "-m", "echolab_control"]


def request(
    container: Container, message: dict[str, Any], error: type[FaultError] = FaultError
) -> dict[str, Any]:
    """Send one request to the sidecar; its reply, or ``error`` saying why there is none."""
    try:
        code, output = container.exec_run([*CONTROL, json.dumps(message)])
    except docker.errors.APIError as failure:  # not running: exec is refused
        raise error(
            f"{container.name} does not answer ({failure.explanation or failure})"
        ) from None
    text = output_of(output).decode("utf-8", "replace").strip()
    try:
        reply = dict(json.loads(text.splitlines()[-1]))
    except (ValueError, IndexError):
        raise error(
            f"{container.name}: no answer to {message.get('op')} ({code}): {text}"
        ) from None
    if code != 0 or not reply.get("ok"):
        raise error(f"{container.name} refused {message.get('op')}: {reply.get('error')}")
    return reply


def last_event(container: Container, event: str) -> dict[str, Any]:
    """The last ``{"event": event, ...}`` line the sidecar printed on stdout, or ``{}``."""
    output = bytes(container.logs(stdout=True, stderr=False)).decode("utf-8", "replace")
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                return record
    return {}


def wait_ready(
    container: Container, what: str, error: type[FaultError] = FaultError, timeout: float = 20.0
) -> None:
    """Wait until the sidecar says ``ready``; an exit or a timeout is ``error`` with its logs."""

    def ready() -> None:
        container.reload()
        if container.status in ("exited", "dead"):
            raise error(f"{what} exited: {_tail(container)}")
        if not last_event(container, "ready"):
            raise NotReady(f"status={container.status}")

    try:
        wait_for(what, ready, timeout=timeout)
    except WaitTimeout as failure:
        raise error(f"{failure}: {_tail(container)}") from failure


def _tail(container: Container) -> str:
    return bytes(container.logs()).decode("utf-8", "replace")[-2000:]
