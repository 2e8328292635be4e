"""End-to-end checks over clients' records: pure functions, no Docker, no sockets.

The client checks its own replies as it goes; these are the harness's second opinion,
computed from the records alone. What a well-formed reply is (the ``[ctime]`` stamp: real weekday
for the date, space-padded day, fixed width, ASCII) is defined once, by the client's pure
``echo_client.reply``: the harness applies those very rules to the recorded text, so it rejects
exactly what the client rejects. Ordering is checked per (client, connection): TCP orders bytes
within a connection, not across reconnects. A problem names the client, the message, what was
expected and what came.
A client with several ``--connections`` is checked per connection: each has its own seqs, so
completeness is per (client, connection) and order per (client, connection, conn); a violation
then names its connection.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from echo_client.reply import PREFIX_LEN, MalformedReply, parse_reply
from echo_client.reply import parse_stamp as parse_ctime


class ExchangeLike(Protocol):
    """Read-only members, so that frozen records (``echo_client.records.Exchange``) fit."""

    @property
    def client(self) -> str: ...
    @property
    def connection(self) -> int: ...
    @property
    def conn(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def request(self) -> str: ...
    @property
    def reply(self) -> str: ...


@dataclass(frozen=True)
class Violation:
    """A property of the run the harness found broken (the client's own findings are its
    ``Problem`` records, kept apart in ``ClientResult.reported``)."""

    client: str
    seq: int | None
    check: str
    expected: str
    got: str
    connection: int | None = field(default=None, kw_only=True)  # None: the client has one

    def __str__(self) -> str:
        where = f"client {self.client}"
        if self.connection is not None:
            where += f" connection {self.connection}"
        if self.seq is not None:
            where += f" message {self.seq}"
        return f"{where}: {self.check}: expected {self.expected}, got {self.got}"


def _wire(text: str) -> bytes:
    """A recorded text back as bytes. Records hold ``text(bytes)`` (UTF-8, undecodable bytes as
    ``\\xNN``): valid UTF-8 comes back byte for byte, and an undecodable byte comes back as a
    backslash, which no stamp, bracket or space accepts, so the verdict on the prefix is the one
    the client gave the original bytes."""
    return text.encode("utf-8", errors="surrogatepass")


def _malformed(reply: str) -> str | None:
    """Why ``reply`` has no well-formed ``[<ctime>] `` prefix (the client's reason), or None."""
    try:
        parse_reply(_wire(reply))
    except MalformedReply as error:
        return error.reason
    return None


def parse_stamp(reply: str) -> float | None:
    """Seconds since the epoch of a reply's ``[ctime]`` prefix, or None if the client's rules
    (``echo_client.reply.parse_reply``) reject it."""
    try:
        stamp, _ = parse_reply(_wire(reply))
    except MalformedReply:
        return None
    return time.mktime(parse_ctime(stamp.encode("ascii")).timetuple())


def check_format(exchange: ExchangeLike) -> Violation | None:
    """The reply must be ``[<ctime>] `` followed by the request, byte for byte."""
    reply, request = exchange.reply, exchange.request
    reason = _malformed(reply)
    if reason is not None:
        return Violation(
            exchange.client, exchange.seq, "format", "'[<ctime>] ' prefix",
            f"{reply[:40]!r} ({reason})",
        )  # fmt: skip
    echoed = reply[PREFIX_LEN:]  # the prefix is ASCII: as many characters as bytes
    if echoed != request:
        return Violation(exchange.client, exchange.seq, "echo", repr(request), repr(echoed))
    return None


def check_order(exchanges: Sequence[ExchangeLike]) -> list[Violation]:
    """Within each TCP connection, replies come in increasing seq and with non-decreasing
    stamps."""
    problems: list[Violation] = []
    last: dict[tuple[str, int, int], tuple[int, float | None]] = {}
    for exchange in exchanges:
        key = (exchange.client, exchange.connection, exchange.conn)
        stamp = parse_stamp(exchange.reply)
        if key in last:
            prev_seq, prev_stamp = last[key]
            if exchange.seq <= prev_seq:
                problems.append(
                    Violation(
                        exchange.client, exchange.seq, "order",
                        f"seq after {prev_seq} on connection {exchange.conn}", str(exchange.seq),
                    )
                )  # fmt: skip
            if stamp is not None and prev_stamp is not None and stamp < prev_stamp:
                problems.append(
                    Violation(
                        exchange.client, exchange.seq, "timestamp",
                        f"stamp >= {time.ctime(prev_stamp)}", time.ctime(stamp),
                    )
                )  # fmt: skip
        last[key] = (exchange.seq, stamp)
    return problems


def check_complete(client: str, exchanges: Iterable[ExchangeLike], count: int) -> list[Violation]:
    """Every seq in ``range(count)`` answered exactly once: nothing lost, nothing duplicated."""
    seen = Counter(exchange.seq for exchange in exchanges)
    problems = [
        Violation(client, seq, "missing", "one reply", "none")
        for seq in range(count)
        if seq not in seen
    ]
    problems += [
        Violation(client, seq, "duplicate", "one reply", f"{n} replies")
        for seq, n in sorted(seen.items())
        if n > 1
    ]
    problems += [
        Violation(client, seq, "unexpected", f"seq in 0..{count - 1}", str(seq))
        for seq in sorted(seen)
        if not 0 <= seq < count
    ]
    return problems


def check_client(
    client: str, exchanges: Sequence[ExchangeLike], count: int, connections: int = 1
) -> list[Violation]:
    """All checks for one client that was asked to send ``count`` messages on each of its
    ``connections``."""
    if connections == 1:
        return _check_connection(client, exchanges, count)
    by_connection: dict[int, list[ExchangeLike]] = defaultdict(list)
    for exchange in exchanges:
        by_connection[exchange.connection].append(exchange)
    expected = f"connections 0..{connections - 1}"
    problems = [
        Violation(client, None, "connection", expected, f"replies on connection {index}")
        for index in sorted(set(by_connection) - set(range(connections)))
    ]
    for index in range(connections):
        found = _check_connection(client, by_connection.get(index, []), count)
        problems += [replace(p, connection=index) for p in found]
    return problems


def _check_connection(
    client: str, exchanges: Sequence[ExchangeLike], count: int
) -> list[Violation]:
    problems = [p for p in map(check_format, exchanges) if p is not None]
    problems += check_order(exchanges)
    problems += check_complete(client, exchanges, count)
    return problems


class ClientResultLike(Protocol):
    client: str
    exit_code: int

    @property
    def exchanges(self) -> Sequence[ExchangeLike]: ...  # read-only, so a list of records fits


def check_run(
    results: Iterable[ClientResultLike], count: int, connections: int = 1
) -> list[Violation]:
    """All checks over a run: each client's records, and each client's own verdict (exit code)."""
    problems: list[Violation] = []
    for result in results:
        if result.exit_code != 0:
            problems.append(Violation(result.client, None, "exit code", "0", str(result.exit_code)))
        problems += check_client(result.client, result.exchanges, count, connections)
    return problems
