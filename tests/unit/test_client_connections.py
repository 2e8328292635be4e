"""Many connections from one client, the pure parts: ids, schedule, settings, the verdict."""

from __future__ import annotations

import json
import resource

import pytest
from echo_client.batch import combine, files_needed, human_line, raised_limit
from echo_client.config import ClientConfig, ConfigError, parse_config
from echo_client.records import ConnectionSummary, Exchange, Summary, parse_records
from echo_client.reply import MALFORMED, ReplyChecker
from echo_client.session import Outcome
from echo_client.workload import make_payload, payload_id, send_offset

BATCH = ["--count", "10", "--id", "c0"]


def test_one_connection_keeps_the_client_id_several_name_theirs() -> None:
    assert payload_id("c0", 0, 1) == "c0"
    assert [payload_id("c0", k, 3) for k in range(3)] == ["c0/0", "c0/1", "c0/2"]


def test_a_reply_from_another_connection_is_caught() -> None:
    mine, theirs = ReplyChecker("c0/0"), make_payload("c0/1", 0, 32)
    mine.sent(0, make_payload("c0/0", 0, 32))
    verdict = mine.check(b"[Wed Nov 25 02:00:05 2026] " + theirs)
    assert verdict.kind == MALFORMED and "never sent" in verdict.got
    assert mine.check(b"[Wed Nov 25 02:00:05 2026] " + make_payload("c0/0", 1, 32)).kind


def test_lanes_spread_a_clients_connections_over_the_interval() -> None:
    assert send_offset(3, None, 0.5) == 0.0
    assert send_offset(2, 10.0) == pytest.approx(0.2)
    offsets = [send_offset(0, 10.0, k / 4) for k in range(4)]
    assert offsets == pytest.approx([0.0, 0.025, 0.05, 0.075])


def test_connections_from_flag_and_environment() -> None:
    assert parse_config(BATCH, {}).connections == 1
    assert parse_config(BATCH, {"ECHO_CONNECTIONS": "200"}).connections == 200
    assert (
        parse_config([*BATCH, "--connections", "7"], {"ECHO_CONNECTIONS": "200"}).connections == 7
    )


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--connections", "0", *BATCH], "--connections: 0 is out of range"),
        (["--connections", "x", *BATCH], "--connections: 'x' is not an integer"),
        (["--connections", "70000", *BATCH], "between 1 and 65535"),
        (["--connections", "2"], "--connections > 1 needs batch mode"),
        (["--connections", "100", "--size", "15", *BATCH], "'c0/99' need at least 16 bytes"),
    ],
)
def test_bad_connections_are_refused_with_the_reason(argv: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(argv, {})


def test_descriptor_limit_is_raised_only_when_needed_and_possible() -> None:
    needed = files_needed(200)
    assert needed > 200
    assert raised_limit(needed, soft=needed, hard=needed) is None
    assert raised_limit(needed, soft=resource.RLIM_INFINITY, hard=resource.RLIM_INFINITY) is None
    assert raised_limit(needed, soft=1024 if needed > 1024 else 10, hard=1 << 20) == needed
    assert raised_limit(needed, soft=10, hard=resource.RLIM_INFINITY) == needed
    with pytest.raises(ConfigError, match=rf"needs {needed} open files.*may open 100 at most"):
        raised_limit(needed, soft=100, hard=100)


def verdict(connection: int, ok: bool = True, problems: tuple[str, ...] = ()) -> Outcome:
    return Outcome(ConnectionSummary("c0", connection, 10, 10 if ok else 9, ok, 1, 0.5, problems))


def test_one_connection_verdict_is_the_clients() -> None:
    config = ClientConfig(count=10, client_id="c0")
    outcome = combine(config, [verdict(0)], 0.6)
    assert outcome.summary == Summary("c0", 10, 10, True, 1, 0.6, (), "line", 1)
    assert outcome.exit_code == 0
    assert human_line(outcome.summary, [1.0, 3.0]).startswith("client c0: 10/10 replies ok in ")


def test_several_connections_add_up_and_name_their_problems() -> None:
    config = ClientConfig(count=10, client_id="c0", connections=3)
    bad = verdict(1, ok=False, problems=("seq 4: missing: expected one reply, got none",))
    outcome = combine(config, [verdict(0), bad, verdict(2)], 0.7)
    summary = outcome.summary
    assert (summary.count, summary.replied, summary.reconnects) == (30, 29, 3)
    assert not summary.ok and outcome.exit_code == 1
    assert summary.problems == ("connection 1: seq 4: missing: expected one reply, got none",)
    assert isinstance(summary, Summary) and summary.connections == 3
    assert " over 3 connections " in human_line(summary, [])


def test_any_connection_that_never_connected_makes_exit_3() -> None:
    config = ClientConfig(count=10, client_id="c0", connections=3)
    lost = [Outcome(verdict(k, ok=False).summary, fatal="cannot connect") for k in (1, 2)]
    outcome = combine(config, [verdict(0), *lost], 1.0)
    assert outcome.exit_code == 3
    assert outcome.fatal == "connection 1: cannot connect (and 1 more connection(s) like it)"


def test_connection_verdicts_round_trip_and_are_parsed_apart() -> None:
    record = ConnectionSummary("c0", 5, 10, 10, True, 0, 0.25, ())
    assert ConnectionSummary.from_json(record.to_json()) == record
    assert json.loads(record.to_json())["type"] == "connection"
    parsed = parse_records([record.to_json()])
    assert parsed.connections == [record] and parsed.unparsed == []


def test_records_of_older_clients_read_as_connection_0() -> None:
    line = json.dumps(
        {"type": "exchange", "client": "c", "conn": 1, "seq": 0, "sent": 1.0, "received": 1.0,
         "rtt_ms": 1.0, "request": "c 00000000 x\n", "reply": "x"}
    )  # fmt: skip
    exchange = Exchange.from_json(line)
    assert (exchange.connection, exchange.conn) == (0, 1)


def test_the_size_check_counts_the_longest_connection_id() -> None:
    assert parse_config(["--size", "15", *BATCH], {}).size == 15
    assert parse_config(["--connections", "100", "--size", "16", *BATCH], {}).size == 16


def test_one_connections_capped_problem_list_is_kept_as_it_is() -> None:
    capped = (*(f"seq {n}: missing" for n in range(20)), "... and 5 more")
    config = ClientConfig(count=25, client_id="c0")
    assert combine(config, [verdict(0, ok=False, problems=capped)], 1.0).summary.problems == capped
