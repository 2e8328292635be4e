"""One event per stdout line, flushed at once, as text for people or JSON for the harness.

Containers collect stdout, so there are no files and no handlers; flushing each line means
`docker logs` and a test reading the pipe see the event when it happens (the harness waits
for the "listening" event to learn the real port). Per-connection events sit at debug level
so a load test with thousands of connections does not turn into a logging benchmark.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20}


def timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds, as 2026-11-25T02:00:05.123Z."""
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if not text or any(c in text for c in ' "=\\\n\t') or not text.isprintable():
        return json.dumps(text)
    return text


def format_text(ts: str, event: str, fields: dict[str, Any]) -> str:
    parts = [ts, event]
    parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
    return " ".join(parts)


def format_json(ts: str, event: str, fields: dict[str, Any]) -> str:
    return json.dumps({"ts": ts, "event": event, **fields}, default=str)


class EventLog:
    """A logger small enough to have no configuration beyond format and level."""

    def __init__(
        self,
        fmt: str = "text",
        level: str = "info",
        stream: TextIO | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown log format {fmt!r}")
        self._format = format_json if fmt == "json" else format_text
        self._threshold = LEVELS[level]
        self._stream = stream
        self._context = dict(context or {})  # fields on every event, e.g. worker=1

    def enabled(self, level: str) -> bool:
        """Lets hot paths skip building fields for an event that will not be written."""
        return LEVELS[level] >= self._threshold

    def event(self, event: str, level: str = "info", **fields: Any) -> None:
        if LEVELS[level] < self._threshold:
            return
        stream = self._stream if self._stream is not None else sys.stdout
        if self._context:
            fields = {**fields, **self._context}
        line = self._format(timestamp(time.time()), event, fields)
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stdout must not take the server down with it
