"""Network faults end to end: a real lab, a real sidecar in the server's namespace, once per
packet backend this host has (``packet_backend``; a missing one is skipped with its reason).

The engine image is built here if missing or stale, so ``make test`` needs nothing by hand.
"""

from __future__ import annotations

import os
import statistics

import docker
import pytest

from harness import Lab, LabSpec, Workload, labels
from harness.errors import ConfigError, FaultError, FaultUnsupported
from harness.faults import BACKENDS, Report, preflight
from harness.faults.sidecar import RT_RUNTIME_ENV
from tests.helpers import MakeLab, in_server_namespace


@pytest.fixture
def fault_lab(make_lab: MakeLab, sidecar_image: str) -> Lab:
    return make_lab(LabSpec(name="faults", clients=5, workload=Workload(count=50, pipeline=1)))


def _no_sidecars_left(client: docker.DockerClient, lab: Lab) -> None:
    found = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "fault"})
    assert client.containers.list(all=True, filters=found) == []


def test_server_delay_with_jitter_adds_delay_to_each_round_trip(
    fault_lab: Lab, docker_client: docker.DockerClient, packet_backend: str
) -> None:
    with fault_lab.impair(
        "server", delay="20ms", jitter="2ms", seed=1, backend=packet_backend
    ) as applied:
        result = fault_lab.run_clients()
    result.extra["fault"] = applied.describe()
    assert applied.backend.name == packet_backend
    result.assert_ok()
    for client in result.clients:
        assert [e.seq for e in client.exchanges] == list(range(50))
        median = statistics.median(client.rtts_ms())
        assert 20.0 <= median < 23.0, (client.client, median)
        assert min(client.rtts_ms()) >= 18.0, client.client  # each >= delay - jitter
    _no_sidecars_left(docker_client, fault_lab)
    # removed means removed: the next run is back to sub-millisecond round trips
    after = fault_lab.run_clients(1)
    after.assert_ok()
    assert statistics.median(after.clients[0].rtts_ms()) < 5.0


def test_packet_loss_is_recovered_by_tcp(fault_lab: Lab, packet_backend: str) -> None:
    """Nothing is lost at the application; the round trips grow as TCP's recovery predicts:
    with one request in flight a lost segment has no duplicate ACKs to trigger a fast
    retransmit, so it waits for the retransmission timeout (>= 200 ms on Linux). About one
    exchange in ten loses its request or its reply at 5 % each way; the median is untouched."""
    with fault_lab.impair(
        "server", loss="5%", direction="both", seed=2, backend=packet_backend
    ) as applied:
        result = fault_lab.run_clients()
    result.assert_ok()
    rtts = [rtt for client in result.clients for rtt in client.rtts_ms()]
    recovered = [rtt for rtt in rtts if rtt >= 200.0]
    print(f"{len(recovered)} of {len(rtts)} exchanges waited for a retransmission timeout")
    assert statistics.median(rtts) < 5.0
    assert 1 <= len(recovered) <= 0.3 * len(rtts), (len(recovered), len(rtts))
    if applied.backend.name == "nfqueue":
        (counted,) = applied.engine_stats().values()
        assert counted["dropped"] > 0, counted  # packets really were dropped, and TCP recovered


def test_bad_parameters_fail_before_anything_changes(
    fault_lab: Lab, docker_client: docker.DockerClient
) -> None:
    for params, message in [
        ({"delay": "-5ms"}, "delay must be >= 0"),
        ({"loss": "101%"}, "loss must be within"),
        ({"delay": "5 fortnights"}, "unknown unit"),
    ]:
        with pytest.raises(ConfigError, match=message), fault_lab.impair("server", **params):
            pass
    with pytest.raises(ConfigError, match="unknown target"), fault_lab.impair("c99", delay="1ms"):
        pass
    _no_sidecars_left(docker_client, fault_lab)


def test_failure_inside_the_block_still_removes_the_fault(
    fault_lab: Lab, docker_client: docker.DockerClient, packet_backend: str
) -> None:
    with (
        pytest.raises(RuntimeError, match="on purpose"),
        fault_lab.impair("server", delay="5ms", backend=packet_backend),
    ):
        raise RuntimeError("on purpose")
    _no_sidecars_left(docker_client, fault_lab)
    fault_lab.run_clients(1).assert_ok()


def test_preflight_says_what_this_host_can_do(
    docker_client: docker.DockerClient, sidecar_image: str
) -> None:
    report = preflight(docker_client, sidecar_image)
    assert report.can()["latency"] in ("netem", "nfqueue")


@pytest.mark.parametrize("backend", tuple(BACKENDS))
def test_forcing_a_backend_the_host_lacks_is_a_clear_error(
    fault_lab: Lab, docker_client: docker.DockerClient, host_report: Report, backend: str
) -> None:
    why = host_report.missing(backend)
    if why is None:
        pytest.skip(f"this host has {backend}: nothing to refuse")
    with (
        pytest.raises(FaultUnsupported, match=backend if backend == "netem" else "NFQUEUE"),
        fault_lab.impair("server", delay="1ms", backend=backend),
    ):
        pass
    _no_sidecars_left(docker_client, fault_lab)


def test_nfqueue_engine_death_is_reported_traffic_bypasses_and_rules_are_undone(
    fault_lab: Lab, docker_client: docker.DockerClient, sidecar_image: str, engine_backend: str
) -> None:
    with fault_lab.impair("server", delay="50ms", backend=engine_backend) as applied:
        (sidecar,) = applied.sidecars
        assert sidecar.container is not None
        sidecar.container.kill()  # the engine is the sidecar's only process
        result = fault_lab.run_clients(1, Workload(count=20))
        result.assert_ok()  # no black hole: --queue-bypass lets packets through
        assert max(result.clients[0].rtts_ms()) < 50.0  # ...without the delay
        with pytest.raises(FaultError, match="has died"):
            applied.status()
    assert applied.engine_stats()[fault_lab.server.name]["engine_died"] is True
    assert "NFQUEUE" not in in_server_namespace(fault_lab, sidecar_image, ["iptables-save"])


# Run in a sidecar beside its engine (pid 1): the engine's scheduling as the kernel has it.
POLICY = "import os; print(os.sched_getscheduler(1), os.sched_getparam(1).sched_priority)"


def _engine_policy(lab: Lab) -> tuple[dict[str, object], tuple[int, int]]:
    """What the engine says the kernel granted it, and what another process reads of it."""
    with lab.impair("server", delay="1ms", backend="nfqueue") as applied:
        (status,) = applied.status().values()
        code, out = applied.sidecars[0].container.exec_run(["python3", "-c", POLICY])
        assert code == 0, out
    policy, priority = (int(v) for v in out.split())
    return dict(status["thread"]["realtime"]), (policy, priority)


def test_the_engine_reports_the_scheduling_its_thread_has(
    fault_lab: Lab, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine asks for SCHED_FIFO (its sidecar has SYS_NICE); whether the kernel granted it
    depends on the host (a kernel that groups real-time time also wants a budget), so the
    contract is that the status tells the truth, read by a process that is not the engine."""
    monkeypatch.delenv(RT_RUNTIME_ENV, raising=False)
    said, (policy, priority) = _engine_policy(fault_lab)
    print(f"engine's real-time scheduling: {said}; its thread's policy {policy}")
    if "priority" in said:
        assert (policy, priority) == (os.SCHED_FIFO, said["priority"])
    else:
        assert policy == os.SCHED_OTHER and said["refused"], said
    _no_sidecars_left(docker_client, fault_lab)


def test_a_real_time_budget_is_given_to_the_engine_or_refused_naming_the_setting(
    fault_lab: Lab, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``ECHOLAB_ENGINE_RT_RUNTIME_US`` the sidecar asks Docker for a real-time budget. A
    daemon with one to share gives it and the engine runs SCHED_FIFO; one without fails the
    fault before the target's traffic is touched, saying which setting to change."""
    monkeypatch.setenv(RT_RUNTIME_ENV, "100000")
    try:
        said, (policy, _) = _engine_policy(fault_lab)
    except FaultError as e:
        print(f"refused: {e}")
        assert RT_RUNTIME_ENV in str(e) and "cpu-rt-runtime" in str(e), e
    else:
        print(f"granted: {said}")
        assert "priority" in said and policy == os.SCHED_FIFO, said
    _no_sidecars_left(docker_client, fault_lab)
    fault_lab.run_clients(1).assert_ok()
