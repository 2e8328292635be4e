"""``python3 -m echolab_fault_agent serve`` (the service's task) or ``'<json>'`` (one request).

``serve`` prints ``{"event": "ready"}`` and waits; on SIGTERM (the service removed) it removes
every sidecar of its lab on this node, then exits 0. A request prints one JSON line; exit 0
when done, 1 when refused.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import docker

from echolab_fault_agent import LAB_ENV
from echolab_fault_agent.agent import handle, remove_lab


def serve() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    client = docker.from_env()
    client.ping()
    print(json.dumps({"event": "ready", "lab": os.environ.get(LAB_ENV)}), flush=True)
    stop.wait()
    lab = os.environ.get(LAB_ENV)
    removed = remove_lab(client, lab) if lab else 0
    print(json.dumps({"event": "stopped", "removed": removed}), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv == ["serve"]:
        return serve()
    if len(argv) != 1:
        print("usage: python3 -m echolab_fault_agent serve | '<json request>'", file=sys.stderr)
        return 2
    try:
        request = json.loads(argv[0])
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        print(json.dumps({"ok": False, "error": f"not a request: {error}"}))
        return 1
    reply = handle(docker.from_env(), request)
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
