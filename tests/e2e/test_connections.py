"""Many connections per client container, end to end: real containers, every reply checked per
connection, and one bad connection spoiling nothing of the others'."""

from __future__ import annotations

import pytest
from echolab_proxy.chain import affected

from harness import Lab, LabSpec, Toxic, Workload
from harness.containers import output_of
from tests.helpers import MakeLab

pytestmark = pytest.mark.timeout(240)


def test_each_connection_of_each_client_is_complete_and_in_order(make_lab: MakeLab) -> None:
    workload = Workload(count=50, pipeline=4, connections=6)
    lab = make_lab(LabSpec(name="conns", clients=3, workload=workload))
    # what the lab asked of Docker for 18 connections at once, and got
    host_config = lab.server.attrs["HostConfig"]
    (nofile,) = host_config["Ulimits"]
    assert nofile["Name"] == "nofile" and nofile["Soft"] >= lab.spec.server.max_connections
    code, out = lab.server.exec_run(["cat", "/proc/sys/net/core/somaxconn"])
    assert code == 0 and int(output_of(out)) == lab.spec.backlog
    result = lab.run_clients()
    result.assert_ok()
    assert len(result.connections()) == 18
    for client in result.clients:
        assert client.summary is not None and client.summary.ok
        assert (client.summary.connections, client.summary.count) == (6, 300)
        assert [c.connection for c in client.connections] == list(range(6))
        for connection in client.connections:
            assert [e.seq for e in connection.exchanges] == list(range(50))
            assert {e.request.split()[0] for e in connection.exchanges} == {
                f"{client.client}/{connection.connection}"
            }
            assert connection.ok and connection.reconnects == 0 and connection.reported == []


def one_hit(name: str, toxicity: float, hit_among: int, spared_after: int) -> int:
    """A seed under which exactly one of the proxy's first ``hit_among`` connections is hit,
    and none of the next ``spared_after``."""
    for seed in range(100_000):
        hits = [affected(seed, name, conn, toxicity) for conn in range(hit_among + spared_after)]
        if sum(hits[:hit_among]) == 1 and not any(hits[hit_among:]):
            return seed
    raise AssertionError("no seed found")


def test_one_held_connection_spoils_none_of_the_others(make_lab: MakeLab) -> None:
    # 2 clients x 4 connections through the proxy: it holds every byte of exactly one of them
    # (whichever arrives at the seeded number), so that one times out with nothing answered.
    workload = Workload(count=20, pipeline=2, connections=4, timeout=8)
    lab: Lab = make_lab(LabSpec(name="conns-bad", clients=2, workload=workload))
    hold = Toxic("timeout", {"timeout": 0}, stream="upstream", toxicity=0.125)
    with lab.proxy([hold], seed=one_hit(hold.key, 0.125, 8, 4)) as proxy:
        result = lab.run_clients(host=proxy.host)
        stats = proxy.stats()
    assert stats["accepted"] == 8, stats  # no reconnect: the held one stayed held
    bad = [c for c in result.connections() if not c.ok]
    assert len(bad) == 1, [c.verdict for c in result.connections()]
    (held,) = bad
    assert held.exchanges == []
    assert held.verdict is not None and held.verdict.replied == 0
    assert any(p.startswith("timeout") for p in held.verdict.problems)
    assert sorted(p.seq for p in held.reported if p.kind == "missing") == list(range(20))
    for connection in result.connections():
        if connection is not held:
            assert connection.ok, connection.verdict
            assert [e.seq for e in connection.exchanges] == list(range(20))
    # the harness's own checks blame that connection alone (and its client's exit code)
    blamed = {(p.client, p.connection, p.check) for p in result.problems()}
    assert blamed == {(held.client, held.connection, "missing"), (held.client, None, "exit code")}
    codes = {c.client: c.exit_code for c in result.clients}
    assert codes == {c.client: (1 if c.client == held.client else 0) for c in result.clients}
