"""End-to-end checks over clients' records: pure functions, no Docker, no sockets.

The client checks its own replies as it goes; these are the harness's second, independent
opinion, computed from the records alone. Ordering is checked per (client, connection): TCP
orders bytes within a connection, not across reconnects. A problem names the client, the
message, what was expected and what came.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

_STAMP_FORMAT = "%a %b %d %H:%M:%S %Y"
_STAMP_LEN = 24  # len(time.ctime()) for years 1000-9999


class ExchangeLike(Protocol):
    client: str
    conn: int
    seq: int
    request: str
    reply: str


@dataclass(frozen=True)
class Problem:
    client: str
    seq: int | None
    check: str
    expected: str
    got: str

    def __str__(self) -> str:
        where = f"client {self.client}" + (f" message {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.check}: expected {self.expected}, got {self.got}"


def parse_stamp(reply: str) -> float | None:
    """Seconds since the epoch of a reply's ``[ctime]`` prefix, or None if it is not one."""
    if (
        len(reply) < _STAMP_LEN + 3
        or reply[0] != "["
        or reply[_STAMP_LEN + 1 : _STAMP_LEN + 3] != "] "
    ):
        return None
    try:
        return time.mktime(time.strptime(reply[1 : _STAMP_LEN + 1], _STAMP_FORMAT))
    except ValueError:
        return None


def check_format(exchange: ExchangeLike) -> Problem | None:
    """The reply must be ``[<ctime>] `` followed by the request, byte for byte."""
    reply, request = exchange.reply, exchange.request
    if parse_stamp(reply) is None:
        return Problem(
            exchange.client, exchange.seq, "format", "'[<ctime>] ' prefix", repr(reply[:40])
        )
    echoed = reply[_STAMP_LEN + 3 :]
    if echoed != request:
        return Problem(exchange.client, exchange.seq, "echo", repr(request), repr(echoed))
    return None


def check_order(exchanges: Sequence[ExchangeLike]) -> list[Problem]:
    """Within each connection, replies come in increasing seq and with non-decreasing stamps."""
    problems: list[Problem] = []
    last: dict[tuple[str, int], tuple[int, float | None]] = {}
    for exchange in exchanges:
        key = (exchange.client, exchange.conn)
        stamp = parse_stamp(exchange.reply)
        if key in last:
            prev_seq, prev_stamp = last[key]
            if exchange.seq <= prev_seq:
                problems.append(
                    Problem(
                        exchange.client, exchange.seq, "order",
                        f"seq after {prev_seq} on connection {exchange.conn}", str(exchange.seq),
                    )
                )  # fmt: skip
            if stamp is not None and prev_stamp is not None and stamp < prev_stamp:
                problems.append(
                    Problem(
                        exchange.client, exchange.seq, "timestamp",
                        f"stamp >= {time.ctime(prev_stamp)}", time.ctime(stamp),
                    )
                )  # fmt: skip
        last[key] = (exchange.seq, stamp)
    return problems


def check_complete(client: str, exchanges: Iterable[ExchangeLike], count: int) -> list[Problem]:
    """Every seq in ``range(count)`` answered exactly once: nothing lost, nothing duplicated."""
    seen = Counter(exchange.seq for exchange in exchanges)
    problems = [
        Problem(client, seq, "missing", "one reply", "none")
        for seq in range(count)
        if seq not in seen
    ]
    problems += [
        Problem(client, seq, "duplicate", "one reply", f"{n} replies")
        for seq, n in sorted(seen.items())
        if n > 1
    ]
    problems += [
        Problem(client, seq, "unexpected", f"seq in 0..{count - 1}", str(seq))
        for seq in sorted(seen)
        if not 0 <= seq < count
    ]
    return problems


def check_client(client: str, exchanges: Sequence[ExchangeLike], count: int) -> list[Problem]:
    """All checks for one client that was asked to send ``count`` messages."""
    problems = [p for p in map(check_format, exchanges) if p is not None]
    problems += check_order(exchanges)
    problems += check_complete(client, exchanges, count)
    return problems


class ClientResultLike(Protocol):
    client: str
    exit_code: int
    exchanges: Sequence[ExchangeLike]


def check_run(results: Iterable[ClientResultLike], count: int) -> list[Problem]:
    """All checks over a run: each client's records, and each client's own verdict (exit code)."""
    problems: list[Problem] = []
    for result in results:
        if result.exit_code != 0:
            problems.append(Problem(result.client, None, "exit code", "0", str(result.exit_code)))
        problems += check_client(result.client, result.exchanges, count)
    return problems
