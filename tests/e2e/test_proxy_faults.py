"""The toxic proxy end to end: a real lab, the proxy in its own container, clients through it.

The proxy image is built here if missing or stale (about 20 s the first time). Clients are run
with ``lab.run_command([...workload..., "--host", proxy.host])`` until the Lab can start
clients against another host.
"""

from __future__ import annotations

import statistics
import threading
import time

import docker
import pytest
from echolab_proxy.chain import affected

from harness import ConfigError, Lab, LabSpec, Proxy, ProxyError, Toxic, Workload, images, labels
from harness.checks import check_run
from harness.results import ClientResult
from harness.waiting import NotReady, wait_for
from tests.helpers import MakeLab

pytestmark = pytest.mark.timeout(180)
HOLD_S = 1.0  # how long a held toxic holds before the test removes it


@pytest.fixture(scope="session")
def proxy_image_built(docker_client: docker.DockerClient) -> str:
    return images.tag_for(docker_client, "proxy")


@pytest.fixture
def lab(make_lab: MakeLab, proxy_image_built: str) -> Lab:
    return make_lab(LabSpec(name="proxy"))


def run_through(lab: Lab, proxy: Proxy, workload: Workload, client_id: str = "p0") -> ClientResult:
    command = [*workload.command(client_id), *proxy.client_args()]
    return lab.run_command(command, timeout=workload.timeout + 30)


def assert_every_reply_once(result: ClientResult, count: int) -> None:
    assert result.exit_code == 0, result.stderr
    assert check_run([result], count) == []
    assert sorted(e.seq for e in result.exchanges) == list(range(count))


def first_seed(name: str, pattern: list[bool], toxicity: float) -> int:
    """A seed whose first connections are hit (or not) as ``pattern`` says."""
    for seed in range(10_000):
        if [affected(seed, name, conn, toxicity) for conn in range(len(pattern))] == pattern:
            return seed
    raise AssertionError("no seed found")


def proxied(proxy: Proxy) -> None:
    """One client connection in the proxy, linked to the server (its toxics in place)."""
    stats = proxy.stats()
    if stats["open"] != 1:
        raise NotReady(f"{stats['accepted']} accepted, {stats['open']} open")


def test_no_toxic_is_a_transparent_proxy(lab: Lab) -> None:
    workload = Workload(count=200, pipeline=8)
    with lab.proxy() as proxy:
        result = run_through(lab, proxy, workload)
        stats = proxy.stats()
    assert_every_reply_once(result, 200)
    assert stats["accepted"] == 1 and stats["resets"] == 0
    assert stats["upstream"]["bytes"] == 200 * 64


def test_reset_peer_makes_the_client_reconnect_and_resend(lab: Lab) -> None:
    # Connections 0 and 1 are reset 300 ms in, connection 2 is spared: exactly 2 reconnects.
    spec = Toxic("reset_peer", {"timeout": "300ms"}, toxicity=0.5)
    seed = first_seed(spec.key, [True, True, False], 0.5)
    workload = Workload(count=100, pipeline=2, rate=100.0, timeout=60)
    with lab.proxy([spec], seed=seed) as proxy:
        result = run_through(lab, proxy, workload)
        stats = proxy.stats()
    assert_every_reply_once(result, 100)
    assert result.summary is not None and result.summary.reconnects == 2, result.stderr
    assert stats["resets"] == 2 and stats["accepted"] == 3
    # The resets are the toxic's, on the connections the seed picked: the proxy's own record
    # of each connection says why it ended (a reset from a read/write error reads otherwise).
    ended = {c["conn"]: c["reason"] for c in stats["connections"]}
    assert [ended[n].startswith("reset_peer") for n in range(3)] == [True, True, False], ended
    # and the client saw each reset where it happened: replies came on every connection
    # (300 ms at 100 msg/s each), then went on on the next one
    assert {e.conn for e in result.exchanges} == {0, 1, 2}


def test_timeout_makes_the_client_reconnect_and_resend(lab: Lab) -> None:
    # Connection 0: the proxy swallows everything, and closes after 500 ms; then 1 is clean.
    spec = Toxic("timeout", {"timeout": "500ms"}, stream="upstream", toxicity=0.5)
    seed = first_seed(spec.key, [True, False], 0.5)
    workload = Workload(count=50, pipeline=4, timeout=60)
    with lab.proxy([spec], seed=seed) as proxy:
        result = run_through(lab, proxy, workload)
    assert_every_reply_once(result, 50)
    assert result.summary is not None and result.summary.reconnects == 1
    assert {e.conn for e in result.exchanges} == {1}  # nothing came back on the held one
    # The client's own clock (elapsed_s) starts just before its first connect, so the proxy's
    # start is not in it; take away the time connection 1 carried replies (first resend to last
    # reply, from its records' own stamps): what is left is connection 0, held then closed.
    on_conn_1 = max(e.received for e in result.exchanges) - min(e.sent for e in result.exchanges)
    held = result.summary.elapsed_s - on_conn_1
    print(f"timeout 500 ms: connection 0 lasted {held:.3f} s")
    assert 0.5 <= held < 3.0, (held, result.summary.elapsed_s, on_conn_1)


def test_timeout_zero_holds_until_the_toxic_is_removed_at_run_time(lab: Lab) -> None:
    workload = Workload(count=20, pipeline=4, timeout=60)
    with lab.proxy([Toxic("timeout", {"timeout": 0}, stream="upstream")]) as proxy:
        results: list[ClientResult] = []
        runner = threading.Thread(target=lambda: results.append(run_through(lab, proxy, workload)))
        runner.start()
        try:
            # The client's connection is in the proxy, toxic in its chain: the first pipeline
            # (sent as soon as it connected) is held from here on.
            wait_for("the client's connection in the proxy", lambda: proxied(proxy), timeout=60)
            time.sleep(HOLD_S)  # the fault's duration, not a wait for anything to happen
            assert runner.is_alive()  # held: nothing answered yet
            assert proxy.stats()["upstream"]["bytes"] == 0
            proxy.remove("timeout_upstream")
            assert proxy.toxics() == []
        finally:
            runner.join(90)
    (result,) = results
    assert_every_reply_once(result, 20)
    assert result.summary is not None and result.summary.reconnects == 0
    # the first pipeline-full of requests waited for the removal; the rest went straight through
    held = [e.rtt_ms for e in result.exchanges if e.seq < 4]
    assert min(held) >= HOLD_S * 1000.0, held
    assert statistics.median(result.rtts_ms()) < 100.0


def test_slicer_one_byte_segments_in_both_directions(lab: Lab) -> None:
    toxics = [
        Toxic("slicer", {"average_size": 1, "size_variation": 0, "delay": "50us"}, stream=stream)
        for stream in ("upstream", "downstream")
    ]
    workload = Workload(count=30, size=64, pipeline=4, timeout=60)
    with lab.proxy(toxics) as proxy:
        result = run_through(lab, proxy, workload)
        stats = proxy.stats()
    assert_every_reply_once(result, 30)
    # every byte was its own write, both ways: the server's framing and the client's cope
    assert stats["upstream"]["writes"] == stats["upstream"]["bytes"] == 30 * 64
    assert stats["downstream"]["writes"] == stats["downstream"]["bytes"] == 30 * (64 + 27)


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_latency_adds_its_delay_to_each_round_trip(lab: Lab, stream: str) -> None:
    spec = Toxic("latency", {"latency": "50ms", "jitter": "5ms"}, stream=stream)  # type: ignore[arg-type]
    workload = Workload(count=40, pipeline=1, timeout=60)
    with lab.proxy([spec]) as proxy:
        result = run_through(lab, proxy, workload)
    assert_every_reply_once(result, 40)
    rtts = result.rtts_ms()
    median = statistics.median(rtts)
    print(f"latency 50+-5 ms {stream}: median rtt {median:.2f} ms, min {min(rtts):.2f} ms")
    assert 50.0 <= median < 60.0, median
    assert min(rtts) >= 45.0


def test_bandwidth_limits_throughput(lab: Lab) -> None:
    # 200 x 1000-byte requests = 200 KB upstream at 100 KB/s: about 2 s, never under 1.9 s.
    spec = Toxic("bandwidth", {"rate": "800kbit"}, stream="upstream")
    workload = Workload(count=200, size=1000, pipeline=16, timeout=60)
    with lab.proxy([spec]) as proxy:
        result = run_through(lab, proxy, workload)
    assert_every_reply_once(result, 200)
    assert result.summary is not None
    print(f"bandwidth 100 KB/s: 200 KB in {result.summary.elapsed_s:.2f} s")
    assert 1.9 <= result.summary.elapsed_s < 4.0


def test_limit_data_closes_and_the_client_resends(lab: Lab) -> None:
    spec = Toxic("limit_data", {"bytes": 1000}, stream="upstream", toxicity=0.5)
    seed = first_seed(spec.key, [True, False], 0.5)
    workload = Workload(count=50, pipeline=1, timeout=60)
    with lab.proxy([spec], seed=seed) as proxy:
        result = run_through(lab, proxy, workload)
    assert_every_reply_once(result, 50)
    assert result.summary is not None and result.summary.reconnects == 1


def test_bad_toxic_fails_before_anything_exists(lab: Lab, docker_client) -> None:
    with (
        pytest.raises(ConfigError, match="toxicity must be within"),
        lab.proxy([{"type": "latency", "toxicity": 2}]),
    ):
        pass
    found = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "proxy"})
    assert docker_client.containers.list(all=True, filters=found) == []
    with lab.proxy() as proxy:
        with pytest.raises(ConfigError, match="unknown attribute"):  # checked before sending
            proxy.add({"type": "latency", "attributes": {"delay": "5ms"}})
        with pytest.raises(ProxyError, match="no toxic 'nope'"):
            proxy.remove("nope")
        proxy.add({"type": "latency", "attributes": {"latency": "5ms"}})
        with pytest.raises(ProxyError, match="already exists"):
            proxy.add({"type": "latency", "attributes": {"latency": "5ms"}})
    assert docker_client.containers.list(all=True, filters=found) == []
