"""Where an experiment ran, for its manifest: what makes two experiments comparable or not.

Each item is read from the thing itself (git, the Docker engine, the Compose binary, the
fault preflight's real probe); one that cannot be read is recorded as such, never guessed.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

from docker.client import DockerClient

from harness import compose, paths
from harness.errors import EcholabError
from harness.faults import impair as impairs


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(paths.ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def echolab_version() -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def collect(client: DockerClient) -> dict[str, Any]:
    """The manifest's ``provenance``: echolab, Docker, Compose, kernels, the preflight."""
    version = client.version()
    found: dict[str, Any] = {
        "echolab": echolab_version(),
        "python": sys.version.split()[0],
        "host_kernel": platform.release(),
        "docker": {
            "version": version.get("Version"),
            "api": version.get("ApiVersion"),
            "engine_kernel": version.get("KernelVersion"),
            "os": version.get("Os"),
        },
    }
    try:
        tool = compose.detect()
        found["compose"] = {"command": str(tool), "version": tool.version}
    except EcholabError as error:
        found["compose"] = {"error": str(error)}
    try:
        found["preflight"] = impairs.report(client).as_dict()
    except EcholabError as error:
        found["preflight"] = {"error": str(error)}
    return found
