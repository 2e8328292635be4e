"""The harness's checks on records: pure, no Docker."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from harness.checks import (
    check_client,
    check_complete,
    check_format,
    check_order,
    check_run,
    parse_stamp,
)

STAMP = "Wed Nov 25 02:00:05 2026"


@dataclass
class Ex:
    client: str
    conn: int
    seq: int
    request: str
    reply: str
    connection: int = 0


def ex(
    seq: int, conn: int = 0, stamp: str = STAMP, client: str = "c0", reply: str | None = None
) -> Ex:
    request = f"c0 {seq:08d} xx\n"
    return Ex(client, conn, seq, request, reply if reply is not None else f"[{stamp}] {request}")


def test_parse_stamp_reads_ctime_including_space_padded_days() -> None:
    assert parse_stamp(f"[{STAMP}] x\n") == time.mktime(
        time.strptime(STAMP, "%a %b %d %H:%M:%S %Y")
    )
    assert parse_stamp("[Thu Nov  5 02:00:05 2026] x\n") is not None
    assert parse_stamp(f"{STAMP} x\n") is None
    assert parse_stamp("[Xyz Nov 25 02:00:05 2026] x\n") is None
    assert parse_stamp("[Wed Nov 25 02:00:05 2026]x\n") is None


def test_format_accepts_exact_echo_and_names_what_is_wrong() -> None:
    assert check_format(ex(3)) is None
    wrong = check_format(ex(3, reply=f"[{STAMP}] c0 00000003 xy\n"))
    assert wrong is not None and wrong.check == "echo" and wrong.seq == 3
    assert "'c0 00000003 xx\\n'" in str(wrong) and "client c0 message 3" in str(wrong)
    bad = check_format(ex(4, reply="c0 00000004 xx\n"))
    assert bad is not None and bad.check == "format"


def test_order_is_per_connection() -> None:
    assert check_order([ex(0), ex(1), ex(1, conn=1), ex(2, conn=1)]) == []
    problems = check_order([ex(0), ex(2), ex(1)])
    assert [(p.check, p.seq) for p in problems] == [("order", 1)]


def test_timestamps_must_not_go_backwards_on_a_connection() -> None:
    later = "Wed Nov 25 02:00:06 2026"
    problems = check_order([ex(0, stamp=later), ex(1)])
    assert [(p.check, p.seq) for p in problems] == [("timestamp", 1)]


def test_complete_finds_missing_duplicate_and_unexpected() -> None:
    problems = check_complete("c0", [ex(0), ex(0), ex(2), ex(7)], count=3)
    assert sorted((p.check, p.seq) for p in problems) == [
        ("duplicate", 0),
        ("missing", 1),
        ("unexpected", 7),
    ]


def test_client_and_run_combine_every_check() -> None:
    assert check_client("c0", [ex(i) for i in range(5)], 5) == []

    @dataclass
    class Result:
        client: str
        exit_code: int
        exchanges: list[Ex]

    problems = check_run([Result("c0", 0, [ex(0), ex(1)]), Result("c1", 1, [])], count=2)
    assert [(p.client, p.check) for p in problems] == [
        ("c1", "exit code"),
        ("c1", "missing"),
        ("c1", "missing"),
    ]


@pytest.mark.parametrize("request_text", ["", "\x00\n", "caf\\xc3\n"])
def test_format_is_byte_exact_for_odd_payloads(request_text: str) -> None:
    good = Ex("c0", 0, 0, request_text, f"[{STAMP}] {request_text}")
    assert check_format(good) is None
    assert check_format(Ex("c0", 0, 0, request_text, f"[{STAMP}] {request_text}!")) is not None
