"""echolab's TCP echo server: replies b"[" + ctime + b"] " + each request.

protocol holds the pure logic (framing, replies, stamps); connection, server and __main__
are the asyncio edges; healthcheck is the container's real-exchange probe.
"""

from .config import ConfigError, ServerConfig, parse_config
from .protocol import (
    DEFAULT_PORT,
    REPLY_RE,
    LineFramer,
    LineTooLong,
    RawFramer,
    ReplyError,
    StampCache,
    check_reply,
    ctime_stamp,
    error_line,
    format_replies,
    format_reply,
    make_framer,
    parse_reply,
)
from .server import EchoServer, serve

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PORT",
    "REPLY_RE",
    "ConfigError",
    "EchoServer",
    "LineFramer",
    "LineTooLong",
    "RawFramer",
    "ReplyError",
    "ServerConfig",
    "StampCache",
    "__version__",
    "check_reply",
    "ctime_stamp",
    "error_line",
    "format_replies",
    "format_reply",
    "make_framer",
    "parse_config",
    "parse_reply",
    "serve",
]
