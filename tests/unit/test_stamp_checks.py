"""The client's reply check and the harness's record check agree, reply for reply.

The client judges the bytes it read (``echo_client.reply.check_reply``); the harness judges the
record the client wrote of them (``harness.checks.check_format`` on ``records.text(bytes)``).
Both are fed the same replies here, as they meet them in a run, and must give the same verdict:
every bad reply rejected by both, every good one accepted by both.
"""

from __future__ import annotations

import time

import pytest
from echo_client.records import Exchange, text
from echo_client.reply import MalformedReply, check_reply, parse_reply
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checks import Violation, check_format, parse_stamp

REQUEST = b"c0 00000003 xx\n"
GOOD_STAMP = b"Wed Dec  2 07:00:00 2026"  # a Wednesday; ctime pads a one-digit day with a space


def stamped(stamp: bytes, request: bytes = REQUEST) -> bytes:
    return b"[" + stamp + b"] " + request


BAD = {
    "wrong weekday": stamped(b"Thu Dec  2 07:00:00 2026"),
    "weekday in lower case": stamped(b"wed Dec  2 07:00:00 2026"),
    "weekday and month in lower case": stamped(b"wed dec  2 07:00:00 2026"),
    "zero-padded day": stamped(b"Wed Dec 02 07:00:00 2026"),
    "unknown month": stamped(b"Wed Dex  2 07:00:00 2026"),
    "day out of range": stamped(b"Tue Dec 32 07:00:00 2026"),
    "day out of range for the month": stamped(b"Tue Nov 31 07:00:00 2026"),
    "29 February of a common year": stamped(b"Sun Feb 29 07:00:00 2026"),
    "hour 25": stamped(b"Wed Dec  2 25:00:00 2026"),
    "minute 60": stamped(b"Wed Dec  2 07:60:00 2026"),
    "second 60": stamped(b"Wed Dec  2 07:00:60 2026"),
    "no brackets": GOOD_STAMP + b" " + REQUEST,
    "no opening bracket": GOOD_STAMP + b"] " + REQUEST,
    "no closing bracket": b"[" + GOOD_STAMP + b" " + REQUEST,
    "no space after the bracket": b"[" + GOOD_STAMP + b"]" + REQUEST,
    "extra space in the stamp": stamped(b"Wed Dec  2  07:00:00 2026"),
    "extra space after the weekday": stamped(b"Wed  Dec  2 07:00:00 2026"),
    "tab for a space": stamped(b"Wed Dec \t2 07:00:00 2026"),
    "no pad at all": stamped(b"Wed Dec 2 07:00:00 2026"),
    # Arabic-Indic and fullwidth digits: str's \d and int() take them, ctime never prints them
    "non-ASCII digit in the hour": stamped("Wed Dec  2 0\u0667:00:00 2026".encode()),
    "non-ASCII digits in the day": stamped("Wed Dec 1\uff12 07:00:00 2026".encode()),
    "non-ASCII year": stamped("Wed Dec  2 07:00:00 \u0662\u0660\u0662\u0666".encode()),
    "undecodable byte in the stamp": stamped(b"Wed Dec  2 07:00:0\xff 2026"),
    "truncated year": stamped(b"Wed Dec  2 07:00:00 202"),
    "truncated time": stamped(b"Wed Dec  2 07:00 2026"),
    "truncated before the bracket": b"[" + GOOD_STAMP,
    "only a bracket": b"[",
    "empty": b"",
    "five-digit year": stamped(b"Wed Dec  2 07:00:00 20260"),
    "ISO 8601 stamp": stamped(b"2026-12-02T07:00:00.000Z"),
    "server error line": b"ERROR line too long (limit 10 bytes)\n",
    "wrong echo": stamped(GOOD_STAMP, b"c0 00000003 xy\n"),
    "echo without its newline": stamped(GOOD_STAMP, REQUEST.rstrip(b"\n")),
    "echo with an extra space": b"[" + GOOD_STAMP + b"]  " + REQUEST,
    "no echo": stamped(GOOD_STAMP, b""),
}

GOOD = {
    "one-digit day, space-padded": stamped(GOOD_STAMP),
    "two-digit day": stamped(b"Wed Nov 25 02:00:05 2026"),
    "the epoch": stamped(b"Thu Jan  1 00:00:00 1970"),
    "29 February of a leap year": stamped(b"Sat Feb 29 23:59:59 2020"),
    "odd bytes echoed exactly": stamped(GOOD_STAMP, b"\x00\xff binary \xfe\r\n"),
    "non-ASCII echoed exactly": stamped(GOOD_STAMP, "caf\u00e9 \u0667\n".encode()),
}


def client_verdict(request: bytes, reply: bytes) -> str | None:
    return check_reply(request, reply)


def harness_verdict(request: bytes, reply: bytes) -> Violation | None:
    """The harness's check on the record the client writes of this exchange."""
    record = Exchange(
        client="c0", conn=0, seq=3, sent=0.0, received=0.0, rtt_ms=0.1,
        request=text(request), reply=text(reply),
    )  # fmt: skip
    return check_format(record)


def prefix_ok(reply: bytes) -> bool:
    try:
        parse_reply(reply)
    except MalformedReply:
        return False
    return True


@pytest.mark.parametrize("reply", BAD.values(), ids=BAD.keys())
def test_both_reject_every_bad_reply(reply: bytes) -> None:
    client = client_verdict(REQUEST, reply)
    harness = harness_verdict(REQUEST, reply)
    assert client is not None, "the client accepted it"
    assert harness is not None, f"the harness accepted what the client rejects: {client}"
    # the same kind of fault: a bad prefix is "format" to the harness, a bad echo is "echo"
    assert harness.check == ("format" if not prefix_ok(reply) else "echo"), (harness, client)
    if harness.check == "format":
        assert parse_stamp(text(reply)) is None


@pytest.mark.parametrize("reply", GOOD.values(), ids=GOOD.keys())
def test_both_accept_every_good_reply(reply: bytes) -> None:
    request = reply[reply.index(b"] ") + 2 :]
    assert client_verdict(request, reply) is None
    assert harness_verdict(request, reply) is None
    assert parse_stamp(text(reply)) is not None


def test_both_accept_real_ctime_on_every_day_of_a_year() -> None:
    start = time.mktime((2026, 1, 1, 12, 0, 0, 0, 0, -1))
    for day in range(366):
        when = start + day * 86400
        reply = stamped(time.ctime(when).encode())
        assert client_verdict(REQUEST, reply) is None, reply
        assert harness_verdict(REQUEST, reply) is None, reply
        assert parse_stamp(text(reply)) == float(int(when))


# A valid reply, edited in its first bytes (the prefix): the verdicts must stay the same.
edits = st.lists(
    st.tuples(
        st.sampled_from(["replace", "insert", "delete"]),
        st.integers(min_value=0, max_value=27),
        st.sampled_from(b" []:0123456789ADFJMNOSTWadehinortuvy\t\xc2\xa0\xd9\xa7\xff"),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=400, deadline=None)
@given(edits)
def test_client_and_harness_agree_on_edited_replies(changes: list[tuple[str, int, int]]) -> None:
    reply = bytearray(stamped(GOOD_STAMP))
    for kind, index, byte in changes:
        if kind == "replace":
            reply[index] = byte
        elif kind == "insert":
            reply.insert(index, byte)
        else:
            del reply[index]
    client = client_verdict(REQUEST, bytes(reply))
    harness = harness_verdict(REQUEST, bytes(reply))
    assert (client is None) == (harness is None), (bytes(reply), client, harness)
