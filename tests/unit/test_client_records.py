"""Records: JSON lines out and back in, exactly, including bytes that are not UTF-8."""

from __future__ import annotations

import json

import pytest
from echo_client.__main__ import RecordWriter
from echo_client.records import (
    Exchange,
    Problem,
    RecordError,
    Summary,
    listed,
    parse_records,
    text,
)

EXCHANGE = Exchange(
    client="c1", conn=1, seq=42, sent=1764036005.125, received=1764036005.25, rtt_ms=0.21,
    request="c1 00000042 abc\n", reply="[Wed Nov 25 02:00:05 2026] c1 00000042 abc\n",
)  # fmt: skip
PROBLEM = Problem(client="c1", seq=3, kind="out_of_order", expected="seq 2", got="seq 3")
SUMMARY = Summary(
    client="c1", count=100, replied=99, ok=False, reconnects=2, elapsed_s=1.5,
    problems=("seq 3: missing: expected one reply, got none",), framing="line",
)  # fmt: skip


@pytest.mark.parametrize("record", [EXCHANGE, PROBLEM, SUMMARY])
def test_records_round_trip(record: Exchange | Problem | Summary) -> None:
    line = record.to_json()
    assert "\n" not in line
    assert type(record).from_json(line) == record


def test_exchange_schema_is_what_the_harness_reads() -> None:
    data = json.loads(EXCHANGE.to_json())
    assert list(data) == [
        "type", "client", "connection", "conn", "seq", "sent", "received", "rtt_ms", "request",
        "reply",
    ]  # fmt: skip
    assert data["type"] == "exchange"


def test_summary_schema() -> None:
    data = json.loads(SUMMARY.to_json())
    assert data["type"] == "summary"
    assert data["problems"] == list(SUMMARY.problems)
    assert set(data) == {
        "type", "client", "count", "replied", "ok", "reconnects", "elapsed_s", "problems",
        "framing", "connections",
    }  # fmt: skip


def test_problem_schema() -> None:
    assert json.loads(PROBLEM.to_json()) == {
        "type": "problem", "client": "c1", "connection": 0, "seq": 3, "kind": "out_of_order",
        "expected": "seq 2", "got": "seq 3",
    }  # fmt: skip


def test_non_utf8_bytes_survive_as_backslash_escapes() -> None:
    raw = b"c1 00000000 \x00\xff\xfe caf\xc3\xa9\r\n"
    exchange = Exchange("c1", 0, 0, 1.0, 2.0, 1.0, text(raw), text(b"[x] " + raw))
    back = Exchange.from_json(exchange.to_json())
    assert back.request == "c1 00000000 \x00\\xff\\xfe café\r\n"
    assert back.request.encode("utf-8", "surrogateescape") != raw  # text, not bytes: by design
    assert back == exchange


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        '{"type": "exchange"}',
        '{"type": "summary", "client": "c", "count": 1, "replied": 1, "ok": "yes", '
        '"reconnects": 0, "elapsed_s": 1, "problems": [], "framing": "line"}',
        '{"type": "exchange", "client": "c", "conn": "0", "seq": 0, "sent": 1, '
        '"received": 1, "rtt_ms": 1, "request": "", "reply": ""}',
        "[1, 2]",
    ],
)
def test_from_json_rejects_what_is_not_a_record(line: str) -> None:
    with pytest.raises(RecordError):
        Exchange.from_json(line) if "exchange" in line else Summary.from_json(line)


def test_parse_records_sorts_lines_and_keeps_strangers() -> None:
    lines = [
        EXCHANGE.to_json(),
        "",
        "Traceback (most recent call last):",
        PROBLEM.to_json(),
        '{"type": "mystery"}',
        '{"no": "type"}',
        SUMMARY.to_json(),
    ]
    parsed = parse_records(lines)
    assert parsed.exchanges == [EXCHANGE]
    assert parsed.problems == [PROBLEM]
    assert parsed.summary == SUMMARY
    assert parsed.unparsed == [
        "Traceback (most recent call last):", '{"type": "mystery"}', '{"no": "type"}',
    ]  # fmt: skip


def test_parse_records_without_summary() -> None:
    parsed = parse_records([EXCHANGE.to_json()])
    assert parsed.summary is None and parsed.exchanges == [EXCHANGE]


def test_listed_caps_the_problems_in_a_summary() -> None:
    assert listed(["a", "b"], limit=3) == ("a", "b")
    assert listed(map(str, range(10)), limit=3) == ("0", "1", "2", "... and 7 more")


def test_record_writer_batches_writes_and_flushes_at_the_end() -> None:
    writes: list[str] = []
    flushes: list[None] = []
    writer = RecordWriter(writes.append, lambda: flushes.append(None), max_bytes=10_000,
                          max_delay=3600)  # fmt: skip
    for _ in range(5):
        writer(EXCHANGE)
    assert writes == []
    writer.flush()
    assert len(writes) == 1 and writes[0].count("\n") == 5
    assert [Exchange.from_json(line) for line in writes[0].splitlines()] == [EXCHANGE] * 5


def test_record_writer_flushes_when_its_buffer_fills() -> None:
    writes: list[str] = []
    writer = RecordWriter(writes.append, lambda: None, max_bytes=500, max_delay=3600)
    for _ in range(10):
        writer(EXCHANGE)
    assert 1 <= len(writes) < 10
