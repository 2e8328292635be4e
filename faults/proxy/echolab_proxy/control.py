"""The proxy's answers to the sidecars' control protocol (``echolab_control``): pure dispatch.

Ops: ``{"op": "add", "toxic": {...ToxicSpec...}}``, ``{"op": "remove", "name": ...}``,
``{"op": "clear"}`` (remove every toxic), ``{"op": "list"}``, ``{"op": "stats"}``, and the ops
every sidecar answers: ``{"op": "note", "note": {...}}`` and ``{"op": "status"}`` (the stats,
which include the toxics, plus the note). The socket is ``echolab_control.Control``, served on
the proxy's event loop (``__main__.py``).
"""

from __future__ import annotations

from typing import Any

from echolab_control import note_of, unknown

from .link import Relay
from .toxics import ToxicSpec

OPS = ("add", "remove", "clear", "list", "stats", "note", "status")


def handle(proxy: Relay, request: dict[str, Any]) -> dict[str, Any]:
    """One request; ``ValueError``/``TypeError`` refuse it (the protocol answers ok=false)."""
    op = request.get("op")
    if op == "add":
        spec = ToxicSpec.from_dict(dict(request.get("toxic") or {}))
        proxy.add(spec)
        return {"toxic": spec.as_dict()}
    if op == "remove":
        proxy.remove(str(request.get("name")))
        return {}
    if op == "clear":
        for name in list(proxy.toxics):
            proxy.remove(name)
        return {}
    if op == "list":
        return {"toxics": [spec.as_dict() for spec in proxy.toxics.values()]}
    if op == "stats":
        return proxy.stats()
    if op == "note":
        proxy.note = note_of(request)
        return status(proxy)
    if op == "status":
        return status(proxy)
    raise unknown(op, OPS)


def status(proxy: Relay) -> dict[str, Any]:
    return {**proxy.stats(), "note": proxy.note}
