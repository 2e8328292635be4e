"""The engine's control socket: parameters changed while packets flow, and status read back.

A Unix datagram socket in the sidecar's own filesystem (not an abstract name: those belong to
the network namespace, which several sidecars of one target share). The harness execs
``python3 -m echolab_fault_engine ctl '{"op": "set", ...}'`` into the sidecar; the engine answers
each request with one JSON datagram. The engine polls the socket in the same ``select`` as its
queue, so a change takes effect between two packets: held packets keep their release times, the
iptables rules are not touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Callable
from typing import Any

PATH = "/tmp/echolab-engine.sock"

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class Control:
    def __init__(self, handler: Handler, path: str = PATH) -> None:
        self.handler = handler
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve(self) -> None:
        """Answer every request waiting on the socket (never blocks)."""
        while True:
            try:
                data, sender = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            try:
                request = json.loads(data)
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                reply = {"ok": True, **self.handler(request)}
            except (ValueError, TypeError, KeyError) as error:
                reply = {"ok": False, "error": str(error)}
            if sender:
                with contextlib.suppress(OSError):
                    self.sock.sendto(json.dumps(reply).encode(), sender)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def request(message: dict[str, Any], path: str = PATH, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the engine and return its answer (the ``ctl`` subcommand)."""
    with tempfile.TemporaryDirectory() as folder:
        own = os.path.join(folder, "ctl.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(own)
            sock.settimeout(timeout)
            sock.sendto(json.dumps(message).encode(), path)
            return dict(json.loads(sock.recv(65536)))
