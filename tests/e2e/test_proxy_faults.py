"""The toxic proxy end to end: a real lab, the proxy in its own container, clients through it.

The proxy image is built here if missing or stale (about 20 s the first time). Clients are run
with ``lab.run_command([...workload..., "--host", proxy.host])`` until the Lab can start
clients against another host.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import docker
import pytest

from harness import Lab, LabSpec, Workload, labels
from harness.checks import check_run
from harness.faults.proxy import image as proxy_image
from harness.faults.proxy.api import Proxy, ProxyError
from harness.faults.proxy.chain import affected
from harness.faults.proxy.toxics import ToxicSpec
from harness.results import ClientResult

MakeLab = Callable[..., Lab]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="session")
def proxy_image_built(docker_client: docker.DockerClient) -> str:
    return proxy_image.build(docker_client, say=print)


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
    spec = ToxicSpec("reset_peer", "downstream", {"timeout": 300}, toxicity=0.5)
    seed = first_seed(spec.name, [True, True, False], 0.5)
    workload = Workload(count=100, pipeline=2, rate=100.0, timeout=60)
    with lab.proxy([spec], seed=seed) as proxy:
        result = run_through(lab, proxy, workload)
        stats = proxy.stats()
    assert_every_reply_once(result, 100)
    assert result.summary is not None and result.summary.reconnects == 2, result.stderr
    assert stats["resets"] == 2 and stats["accepted"] == 3
    assert "reset" in result.stderr.lower() or result.summary.reconnects == 2


def test_timeout_makes_the_client_reconnect_and_resend(lab: Lab) -> None:
    # Connection 0: the proxy swallows everything, and closes after 500 ms; then 1 is clean.
    spec = ToxicSpec("timeout", "upstream", {"timeout": 500}, toxicity=0.5)
    seed = first_seed(spec.name, [True, False], 0.5)
    workload = Workload(count=50, pipeline=4, timeout=60)
    began = time.monotonic()
    with lab.proxy([spec], seed=seed) as proxy:
        result = run_through(lab, proxy, workload)
    assert_every_reply_once(result, 50)
    assert result.summary is not None and result.summary.reconnects == 1
    assert {e.conn for e in result.exchanges} == {1}  # nothing came back on the held one
    assert time.monotonic() - began >= 0.5


def test_timeout_zero_holds_until_the_toxic_is_removed_at_run_time(lab: Lab) -> None:
    workload = Workload(count=20, pipeline=4, timeout=60)
    with lab.proxy([ToxicSpec("timeout", "upstream", {"timeout": 0})]) as proxy:
        results: list[ClientResult] = []
        runner = threading.Thread(target=lambda: results.append(run_through(lab, proxy, workload)))
        runner.start()
        try:
            time.sleep(2.0)
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
    assert min(held) >= 1000.0, held
    assert statistics.median(result.rtts_ms()) < 100.0


def test_slicer_one_byte_segments_in_both_directions(lab: Lab) -> None:
    toxics = [
        ToxicSpec("slicer", stream, {"average_size": 1, "size_variation": 0, "delay": 50})
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
    spec = ToxicSpec("latency", stream, {"latency": 50, "jitter": 5})  # type: ignore[arg-type]
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
    spec = ToxicSpec("bandwidth", "upstream", {"rate": 100})
    workload = Workload(count=200, size=1000, pipeline=16, timeout=60)
    with lab.proxy([spec]) as proxy:
        result = run_through(lab, proxy, workload)
    assert_every_reply_once(result, 200)
    assert result.summary is not None
    print(f"bandwidth 100 KB/s: 200 KB in {result.summary.elapsed_s:.2f} s")
    assert 1.9 <= result.summary.elapsed_s < 4.0


def test_limit_data_closes_and_the_client_resends(lab: Lab) -> None:
    spec = ToxicSpec("limit_data", "upstream", {"bytes": 1000}, toxicity=0.5)
    seed = first_seed(spec.name, [True, False], 0.5)
    workload = Workload(count=50, pipeline=1, timeout=60)
    with lab.proxy([spec], seed=seed) as proxy:
        result = run_through(lab, proxy, workload)
    assert_every_reply_once(result, 50)
    assert result.summary is not None and result.summary.reconnects == 1


def test_bad_toxic_fails_before_anything_exists(lab: Lab, docker_client) -> None:
    with (
        pytest.raises(ValueError, match="toxicity must be within"),
        lab.proxy([{"type": "latency", "toxicity": 2}]),
    ):
        pass
    found = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "proxy"})
    assert docker_client.containers.list(all=True, filters=found) == []
    with lab.proxy() as proxy:
        with pytest.raises(ValueError, match="unknown attribute"):  # checked before sending
            proxy.add({"type": "latency", "attributes": {"delay": 5}})
        with pytest.raises(ProxyError, match="no toxic 'nope'"):
            proxy.remove("nope")
        proxy.add({"type": "latency", "attributes": {"latency": 5}})
        with pytest.raises(ProxyError, match="already exists"):
            proxy.add({"type": "latency", "attributes": {"latency": 5}})
    assert docker_client.containers.list(all=True, filters=found) == []
