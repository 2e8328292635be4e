"""Client settings: defaults, environment, flags over environment, and clear refusals."""

from __future__ import annotations

import socket

import pytest
from echo_client.__main__ import main
from echo_client.config import ClientConfig, ConfigError, parse_config


def test_defaults_are_interactive_on_localhost_8899() -> None:
    config = parse_config([], {})
    assert config == ClientConfig(client_id=socket.gethostname())
    assert (config.host, config.port, config.framing) == ("localhost", 8899, "line")
    assert not config.batch
    assert (config.size, config.pipeline, config.rate) == (64, 1, None)
    assert (config.timeout, config.connect_timeout, config.max_reconnects) == (120.0, 30.0, 20)


def test_environment_configures_a_container() -> None:
    env = {
        "ECHO_HOST": "server", "ECHO_PORT": "9000", "ECHO_FRAMING": "RAW",
        "ECHO_CLIENT_ID": "c7", "ECHO_CONNECT_TIMEOUT": "2.5",
    }  # fmt: skip
    config = parse_config([], env)
    assert (config.host, config.port, config.framing) == ("server", 9000, "raw")
    assert (config.client_id, config.connect_timeout) == ("c7", 2.5)


def test_flags_win_over_environment() -> None:
    env = {"ECHO_HOST": "server", "ECHO_PORT": "9000", "ECHO_CLIENT_ID": "env"}
    argv = ["--host", "127.0.0.1", "--port", "1234", "--id", "flag", "--count", "10",
            "--size", "100", "--rate", "50", "--pipeline", "8", "--timeout", "5",
            "--max-reconnects", "0"]  # fmt: skip
    config = parse_config(argv, env)
    assert (config.host, config.port, config.client_id) == ("127.0.0.1", 1234, "flag")
    assert (config.count, config.size, config.rate, config.pipeline) == (10, 100, 50.0, 8)
    assert (config.timeout, config.max_reconnects) == (5.0, 0)
    assert config.batch


def test_blank_environment_values_count_as_unset() -> None:
    assert parse_config([], {"ECHO_PORT": " "}).port == 8899


@pytest.mark.parametrize(
    ("argv", "env", "culprit"),
    [
        (["--port", "0"], {}, "--port"),
        (["--port", "http"], {}, "--port"),
        ([], {"ECHO_PORT": "70000"}, "ECHO_PORT"),
        (["--framing", "udp"], {}, "--framing"),
        (["--count", "0"], {}, "--count"),
        (["--count", "10", "--pipeline", "0"], {}, "--pipeline"),
        (["--rate", "-1"], {}, "--rate"),
        (["--rate", "nan"], {}, "--rate"),
        (["--timeout", "inf"], {}, "--timeout"),
        (["--id", "a b"], {}, "--id"),
        (["--host", ""], {}, "--host"),
        (["--count", "10", "--size", "5", "--id", "c1"], {}, "--size"),
        (["--count", "10", "--framing", "raw", "--pipeline", "2"], {}, "--pipeline"),
        (["--bogus"], {}, "--bogus"),
    ],
)
def test_bad_settings_are_refused_naming_the_culprit(
    argv: list[str], env: dict[str, str], culprit: str
) -> None:
    with pytest.raises(ConfigError, match=culprit):
        parse_config(argv, env)


def test_size_check_accounts_for_long_seqs() -> None:
    parse_config(["--count", "10", "--size", "13", "--id", "c1"], {})
    with pytest.raises(ConfigError, match="--size"):
        parse_config(["--count", str(10**9), "--size", "13", "--id", "c1"], {})


def test_main_exits_2_with_one_line_for_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--count", "3", "--size", "4", "--id", "c1"], {}) == 2
    err = capsys.readouterr().err
    assert err.startswith("echo-client: --size 4 is too small") and err.count("\n") == 1
