"""Server settings from flags and ``ECHO_*`` environment variables, validated up front.

Containers are configured by environment and people by flags, so both are accepted; a flag
wins over the environment, which wins over the default. Every value is checked before the
server binds anything, so a typo fails fast with exit 2 instead of misbehaving under load.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from .protocol import DEFAULT_PORT, FRAMINGS

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("info", "debug")
MAX_WORKERS = 256
"""A typo such as --workers 1000 should fail at parse time, not fork a thousand processes."""

T = TypeVar("T")


class ConfigError(Exception):
    """A bad setting; the message names the flag or variable and the accepted values."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    framing: str = "line"
    max_line: int = 65536
    max_connections: int = 10000
    backlog: int = 1024
    idle_timeout: float = 300.0
    max_pending: int = 1 << 20
    shutdown_timeout: float = 5.0
    log_format: str = "text"
    log_level: str = "info"
    workers: int = 1


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
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


def _seconds(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be a finite number >= 0")
    return value


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return convert


def _host(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("host must not be empty")
    return value


# field name -> (flag, environment variable, help); parse_config gives each its converter
_SETTINGS: dict[str, tuple[str, str, str]] = {
    "host": ("--host", "ECHO_HOST", "address to bind (default 0.0.0.0)"),
    "port": ("--port", "ECHO_PORT", "TCP port, 0 = ephemeral (default 8899)"),
    "framing": ("--framing", "ECHO_FRAMING", "line (default) or raw"),
    "max_line": ("--max-line", "ECHO_MAX_LINE", "longest request in bytes"),
    "max_connections": (
        "--max-connections",
        "ECHO_MAX_CONNECTIONS",
        "connections served at once; more are refused",
    ),
    "backlog": (
        "--backlog",
        "ECHO_BACKLOG",
        "connections the kernel queues until accepted (capped by net.core.somaxconn)",
    ),
    "idle_timeout": (
        "--idle-timeout",
        "ECHO_IDLE_TIMEOUT",
        "close a connection silent this long, 0 = never",
    ),
    "max_pending": (
        "--max-pending",
        "ECHO_MAX_PENDING",
        "unsent reply bytes per connection before reading pauses",
    ),
    "shutdown_timeout": (
        "--shutdown-timeout",
        "ECHO_SHUTDOWN_TIMEOUT",
        "seconds to drain on SIGTERM before aborting",
    ),
    "log_format": ("--log-format", "ECHO_LOG_FORMAT", "text or json"),
    "log_level": ("--log-level", "ECHO_LOG_LEVEL", "info or debug"),
    "workers": (
        "--workers",
        "ECHO_WORKERS",
        "processes sharing the port with SO_REUSEPORT, each with its own event loop",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse exits on its own errors; raising keeps parse_config testable and pure."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser(prog: str = "echo_server") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="TCP echo server: replies [ctime] + each request.")
    defaults = ServerConfig()
    for name, (flag, env, help_text) in _SETTINGS.items():
        parser.add_argument(
            flag,
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{help_text}; env {env}; default {getattr(defaults, name)}",
        )
    return parser


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> ServerConfig:
    """Flags over environment over defaults; ConfigError on anything invalid.

    An empty environment variable counts as unset, as Compose's ``${VAR:-}`` produces.
    Fields are read one by one in _SETTINGS order, so the first bad setting is the one
    reported, and each converter's result type is checked against its field's.
    """
    args = build_parser().parse_args(list(argv))

    def setting(name: str, convert: Callable[[str], T], default: T) -> T:
        flag, env_name, _help = _SETTINGS[name]
        raw: str | None = getattr(args, name)
        source = f"argument {flag}"
        if raw is None:
            raw = env.get(env_name) or None
            source = f"environment variable {env_name}"
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    defaults = ServerConfig()
    return ServerConfig(
        host=setting("host", _host, defaults.host),
        port=setting("port", _int_in(0, 65535), defaults.port),
        framing=setting("framing", _choice(FRAMINGS), defaults.framing),
        max_line=setting("max_line", _int_in(1), defaults.max_line),
        max_connections=setting("max_connections", _int_in(1), defaults.max_connections),
        backlog=setting("backlog", _int_in(1, 1 << 20), defaults.backlog),
        idle_timeout=setting("idle_timeout", _seconds, defaults.idle_timeout),
        max_pending=setting("max_pending", _int_in(1), defaults.max_pending),
        shutdown_timeout=setting("shutdown_timeout", _seconds, defaults.shutdown_timeout),
        log_format=setting("log_format", _choice(LOG_FORMATS), defaults.log_format),
        log_level=setting("log_level", _choice(LOG_LEVELS), defaults.log_level),
        workers=setting("workers", _int_in(1, MAX_WORKERS), defaults.workers),
    )


def exit_on_error(parser: argparse.ArgumentParser, error: ConfigError) -> NoReturn:
    """Report like argparse does (usage, then prog: error: ...) and exit 2."""
    argparse.ArgumentParser.error(parser, str(error))
