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
from typing import NoReturn, TypeVar

from .workload import min_size, payload_id

DEFAULT_PORT = 8899
MAX_CONNECTIONS = 65535
"""Each connection to the one server address takes a local port; Linux's default ephemeral
range (32768-60999) has 28,232, and past it a connect fails with EADDRNOTAVAIL (exit 3)."""
FRAMINGS = ("line", "raw")
KEEPALIVE_PROBES = 5
"""A connection whose peer vanished without a word (its RST lost in a partition, say) is
silent for ever once the client waits for a reply with nothing left to send: no segment of
its own is unacknowledged, so TCP has nothing to retransmit and never learns. Keepalive
probes ask; the peer's kernel answers with an RST, or after this many unanswered probes the
connection is declared dead. Either way the client reconnects and resends."""

T = TypeVar("T")


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
    connections: int = 1
    client_id: str = field(default_factory=socket.gethostname)
    timeout: float = 120.0
    connect_timeout: float = 30.0
    max_reconnects: int = 20
    keepalive: int = 2

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


# dest -> (flag, env, help); parse_config gives each its converter
_SETTINGS: dict[str, tuple[str, str, str]] = {
    "host": ("--host", "ECHO_HOST", "server host name or address"),
    "port": ("--port", "ECHO_PORT", "server TCP port"),
    "framing": ("--framing", "ECHO_FRAMING", "line (default) or raw (the seed's)"),
    "count": ("--count", "ECHO_COUNT", "batch mode: send this many messages"),
    "size": ("--size", "ECHO_SIZE", "bytes per request, newline included"),
    "rate": ("--rate", "ECHO_RATE", "messages per second (default: unpaced)"),
    "pipeline": ("--pipeline", "ECHO_PIPELINE", "requests in flight at most, per connection"),
    "connections": ("--connections", "ECHO_CONNECTIONS",
                    "batch mode: connections at once, each with its own seqs, pipeline and rate"),
    "client_id": ("--id", "ECHO_CLIENT_ID", "client id (default: host name)"),
    "timeout": ("--timeout", "ECHO_TIMEOUT", "overall deadline, seconds"),
    "connect_timeout": ("--connect-timeout", "ECHO_CONNECT_TIMEOUT",
                        "seconds to keep retrying a connection"),
    "max_reconnects": ("--max-reconnects", "ECHO_MAX_RECONNECTS",
                       "reconnections allowed in one batch run"),
    "keepalive": ("--keepalive", "ECHO_KEEPALIVE",
                  "batch mode: seconds a connection may be silent before TCP probes it "
                  f"(one probe a second; {KEEPALIVE_PROBES} unanswered: it is dead)"),
}  # fmt: skip


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
    for dest, (flag, env, text) in _SETTINGS.items():
        default = getattr(defaults, dest)
        shown = f"; default {default}" if default not in (None, "") else ""
        parser.add_argument(flag, dest=dest, metavar=dest.upper(), help=f"{text}; env {env}{shown}")
    return parser


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> ClientConfig:
    """Flags over environment over defaults; ConfigError names the culprit.

    Fields are read one by one in _SETTINGS order, so the first bad setting is the one
    reported, and each converter's result type is checked against its field's.
    """
    args = _parser().parse_args(list(argv))

    def setting(dest: str, convert: Callable[[str], T], default: T) -> T:
        flag, env_name, _ = _SETTINGS[dest]
        raw: str | None = getattr(args, dest)
        source = flag
        if raw is None and env.get(env_name, "").strip():
            raw, source = env[env_name], env_name
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None

    defaults = ClientConfig(client_id="")  # the host name is looked up only if no id is given
    config = ClientConfig(
        host=setting("host", _host, defaults.host),
        port=setting("port", _int(1, 65535), defaults.port),
        framing=setting("framing", _framing, defaults.framing),
        count=setting("count", _int(1), defaults.count),
        size=setting("size", _int(1), defaults.size),
        rate=setting("rate", _positive_float, defaults.rate),
        pipeline=setting("pipeline", _int(1), defaults.pipeline),
        connections=setting("connections", _int(1, MAX_CONNECTIONS), defaults.connections),
        client_id=setting("client_id", _client_id, "") or socket.gethostname(),
        timeout=setting("timeout", _positive_float, defaults.timeout),
        connect_timeout=setting("connect_timeout", _positive_float, defaults.connect_timeout),
        max_reconnects=setting("max_reconnects", _int(0), defaults.max_reconnects),
        keepalive=setting("keepalive", _int(1, 3600), defaults.keepalive),
    )
    _check_combination(config)
    return config


def _check_combination(config: ClientConfig) -> None:
    if config.count is None:
        if config.connections > 1:
            raise ConfigError("--connections > 1 needs batch mode (--count)")
        return
    longest = payload_id(config.client_id, config.connections - 1, config.connections)
    needed = min_size(longest, config.count)
    if config.size < needed:
        raise ConfigError(
            f"--size {config.size} is too small: requests of {longest!r} "
            f"need at least {needed} bytes for the '<id> <seq> ' header and the newline"
        )
    if config.framing == "raw" and config.pipeline > 1:
        raise ConfigError(
            "--pipeline > 1 needs line framing: raw framing answers whatever one read "
            "returned, so pipelined requests merge into one reply"
        )
    if config.framing == "raw" and config.size > 1024:
        raise ConfigError("--size > 1024 needs line framing: raw framing splits reads at 1024")
