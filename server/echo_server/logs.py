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
from collections.abc import Callable, Mapping
from typing import TextIO

LEVELS = {"debug": 10, "info": 20}


def timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds, as 2026-11-25T02:00:05.123Z."""
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if not text or any(c in text for c in ' "=\\\n\t') or not text.isprintable():
        return json.dumps(text)
    return text


def format_text(ts: str, event: str, fields: Mapping[str, object]) -> str:
    parts = [ts, event]
    parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
    return " ".join(parts)


def format_json(ts: str, event: str, fields: Mapping[str, object]) -> str:
    return json.dumps({"ts": ts, "event": event, **fields}, default=str)


class EventLog:
    """A logger small enough to have no configuration beyond format and level."""

    def __init__(
        self,
        fmt: str = "text",
        level: str = "info",
        stream: TextIO | None = None,
        context: Mapping[str, object] | None = None,
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

    def event(self, event: str, level: str = "info", **fields: object) -> None:
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


Schedule = Callable[[float, Callable[[], None]], object]
"""How BurstLog asks to be called back later: loop.call_later in the server."""


class BurstLog:
    """The first of a burst of like events in full, then at most one summary per interval.

    A client-caused event (a refused connection, an idle timeout, an overlong line) is one
    line per connection: a flood of 2,000 connections would write 2,000 lines, turning the
    log into the attacker's amplifier and burying everything else. Events are grouped by
    (event, reason). The first of a group is logged as usual, then a window of ``interval``
    seconds opens; occurrences inside it are only counted, and when it ends one summary line
    with the same event and reason reports them (and opens the next window), or, if there
    were none, the group goes quiet and its next occurrence is logged in full again.

    Every line carries ``count`` (1 on a full line), so summing ``count`` over a group gives
    the exact number of occurrences, and ``flush()`` at shutdown leaves nothing uncounted.
    """

    def __init__(self, log: EventLog, schedule: Schedule, interval: float = 1.0) -> None:
        self._log = log
        self._schedule = schedule
        self.interval = interval
        self._held: dict[tuple[str, str], int] = {}  # open windows: occurrences held back

    def event(self, event: str, reason: str, **fields: object) -> None:
        key = (event, reason)
        if key in self._held:
            self._held[key] += 1
            return
        # level by position: then mypy knows **fields cannot be what sets it.
        self._log.event(event, "info", reason=reason, count=1, **fields)
        self._open(key)

    def _open(self, key: tuple[str, str]) -> None:
        self._held[key] = 0
        self._schedule(self.interval, lambda: self._window_ended(key))

    def _window_ended(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key, 0)
        if held:
            self._log.event(key[0], reason=key[1], count=held, interval=self.interval)
            self._open(key)

    def flush(self) -> None:
        """Report every count still held back (shutdown); pending callbacks find nothing."""
        held, self._held = self._held, {}
        for (event, reason), count in held.items():
            if count:
                self._log.event(event, reason=reason, count=count, interval=self.interval)
