"""Reply parsing and the FIFO checker: every verdict from bytes alone, no sockets."""

from __future__ import annotations

import time

import pytest
from echo_client.reply import (
    DUPLICATE,
    MALFORMED,
    OUT_OF_ORDER,
    MalformedReply,
    ReplyChecker,
    check_reply,
    parse_reply,
    parse_stamp,
)
from echo_client.workload import make_payload

STAMP = b"[Wed Nov 25 02:00:05 2026] "


def reply_to(request: bytes, stamp: bytes = STAMP) -> bytes:
    return stamp + request


@pytest.mark.parametrize(
    "stamp",
    [b"Wed Nov 25 02:00:05 2026", b"Thu Nov  5 02:00:05 2026", b"Thu Jan  1 00:00:00 1970",
     b"Sat Feb 29 23:59:59 2020"],
)  # fmt: skip
def test_valid_stamps_parse(stamp: bytes) -> None:
    assert parse_reply(b"[" + stamp + b"] hi\n") == (stamp.decode(), b"hi\n")


def test_real_ctime_parses_for_every_day_of_a_month() -> None:
    start = time.mktime((2026, 11, 1, 12, 0, 0, 0, 0, -1))
    for day in range(30):
        stamp = time.ctime(start + day * 86400).encode()
        parse_stamp(stamp)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"Wed Nov 25 02:00:05 2026] hi\n", "missing '\\['"),
        (b"[Wed Nov 25 02:00:05 2026]hi\n", "missing '\\] '"),
        (b"[Wed Nov 25 02:00:05 2026 hi\n", "missing '\\] '"),
        (b"[Wed Nov 05 02:00:05 2026] hi\n", "space-padded"),
        (b"[Thu Nov 25 02:00:05 2026] hi\n", "weekday"),
        (b"[Wed Foo 25 02:00:05 2026] hi\n", "month"),
        (b"[Wed Nov 31 02:00:05 2026] hi\n", "impossible date"),
        (b"[Wed Nov 25 25:00:05 2026] hi\n", "impossible date"),
        (b"[2026-11-25T02:00:05.000Z] hi\n", "ctime format"),
        (b"[mer. nov. 25 02:00:05 26] hi\n", "ctime format"),
        (b"[", "missing '\\] '"),
        (b"", "missing '\\['"),
        (b"ERROR line too long (limit 10 bytes)\n", "server error"),
    ],
)
def test_malformed_replies_say_why(reply: bytes, reason: str) -> None:
    with pytest.raises(MalformedReply, match=reason):
        parse_reply(reply)


def test_check_reply_accepts_an_exact_echo_of_any_bytes() -> None:
    request = b"\x00\xff binary \xfe\r\n"
    assert check_reply(request, reply_to(request)) is None


@pytest.mark.parametrize(
    "reply",
    [STAMP + b"hello\n", STAMP + b"hell\n", STAMP + b"hello\r\n\n", STAMP + b"Hello", b"hello\n"],
)
def test_check_reply_rejects_a_wrong_echo(reply: bytes) -> None:
    reason = check_reply(b"hello\r\n", reply)
    assert reason is not None


def sent(checker: ReplyChecker, *seqs: int, client: str = "c1") -> dict[int, bytes]:
    requests = {seq: make_payload(client, seq, 32) for seq in seqs}
    for seq, request in requests.items():
        checker.sent(seq, request)
    return requests


def test_in_order_replies_are_ok_and_consume_the_queue() -> None:
    checker = ReplyChecker("c1")
    requests = sent(checker, 0, 1, 2)
    for seq in range(3):
        verdict = checker.check(reply_to(requests[seq]))
        assert verdict.ok and verdict.seq == seq and verdict.request == requests[seq]
    assert checker.in_flight == 0 and checker.answered == 3
    assert checker.missing(4) == [3]


def test_a_reply_overtaking_another_is_out_of_order_but_counts() -> None:
    checker = ReplyChecker("c1")
    requests = sent(checker, 0, 1, 2)
    verdict = checker.check(reply_to(requests[1]))
    assert (verdict.kind, verdict.seq, verdict.consumed) == (OUT_OF_ORDER, 1, True)
    assert "seq 0" in verdict.expected
    assert checker.check(reply_to(requests[0])).ok
    assert checker.check(reply_to(requests[2])).ok
    assert checker.missing(3) == []


def test_a_second_reply_is_a_duplicate_and_answers_nothing() -> None:
    checker = ReplyChecker("c1")
    requests = sent(checker, 0, 1)
    assert checker.check(reply_to(requests[0])).ok
    verdict = checker.check(reply_to(requests[0]))
    assert (verdict.kind, verdict.seq, verdict.consumed) == (DUPLICATE, 0, False)
    assert checker.unanswered == [(1, requests[1])]


def test_garbage_answers_the_oldest_request_as_malformed() -> None:
    checker = ReplyChecker("c1")
    requests = sent(checker, 0, 1)
    verdict = checker.check(b"garbage\n")
    assert (verdict.kind, verdict.seq, verdict.consumed) == (MALFORMED, 0, True)
    assert checker.check(reply_to(requests[1])).ok


def test_a_corrupted_echo_of_the_expected_request_is_malformed() -> None:
    checker = ReplyChecker("c1")
    requests = sent(checker, 0)
    bad = reply_to(requests[0][:-2] + b"!\n")
    verdict = checker.check(bad)
    assert (verdict.kind, verdict.seq) == (MALFORMED, 0)


def test_an_echo_of_another_clients_message_is_malformed() -> None:
    checker = ReplyChecker("c1")
    sent(checker, 0)
    verdict = checker.check(reply_to(make_payload("c2", 0, 32)))
    assert (verdict.kind, verdict.seq) == (MALFORMED, 0)


def test_a_server_error_line_answers_nothing_so_the_request_is_resent() -> None:
    checker = ReplyChecker("c1")
    requests = sent(checker, 0)
    verdict = checker.check(b"ERROR idle timeout\n")
    assert (verdict.kind, verdict.consumed) == (MALFORMED, False)
    assert checker.unanswered == [(0, requests[0])]


def test_a_reply_with_nothing_outstanding_is_malformed() -> None:
    checker = ReplyChecker("c1")
    verdict = checker.check(reply_to(make_payload("c1", 5, 32)))
    assert (verdict.kind, verdict.seq, verdict.consumed) == (MALFORMED, None, False)


def test_unanswered_requests_keep_their_order_for_a_resend() -> None:
    checker = ReplyChecker("c1")
    requests = sent(checker, 0, 1, 2, 3)
    checker.check(reply_to(requests[0]))
    assert [seq for seq, _ in checker.unanswered] == [1, 2, 3]
    # After a reconnect the same requests are answered in the same order on the new link.
    assert all(checker.check(reply_to(requests[seq])).ok for seq in (1, 2, 3))
