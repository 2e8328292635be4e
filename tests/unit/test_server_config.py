"""Pure tests of server settings: defaults, environment, flags, and every rejection."""

from __future__ import annotations

import io

import pytest
from echo_server.__main__ import main
from echo_server.config import ConfigError, ServerConfig, parse_config
from echo_server.logs import EventLog, format_text, timestamp


def test_defaults() -> None:
    config = parse_config([], {})
    assert config == ServerConfig()
    assert (config.host, config.port, config.framing) == ("0.0.0.0", 8899, "line")
    assert config.max_line == 65536
    assert config.max_connections == 10000
    assert config.idle_timeout == 300
    assert config.max_pending == 1 << 20
    assert config.shutdown_timeout == 5
    assert (config.log_format, config.log_level) == ("text", "info")
    assert config.workers == 1


ENV = {
    "ECHO_HOST": "127.0.0.1",
    "ECHO_PORT": "9000",
    "ECHO_FRAMING": "raw",
    "ECHO_MAX_LINE": "100",
    "ECHO_MAX_CONNECTIONS": "3",
    "ECHO_IDLE_TIMEOUT": "300.0",
    "ECHO_MAX_PENDING": "4096",
    "ECHO_SHUTDOWN_TIMEOUT": "1.5",
    "ECHO_LOG_FORMAT": "json",
    "ECHO_LOG_LEVEL": "debug",
}


def test_environment() -> None:
    config = parse_config([], ENV)
    assert config == ServerConfig(
        host="127.0.0.1",
        port=9000,
        framing="raw",
        max_line=100,
        max_connections=3,
        idle_timeout=300.0,
        max_pending=4096,
        shutdown_timeout=1.5,
        log_format="json",
        log_level="debug",
    )


def test_flags_override_environment() -> None:
    argv = ["--port", "0", "--framing", "line", "--idle-timeout", "0", "--log-format", "text"]
    config = parse_config(argv, ENV)
    assert (config.port, config.framing, config.idle_timeout) == (0, "line", 0.0)
    assert config.log_format == "text"
    assert config.max_line == 100  # not given as a flag: the environment still applies


def test_workers_from_flag_and_environment() -> None:
    assert parse_config([], {"ECHO_WORKERS": "4"}).workers == 4
    assert parse_config(["--workers", "2"], {"ECHO_WORKERS": "4"}).workers == 2
    assert parse_config(["--workers", "1"], {}) == ServerConfig()


def test_empty_environment_variable_counts_as_unset() -> None:
    assert parse_config([], {"ECHO_PORT": "", "ECHO_FRAMING": ""}) == ServerConfig()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "-1"], {}, "--port: -1 is out of range"),
        (["--port", "65536"], {}, "between 0 and 65535"),
        (["--port", "http"], {}, "'http' is not an integer"),
        ([], {"ECHO_PORT": "99999"}, "ECHO_PORT: 99999 is out of range"),
        (["--framing", "chunked"], {}, "'chunked' is not one of line, raw"),
        ([], {"ECHO_FRAMING": "bogus"}, "ECHO_FRAMING"),
        (["--max-line", "0"], {}, "--max-line: 0 is out of range"),
        (["--max-line", "-5"], {}, "must be >= 1"),
        ([], {"ECHO_MAX_CONNECTIONS": "-1"}, "ECHO_MAX_CONNECTIONS"),
        (["--max-connections", "0"], {}, "--max-connections"),
        (["--idle-timeout", "-1"], {}, "--idle-timeout: '-1' must be a finite number >= 0"),
        (["--idle-timeout", "nan"], {}, "finite"),
        ([], {"ECHO_IDLE_TIMEOUT": "soon"}, "not a number of seconds"),
        (["--max-pending", "0"], {}, "--max-pending"),
        (["--shutdown-timeout", "-0.5"], {}, "--shutdown-timeout"),
        (["--log-format", "xml"], {}, "--log-format"),
        ([], {"ECHO_LOG_LEVEL": "trace"}, "ECHO_LOG_LEVEL"),
        (["--host", " "], {}, "host must not be empty"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--port"], {}, "expected one argument"),
        (["--workers", "0"], {}, "--workers: 0 is out of range (must be between 1 and 256)"),
        (["--workers", "257"], {}, "between 1 and 256"),
        ([], {"ECHO_WORKERS": "two"}, "ECHO_WORKERS: 'two' is not an integer"),
    ],
)
def test_bad_values_are_rejected_clearly(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(argv, env)
    assert message in str(info.value)


def test_main_exits_2_with_argparse_style_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: echo_server")
    assert "echo_server: error: argument --port: 70000 is out of range" in err


def test_text_log_line_shape() -> None:
    stream = io.StringIO()
    EventLog("text", stream=stream).event("listening", host="0.0.0.0", port=8899, framing="line")
    ts, rest = stream.getvalue().split(" ", 1)
    assert rest == "listening host=0.0.0.0 port=8899 framing=line\n"
    assert ts.endswith("Z") and len(ts) == len("2026-11-25T02:00:05.123Z")
    assert format_text("T", "error", {"reason": "idle timeout"}) == 'T error reason="idle timeout"'
    assert timestamp(0.5) == "1970-01-01T00:00:00.500Z"


def test_debug_events_hidden_at_info_level() -> None:
    stream = io.StringIO()
    log = EventLog("json", "info", stream=stream)
    log.event("connected", "debug", peer="x")
    assert stream.getvalue() == ""
    assert not log.enabled("debug")
