"""What a batch client sends: payloads that name their sender and sequence number.

Every request carries ``"<client> <seq> "`` so that any reply, even one that arrives on the
wrong connection, out of order or twice, can be traced back to the exact message it answers
without trusting the client's own bookkeeping. Pure functions: no sockets, no clock reads.
"""

from __future__ import annotations

import string
from typing import Final

SEQ_DIGITS: Final = 8
"""Zero-padded so that payloads of one run sort and align; longer seqs still parse."""

FILLER: Final = (string.ascii_letters + string.digits).encode("ascii")
"""A varying filler, not one repeated byte, so that a shifted or truncated echo is noticed."""


class PayloadError(ValueError):
    """Bytes that are not one of our payloads; the message says why."""


def header(client_id: str, seq: int) -> bytes:
    return f"{client_id} {seq:0{SEQ_DIGITS}d} ".encode()


def payload_id(client_id: str, connection: int, connections: int) -> str:
    """The id in one connection's payloads: the client's own when it has one connection, else
    ``<client>/<connection>``, so that a reply which comes back on another connection of the
    same client is caught as an echo of a message this connection never sent."""
    return client_id if connections == 1 else f"{client_id}/{connection}"


def min_size(client_id: str, count: int) -> int:
    """The smallest --size that fits the header of every seq below ``count`` plus b"\\n"."""
    return len(header(client_id, max(count - 1, 0))) + 1


def make_payload(client_id: str, seq: int, size: int) -> bytes:
    """Exactly ``size`` bytes ending in b"\\n", so --size is what goes on the wire."""
    head = header(client_id, seq)
    fill = size - len(head) - 1
    if fill < 0:
        raise PayloadError(
            f"size {size} is too small for the header {head!r} (need at least {len(head) + 1})"
        )
    repeats = fill // len(FILLER) + 1
    return head + (FILLER * repeats)[:fill] + b"\n"


def parse_payload(payload: bytes) -> tuple[str, int]:
    """Recover (client id, seq) from a payload or an echo of one."""
    parts = payload.split(b" ", 2)
    if len(parts) < 3:
        raise PayloadError(f"no '<client> <seq> ' header in {payload[:40]!r}")
    raw_id, raw_seq = parts[0], parts[1]
    if not raw_id or not raw_seq.isdigit():
        raise PayloadError(f"bad header in {payload[:40]!r}")
    try:
        client_id = raw_id.decode()
    except UnicodeDecodeError:
        raise PayloadError(f"client id is not UTF-8 in {payload[:40]!r}") from None
    return client_id, int(raw_seq)


def send_offset(seq: int, rate: float | None, lane: float = 0.0) -> float:
    """Seconds after the start at which ``seq`` is due: a fixed schedule, not sleeps.

    Scheduling against the start time instead of sleeping 1/rate after each send keeps the
    average rate exact however long each send takes; None means as fast as the window allows.
    ``lane`` (0 <= lane < 1) shifts a connection by that fraction of the interval: connection
    k of K takes k/K, so a client's K connections send evenly spread, not all in one burst.
    """
    if rate is None:
        return 0.0
    return (seq + lane) / rate
