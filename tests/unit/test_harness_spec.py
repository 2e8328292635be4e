"""Lab specs, waiting and Compose commands: pure or local, no Docker (labels: test_sessions)."""

from __future__ import annotations

import pytest

from harness import compose
from harness.errors import SetupError
from harness.spec import LabSpec, ServerSpec, Workload
from harness.waiting import NotReady, WaitTimeout, wait_for


def test_workload_becomes_client_flags() -> None:
    argv = Workload(count=5, size=32, pipeline=2, rate=10.0).command("c7")
    assert argv[:2] == ["--id", "c7"]
    assert argv[argv.index("--count") + 1] == "5" and argv[argv.index("--rate") + 1] == "10.0"
    assert "--rate" not in Workload().command("c0")


def test_server_spec_becomes_environment() -> None:
    env = ServerSpec(framing="raw", max_line=100).environment()
    assert env["ECHO_FRAMING"] == "raw" and env["ECHO_MAX_LINE"] == "100"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Workload(count=0), "count must be > 0"),
        (lambda: Workload(rate=-1.0), "rate must be > 0"),
        (lambda: ServerSpec(framing="json"), "framing must be one of"),
        (lambda: ServerSpec(idle_timeout=-1), "idle_timeout must be >= 0"),
        (lambda: LabSpec(name="Bad Name"), "name must match"),
        (lambda: LabSpec(clients=-1), "clients must be >= 0"),
    ],
)
def test_bad_specs_are_refused_before_anything_exists(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_wait_for_returns_the_value_once_ready() -> None:
    calls = []
    slept: list[float] = []

    def check() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NotReady("warming up")
        return "ready"

    assert wait_for("thing", check, timeout=5, sleep=slept.append) == "ready"
    assert len(slept) == 2


def test_wait_for_says_what_it_waited_for_and_the_last_state() -> None:
    def never() -> None:
        raise NotReady("health=starting")

    with pytest.raises(WaitTimeout, match=r"waiting for the server .*health=starting"):
        wait_for("the server", never, timeout=0.05, first=0.01, most=0.01)


def test_wait_for_lets_unexpected_errors_through() -> None:
    def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        wait_for("x", broken, timeout=1, sleep=lambda s: None)


def test_compose_command_always_names_file_and_project() -> None:
    tool = compose.Compose(("docker", "compose"), "2.40.3")
    argv = tool.command("echolab-x", "up", "-d")
    assert argv[:2] == ["docker", "compose"] and argv[argv.index("-p") + 1] == "echolab-x"
    assert argv[argv.index("-f") + 1].endswith("compose.yaml") and argv[-2:] == ["up", "-d"]
    assert not tool.v1 and compose.Compose(("docker-compose",), "1.29.2").v1


def test_forced_compose_that_is_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOLAB_COMPOSE", "no-such-compose-binary")
    with pytest.raises(SetupError, match="no Docker Compose found"):
        compose.detect()
