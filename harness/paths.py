"""Where the project's folders are: the one place that knows the checkout's layout.

Each image's code lives beside its Dockerfile (``server/``, ``client/``, ``faults/engine/``,
``faults/proxy/``); ``faults/control/`` holds the control protocol both fault sidecars speak;
``base/`` builds the offline Debian base. Nothing else computes paths from ``__file__``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "base"
BUILD_BASE = BASE / "build-base.sh"
SERVER = ROOT / "server"
CLIENT = ROOT / "client"
FAULTS = ROOT / "faults"
ENGINE = FAULTS / "engine"
PROXY = FAULTS / "proxy"
CONTROL = FAULTS / "control"
COMPOSE_FILE = ROOT / "compose.yaml"
RESULTS = ROOT / "results"
CACHE = ROOT / ".cache"
