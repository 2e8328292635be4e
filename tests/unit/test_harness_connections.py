"""Clients with several connections, the harness's pure side: specs, per-connection results
and checks (ordering is per connection, completeness per (client, connection))."""

from __future__ import annotations

import pytest
from echo_client.batch import files_needed
from echo_client.records import ConnectionSummary, Exchange, Problem, Summary
from echo_client.workload import make_payload, payload_id

from harness.checks import check_client, check_run
from harness.containers import client_limits, file_limit
from harness.errors import ConfigError
from harness.results import ClientResult, peak_concurrency, read_client_output, split_connections
from harness.spec import LabSpec, ServerSpec, Workload

STAMP = "[Wed Nov 25 02:00:05 2026] "


def exchange(connection: int, seq: int, connections: int = 2, t: float = 0.0) -> Exchange:
    request = make_payload(payload_id("c0", connection, connections), seq, 24).decode()
    return Exchange(
        "c0", 0, seq, t, t + 0.001, 1.0, request, STAMP + request, connection=connection
    )


def test_workload_passes_connections_to_the_client() -> None:
    argv = Workload(connections=200).command("c3")
    assert argv[argv.index("--connections") + 1] == "200"
    with pytest.raises(ConfigError, match="connections must be > 0"):
        Workload(connections=0)


def test_a_lab_never_asks_for_more_connections_than_its_server_admits() -> None:
    spec = LabSpec(clients=50, workload=Workload(connections=200))
    assert spec.clients * spec.workload.connections == 10_000
    with pytest.raises(ConfigError, match=r"51 client.* = 10200 connections.*=10000"):
        LabSpec(clients=51, workload=Workload(connections=200))
    LabSpec(
        clients=51, workload=Workload(connections=200), server=ServerSpec(max_connections=10200)
    )


def test_descriptor_limits_cover_every_connection() -> None:
    (server,) = file_limit("server", 10_000)
    (client,) = file_limit("client", 200)
    assert server["Name"] == "nofile" and server["Soft"] == server["Hard"] > 10_000
    assert client["Soft"] == client["Hard"] >= files_needed(200)


def test_a_clients_log_holds_all_its_records() -> None:
    workload = Workload(connections=200, count=100, size=24)  # as exchange() makes them
    records = 200 * 100 * len(exchange(0, 0).to_json())
    assert workload.output_bytes() > 2 * records
    log = client_limits(200, workload.output_bytes())["log_config"]
    assert log is not None and log["Type"] == "json-file"
    assert int(log["Config"]["max-size"]) == 2 * workload.output_bytes()
    assert client_limits(1, None)["log_config"] is None  # a command of unknown output


def test_the_accept_backlog_fits_every_connection_of_the_lab() -> None:
    assert LabSpec(clients=2).backlog == 1024
    assert LabSpec(clients=50, workload=Workload(connections=200)).backlog == 10_000


def test_interleaved_connections_each_in_order_are_fine() -> None:
    records = [exchange(k, seq) for seq in range(3) for k in (1, 0)]
    assert check_client("c0", records, 3, connections=2) == []


def test_a_gap_or_disorder_is_named_with_its_connection() -> None:
    records = [exchange(0, 0), exchange(0, 1), exchange(1, 1), exchange(1, 0)]
    problems = check_client("c0", records, 3, connections=2)
    assert sorted((p.connection, p.check, p.seq) for p in problems) == [
        (0, "missing", 2), (1, "missing", 2), (1, "order", 0),
    ]  # fmt: skip
    assert "client c0 connection 1 message 0: order" in str(
        next(p for p in problems if p.check == "order")
    )


def test_a_connection_that_sent_nothing_is_missing_in_full_and_strays_are_flagged() -> None:
    records = [exchange(0, 0), exchange(5, 0)]
    problems = check_client("c0", records, 1, connections=2)
    assert sorted((p.connection, p.check) for p in problems if p.connection is not None) == [
        (1, "missing")
    ]
    assert [str(p) for p in problems if p.connection is None] == [
        "client c0: connection: expected connections 0..1, got replies on connection 5"
    ]


def test_one_connection_clients_are_checked_and_named_as_before() -> None:
    problems = check_client("c0", [exchange(0, 0, connections=1)], 2)
    assert [str(p) for p in problems] == [
        "client c0 message 1: missing: expected one reply, got none"
    ]


def test_run_checks_each_client_per_connection() -> None:
    ok = [exchange(k, seq) for k in range(2) for seq in range(2)]
    good = ClientResult("c0", "lab-c0", 0, ok, None, [], "", "")
    partial = ClientResult("c1", "lab-c1", 1, ok[:3], None, [], "", "")
    problems = check_run([good, partial], count=2, connections=2)
    assert [(p.client, p.connection, p.check) for p in problems] == [
        ("c1", None, "exit code"), ("c1", 1, "missing"),
    ]  # fmt: skip


def test_results_split_per_connection_with_each_ones_own_verdict() -> None:
    bad = ConnectionSummary("c0", 1, 2, 1, False, 0, 1.0, ("seq 1: missing",))
    good = ConnectionSummary("c0", 0, 2, 2, True, 3, 1.0, ())
    problem = Problem("c0", 1, "missing", "one reply", "none", connection=1)
    summary = Summary("c0", 4, 3, False, 3, 1.0, (), "line", connections=2)
    lines = [exchange(0, 0), exchange(1, 0), exchange(0, 1), problem, good, bad, summary]
    result = read_client_output("c0", "lab-c0", 1, "\n".join(r.to_json() for r in lines), "")
    assert [c.connection for c in result.connections] == [0, 1]
    first, second = result.connections
    assert [e.seq for e in first.exchanges] == [0, 1] and first.ok and first.reconnects == 3
    assert [e.seq for e in second.exchanges] == [0] and not second.ok
    assert second.reported == [problem] and result.connection(1) is second
    assert "3 replies on 2 connections" in result.one_line()


def test_one_connection_client_has_its_summary_as_the_connections_verdict() -> None:
    summary = Summary("c0", 1, 1, True, 0, 1.0)
    (only,) = split_connections("c0", [exchange(0, 0, connections=1)], [], [], summary)
    assert only.verdict is summary and only.ok
    (crashed,) = split_connections("c0", [], [], [], None)
    assert crashed.verdict is None and not crashed.ok


def test_peak_concurrency_counts_overlapping_connections() -> None:
    spans = [(0.0, 2.0), (1.0, 3.0), (1.5, 1.8), (3.0, 4.0)]
    records = [
        [exchange(k, 0, t=start), exchange(k, 1, t=end - 0.001)]
        for k, (start, end) in enumerate(spans)
    ]
    split = split_connections("c0", [e for r in records for e in r], [], [], None)
    assert peak_concurrency(split) == 3
    assert peak_concurrency([]) == 0
