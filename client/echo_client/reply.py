"""Reply parsing and checking, pure: bytes in, verdicts out.

The server's reply is ``b"[" + time.ctime() + b"] " + request``. The stamp is checked
strictly (real weekday for the date, space-padded day, fixed width) so that a server that
formats time differently, e.g. under another locale, is caught here and not by a user.
``ReplyChecker`` holds the only state: what was sent and not yet answered, in order, which is
exactly what a reconnect must resend.
"""

from __future__ import annotations

import datetime
import re
from collections import deque
from dataclasses import dataclass
from typing import Final

from .workload import PayloadError, parse_payload

DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
STAMP_LEN: Final = 24
"""len(time.ctime()) for years 1000-9999: the prefix is b"[" + 24 bytes + b"] "."""
PREFIX_LEN: Final = STAMP_LEN + 3

_STAMP_RE: Final = re.compile(
    rb"(?P<wday>[A-Z][a-z]{2}) (?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) "
    rb"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d) (?P<year>\d{4})"
)

OK: Final = None
MALFORMED: Final = "malformed"
OUT_OF_ORDER: Final = "out_of_order"
MISSING: Final = "missing"
DUPLICATE: Final = "duplicate"


class MalformedReply(ValueError):
    """A reply without the protocol's shape; ``reason`` is meant for a human."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_stamp(stamp: bytes) -> datetime.datetime:
    """The stamp as a naive local time; MalformedReply unless it is exactly what ctime prints."""
    match = _STAMP_RE.fullmatch(stamp)
    if match is None:
        raise MalformedReply(f"stamp {stamp!r} is not in ctime format")
    fields = {k: v.decode("ascii") for k, v in match.groupdict().items()}
    if fields["mon"] not in MONTHS:
        raise MalformedReply(f"unknown month in stamp {stamp!r}")
    if fields["day"].startswith("0"):
        raise MalformedReply(f"day must be space-padded in stamp {stamp!r}")
    try:
        when = datetime.datetime(
            int(fields["year"]), MONTHS.index(fields["mon"]) + 1, int(fields["day"]),
            int(fields["h"]), int(fields["m"]), int(fields["s"]),
        )  # fmt: skip
    except ValueError as error:
        raise MalformedReply(f"impossible date in stamp {stamp!r}: {error}") from None
    if DAYS[when.weekday()] != fields["wday"]:
        raise MalformedReply(f"wrong weekday in stamp {stamp!r}")
    return when


def parse_reply(reply: bytes) -> tuple[str, bytes]:
    """Split a reply into (stamp text, echoed bytes)."""
    if reply.startswith(b"ERROR "):
        line = reply.rstrip(b"\r\n")
        raise MalformedReply(f"server error {line!r}")
    if not reply.startswith(b"["):
        raise MalformedReply(f"missing '[' at the start of {reply[:40]!r}")
    if len(reply) < PREFIX_LEN or reply[STAMP_LEN + 1 : PREFIX_LEN] != b"] ":
        raise MalformedReply(f"missing '] ' after a {STAMP_LEN}-char stamp in {reply[:40]!r}")
    stamp = reply[1 : STAMP_LEN + 1]
    parse_stamp(stamp)
    return stamp.decode("ascii"), reply[PREFIX_LEN:]


def check_reply(request: bytes, reply: bytes) -> str | None:
    """Why ``reply`` is not a correct answer to ``request``, or None if it is."""
    try:
        _, echoed = parse_reply(reply)
    except MalformedReply as error:
        return error.reason
    if echoed != request:
        return f"echo differs: sent {request[:60]!r}, got back {echoed[:60]!r}"
    return None


@dataclass(frozen=True)
class Verdict:
    """What one reply means: which request it answers (if any), and what is wrong with it.

    ``consumed`` says whether the request counts as answered: an out-of-order reply still
    answers its request (it arrived, just late or early), a server ERROR line answers none.
    """

    seq: int | None
    request: bytes | None
    kind: str | None
    expected: str = ""
    got: str = ""
    consumed: bool = True

    @property
    def ok(self) -> bool:
        return self.kind is None


class ReplyChecker:
    """Matches replies to requests under FIFO order, across reconnects.

    Unanswered requests stay queued in send order; after a reconnect the session resends
    them in that order, so the head of the queue is always the reply expected next, whichever
    connection it comes on.
    """

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self._queue: deque[tuple[int, bytes]] = deque()
        self._answered: set[int] = set()

    def sent(self, seq: int, request: bytes) -> None:
        self._queue.append((seq, request))

    @property
    def unanswered(self) -> list[tuple[int, bytes]]:
        return list(self._queue)

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    @property
    def answered(self) -> int:
        return len(self._answered)

    def missing(self, count: int) -> list[int]:
        return [seq for seq in range(count) if seq not in self._answered]

    def check(self, reply: bytes) -> Verdict:
        got = repr(reply)
        try:
            _, echoed = parse_reply(reply)
        except MalformedReply as error:
            return self._malformed_head(reply, error.reason)
        try:
            client_id, seq = parse_payload(echoed)
        except PayloadError as error:
            return self._malformed_head(reply, str(error))
        if client_id == self.client_id and seq in self._answered:
            return Verdict(seq, None, DUPLICATE, "one reply", got, consumed=False)
        if not self._queue:
            return Verdict(None, None, MALFORMED, "no reply (nothing outstanding)", got, False)
        head_seq, head_request = self._queue[0]
        if client_id == self.client_id and seq == head_seq:
            self._take(0)
            if echoed == head_request:
                return Verdict(seq, head_request, OK)
            return Verdict(seq, head_request, MALFORMED, _expected(head_request), got)
        index = self._index(seq) if client_id == self.client_id else None
        if index is None:
            return self._malformed_head(reply, f"echo of a message never sent: {echoed[:40]!r}")
        request = self._take(index)
        return Verdict(seq, request, OUT_OF_ORDER, f"reply to seq {head_seq}", got)

    def _malformed_head(self, reply: bytes, reason: str) -> Verdict:
        """A reply that names no request answers the oldest one, the one FIFO says is due.

        A server ERROR line is the exception: it answers nothing, the connection usually
        closes next, and the request is resent.
        """
        got = f"{reply!r} ({reason})"
        if not self._queue:
            return Verdict(None, None, MALFORMED, "no reply (nothing outstanding)", got, False)
        seq, request = self._queue[0]
        if reply.startswith(b"ERROR "):
            return Verdict(seq, request, MALFORMED, _expected(request), got, consumed=False)
        self._take(0)
        return Verdict(seq, request, MALFORMED, _expected(request), got)

    def _index(self, seq: int) -> int | None:
        for index, (queued, _) in enumerate(self._queue):
            if queued == seq:
                return index
        return None

    def _take(self, index: int) -> bytes:
        seq, request = self._queue[index]
        del self._queue[index]
        self._answered.add(seq)
        return request


def _expected(request: bytes) -> str:
    return repr(b"[<ctime>] " + request)
