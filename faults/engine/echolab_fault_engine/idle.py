"""The idle engine: no packet passes through it, it only holds the note of a kernel-only fault.

Kernel-only faults (netem, tbf, iptables) are exec'd into a sidecar running this, so that
sidecar answers the same control protocol as one running the engine: ``status`` and ``note``.
"""

from __future__ import annotations

import json
import select
import signal
from types import FrameType
from typing import Any

from echolab_control import PATH, Control, note_of, unknown

OPS = ("note", "status")


class Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the wait."""


class Idle:
    """The idle engine's state: the note, set and read back over the control socket."""

    def __init__(self) -> None:
        self.note: dict[str, Any] = {}

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "note":
            self.note = note_of(request)
        elif op != "status":
            raise unknown(op, OPS)
        return {"engine": "idle", "note": self.note}


def run(control_path: str = PATH) -> int:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    idle = Idle()
    control = Control(idle.control, control_path)
    try:
        print(json.dumps({"event": "ready", "engine": "idle", "control": control.path}), flush=True)
        while True:
            select.select([control], [], [])
            control.serve()
    except Stop:
        pass
    finally:
        control.close()
    print(json.dumps({"event": "stats", "engine": "idle", "note": idle.note}), flush=True)
    return 0
