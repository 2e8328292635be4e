"""Client settings from flags and ``ECHO_*`` environment variables, checked before connecting.

Containers are configured by environment and people by flags, so both work: a flag wins over
the environment, which wins over the default. Every value is validated up front so that a typo
fails at once with exit 2 and a message naming the setting, not minutes into a run.
"""

from __future__ import annotations

import argparse
import math
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .workload import min_size

DEFAULT_PORT = 8899
FRAMINGS = ("line", "raw")


class ConfigError(Exception):
    """A bad setting; the message names the flag or variable and what is accepted."""


@dataclass(frozen=True)
class ClientConfig:
    """``count is None`` means interactive mode; any count means batch mode."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    framing: str = "line"
    count: int | None = None
    size: int = 64
    rate: float | None = None
    pipeline: int = 1
    client_id: str = field(default_factory=socket.gethostname)
    timeout: float = 120.0
    connect_timeout: float = 30.0
    max_reconnects: int = 20

    @property
    def batch(self) -> bool:
        return self.count is not None


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"{value} is out of range (must be {bound})")
        return value

    return convert


def _positive_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} must be a finite number > 0")
    return value


def _framing(text: str) -> str:
    value = text.strip().lower()
    if value not in FRAMINGS:
        raise ValueError(f"{text!r} is not one of {', '.join(FRAMINGS)}")
    return value


def _host(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("host must not be empty")
    return value


def _client_id(text: str) -> str:
    """The id goes into every payload's ``"<id> <seq> "`` header, so no whitespace."""
    value = text.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{text!r} must be non-empty and contain no whitespace")
    return value


# dest, flag, env, converter, help
_SETTINGS: tuple[tuple[str, str, str, Callable[[str], Any], str], ...] = (
    ("host", "--host", "ECHO_HOST", _host, "server host name or address"),
    ("port", "--port", "ECHO_PORT", _int(1, 65535), "server TCP port"),
    ("framing", "--framing", "ECHO_FRAMING", _framing, "line (default) or raw (the seed's)"),
    ("count", "--count", "ECHO_COUNT", _int(1), "batch mode: send this many messages"),
    ("size", "--size", "ECHO_SIZE", _int(1), "bytes per request, newline included"),
    ("rate", "--rate", "ECHO_RATE", _positive_float, "messages per second (default: unpaced)"),
    ("pipeline", "--pipeline", "ECHO_PIPELINE", _int(1), "requests in flight at most"),
    ("client_id", "--id", "ECHO_CLIENT_ID", _client_id, "client id (default: host name)"),
    ("timeout", "--timeout", "ECHO_TIMEOUT", _positive_float, "overall deadline, seconds"),
    ("connect_timeout", "--connect-timeout", "ECHO_CONNECT_TIMEOUT", _positive_float,
     "seconds to keep retrying a connection"),
    ("max_reconnects", "--max-reconnects", "ECHO_MAX_RECONNECTS", _int(0),
     "reconnections allowed in one batch run"),
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse exits on its own errors; raising instead lets main() own every exit code."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    defaults = ClientConfig(client_id="")
    parser = _Parser(
        prog="echo_client",
        description="TCP echo client: interactive by default, batch mode with --count "
        "(JSON lines on stdout). Exit codes: 0 ok, 1 bad or missing replies, 2 bad settings, "
        "3 cannot connect.",
    )
    for dest, flag, env, _, text in _SETTINGS:
        default = getattr(defaults, dest)
        shown = f"; default {default}" if default not in (None, "") else ""
        parser.add_argument(flag, dest=dest, metavar=dest.upper(), help=f"{text}; env {env}{shown}")
    return parser


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> ClientConfig:
    """Flags over environment over defaults; ConfigError names the culprit."""
    args = _parser().parse_args(list(argv))
    values: dict[str, Any] = {}
    for dest, flag, env_name, convert, _ in _SETTINGS:
        raw = getattr(args, dest)
        source = flag
        if raw is None and env.get(env_name, "").strip():
            raw, source = env[env_name], env_name
        if raw is None:
            continue
        try:
            values[dest] = convert(raw)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
    config = ClientConfig(**values)
    _check_combination(config)
    return config


def _check_combination(config: ClientConfig) -> None:
    if config.count is None:
        return
    needed = min_size(config.client_id, config.count)
    if config.size < needed:
        raise ConfigError(
            f"--size {config.size} is too small: requests of client {config.client_id!r} "
            f"need at least {needed} bytes for the '<id> <seq> ' header and the newline"
        )
    if config.framing == "raw" and config.pipeline > 1:
        raise ConfigError(
            "--pipeline > 1 needs line framing: raw framing answers whatever one read "
            "returned, so pipelined requests merge into one reply"
        )
    if config.framing == "raw" and config.size > 1024:
        raise ConfigError("--size > 1024 needs line framing: raw framing splits reads at 1024")
