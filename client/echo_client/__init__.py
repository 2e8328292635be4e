"""echolab's echo client: interactive like the seed, or a self-checking batch load generator.

The protocol logic (payloads, reply checks, records) is pure and lives in workload.py,
reply.py and records.py; sockets appear only in session.py and interactive.py. The harness
reads a client's stdout back with ``parse_records``.
"""

from __future__ import annotations

from .config import ClientConfig, ConfigError, parse_config
from .records import (
    ConnectionSummary,
    Exchange,
    ParsedRecords,
    Problem,
    RecordError,
    Summary,
    parse_records,
)
from .reply import MalformedReply, ReplyChecker, Verdict, check_reply, parse_reply
from .workload import PayloadError, make_payload, parse_payload

__all__ = [
    "ClientConfig",
    "ConfigError",
    "ConnectionSummary",
    "Exchange",
    "MalformedReply",
    "ParsedRecords",
    "PayloadError",
    "Problem",
    "RecordError",
    "ReplyChecker",
    "Summary",
    "Verdict",
    "check_reply",
    "make_payload",
    "parse_config",
    "parse_payload",
    "parse_records",
    "parse_reply",
]
