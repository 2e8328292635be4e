"""The control channel: one JSON object per line in, one per line out (loopback only).

Requests: ``{"op": "add", "toxic": {...ToxicSpec...}}``, ``{"op": "remove", "name": ...}``,
``{"op": "clear"}`` (remove every toxic), ``{"op": "list"}``, ``{"op": "stats"}``. Replies:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The harness reaches it by exec'ing
``python3 -m echolab_proxy ctl '<json>'`` inside the proxy's container, so no port is exposed
beyond the container's own loopback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .link import Proxy
from .toxics import ToxicSpec


def handle(proxy: Proxy, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "add":
        spec = ToxicSpec.from_dict(dict(request.get("toxic") or {}))
        proxy.add(spec)
        return {"ok": True, "toxic": spec.as_dict()}
    if op == "remove":
        proxy.remove(str(request.get("name")))
        return {"ok": True}
    if op == "clear":
        for name in list(proxy.toxics):
            proxy.remove(name)
        return {"ok": True}
    if op == "list":
        return {"ok": True, "toxics": [spec.as_dict() for spec in proxy.toxics.values()]}
    if op == "stats":
        return {"ok": True, **proxy.stats()}
    raise ValueError(f"unknown op {op!r} (add, remove, clear, list, stats)")


async def serve_control(proxy: Proxy, host: str, port: int) -> asyncio.Server:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = handle(proxy, json.loads(line))
                except (ValueError, TypeError) as error:
                    reply = {"ok": False, "error": str(error)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(session, host, port)


def request(host: str, port: int, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """A blocking client for one request (what ``python3 -m echolab_proxy ctl`` runs)."""
    import socket

    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return dict(json.loads(data))
