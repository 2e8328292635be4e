"""The echo protocol as pure functions over bytes: no sockets, no event loop, no clock reads
unless a clock is passed in.

Keeping framing and reply formatting free of I/O (as h11 does for HTTP) lets every edge case,
such as a line split across any number of segments, be tested exhaustively without a network,
and lets the healthcheck and the tests check replies with the same code that makes them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

DEFAULT_PORT: Final = 8899
FRAMINGS: Final = ("line", "raw")
RAW_CHUNK: Final = 1024
"""The seed server answered each recv(1024); raw framing keeps that granularity."""

STAMP_LEN: Final = len(b"[Thu Jan  1 00:00:00 1970] ")
"""ctime() is fixed width for years 1000-9999, so a reply's prefix length is known."""

REPLY_RE: Final = re.compile(
    rb"\A\[(?P<stamp>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\] (?P<echoed>.*)\Z",
    re.DOTALL,
)


class LineTooLong(Exception):
    """Raised by LineFramer when a request exceeds the limit.

    It carries the complete requests that preceded the offending line in the same feed, so a
    client still gets answers to everything it sent correctly before the error.
    """

    def __init__(self, limit: int, requests: list[bytes]) -> None:
        super().__init__(f"line too long (limit {limit} bytes)")
        self.limit = limit
        self.requests = requests


class ReplyError(ValueError):
    """A reply that does not have the protocol's shape; the message is the reason."""


class Framer(Protocol):
    """What the connection needs from a framing, so line and raw share one code path."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def replies(self, data: bytes, stamp: bytes) -> tuple[bytes, int]: ...

    @property
    def buffered(self) -> int: ...


class LineFramer:
    """Splits a byte stream into newline-terminated requests, whatever the segmentation.

    Only the incomplete tail is kept between feeds, and it is dropped as soon as it exceeds
    ``max_line``: a client sending 10 MiB without a newline costs at most one read's worth of
    memory beyond the limit, never the whole stream.
    """

    __slots__ = ("_buffer", "max_line")

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        self.max_line = max_line
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete request, reported at EOF because they get no reply."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Return every request completed by ``data``, each ending with b"\\n"."""
        end = data.rfind(b"\n")
        if end < 0:
            self._buffer += data
            if len(self._buffer) > self.max_line:
                self._overflow([])
            return []
        if self._buffer:
            self._buffer += data[: end + 1]
            block = bytes(self._buffer)
            self._buffer.clear()
        else:
            block = data if end + 1 == len(data) else data[: end + 1]
        pieces = block.split(b"\n")
        pieces.pop()  # the empty string after the final newline
        requests = [block] if len(pieces) == 1 else [piece + b"\n" for piece in pieces]
        # A line longer than the limit needs a block longer than the limit: skip the scan
        # in the common case of short batches.
        if len(block) > self.max_line + 1 and max(map(len, pieces)) > self.max_line:
            first_bad = next(i for i, piece in enumerate(pieces) if len(piece) > self.max_line)
            self._overflow(requests[:first_bad])
        tail = len(data) - end - 1
        if tail:
            if tail > self.max_line:
                self._overflow(requests)
            self._buffer += data[end + 1 :]
        return requests

    def replies(self, data: bytes, stamp: bytes) -> tuple[bytes, int]:
        """``format_replies(self.feed(data), stamp)`` and the number of requests, the same
        bytes and the same errors.

        The common read is whole lines with nothing buffered and no line over the limit:
        then the replies are ``data`` with the stamp put before each line by one C-level
        replace, not one bytes object per request (the split and join were most of the
        server's own CPU per pipelined request).
        """
        if not self._buffer and data.endswith(b"\n") and len(data) <= self.max_line + 1:
            count = data.count(b"\n")
            return stamp + data.replace(b"\n", b"\n" + stamp, count - 1), count
        requests = self.feed(data)
        return format_replies(requests, stamp), len(requests)

    def _overflow(self, requests: list[bytes]) -> None:
        self._buffer = bytearray()  # release the memory, not just the length
        raise LineTooLong(self.max_line, requests)


class RawFramer:
    """The seed's behaviour: each read is a request, cut to the seed's 1024-byte recv size.

    asyncio may hand over up to 256 KiB at once; cutting keeps replies identical to the
    seed's whatever the event loop's read size.
    """

    __slots__ = ()

    @property
    def buffered(self) -> int:
        return 0

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) <= RAW_CHUNK:
            return [data] if data else []
        return [data[i : i + RAW_CHUNK] for i in range(0, len(data), RAW_CHUNK)]

    def replies(self, data: bytes, stamp: bytes) -> tuple[bytes, int]:
        requests = self.feed(data)
        return format_replies(requests, stamp), len(requests)


def make_framer(framing: str, max_line: int) -> Framer:
    """One place that maps the configured name to a framer, so names cannot drift."""
    if framing == "line":
        return LineFramer(max_line)
    if framing == "raw":
        return RawFramer()
    raise ValueError(f"unknown framing {framing!r} (expected one of {', '.join(FRAMINGS)})")


def ctime_stamp(now: float) -> bytes:
    """The seed's reply prefix, b"[" + time.ctime() + b"] "."""
    return b"[" + time.ctime(now).encode("ascii") + b"] "


class StampCache:
    """ctime() formatting costs more than echoing a short line; it changes once a second.

    The clock is injectable so the cache can be tested without sleeping.
    """

    __slots__ = ("_clock", "_second", "_stamp")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._stamp = b""

    def __call__(self) -> bytes:
        second = int(self._clock())
        if second != self._second:
            self._second = second
            self._stamp = ctime_stamp(second)
        return self._stamp


def format_reply(request: bytes, stamp: bytes) -> bytes:
    return stamp + request


def format_replies(requests: Sequence[bytes], stamp: bytes) -> bytes:
    """All replies of one read as one buffer, so the transport gets a single write.

    stamp + stamp.join(requests) is stamp+r1+stamp+r2+...: the concatenated replies, built by
    one C-level join instead of one concatenation per request.
    """
    return stamp + stamp.join(requests) if requests else b""


def error_line(reason: str) -> bytes:
    """Errors are a line of their own so a line client can read them like any reply."""
    return b"ERROR " + reason.encode("utf-8", "replace") + b"\n"


def line_too_long(limit: int) -> bytes:
    return error_line(f"line too long (limit {limit} bytes)")


def parse_reply(reply: bytes) -> tuple[bytes, bytes]:
    """Split a reply into (ctime text, echoed bytes); ReplyError says what is wrong."""
    match = REPLY_RE.match(reply)
    if match is None:
        if reply.startswith(b"ERROR "):
            raise ReplyError(f"server answered {reply.rstrip().decode('utf-8', 'replace')!r}")
        raise ReplyError(f"reply lacks the [ctime] prefix: {reply[: STAMP_LEN + 16]!r}")
    stamp = match.group("stamp")
    try:
        time.strptime(stamp.decode("ascii"), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        raise ReplyError(f"reply stamp is not a ctime: {stamp!r}") from None
    return stamp, match.group("echoed")


def check_reply(reply: bytes, sent: bytes) -> None:
    """Raise ReplyError unless ``reply`` is the protocol's answer to ``sent``."""
    _, echoed = parse_reply(reply)
    if echoed != sent:
        raise ReplyError(f"echo mismatch: sent {sent!r}, got back {echoed!r}")
