"""Faults changed while traffic flows, stacked on one target, and applied to clients before their
first packet: a real lab, real sidecars, round trips measured by the clients themselves. Each
test runs once per packet backend this host has, unless its name says which backend it is about.
"""

from __future__ import annotations

import statistics
import time

import docker
import pytest

from harness import Lab, LabSpec, Workload, labels
from harness.errors import ConfigError, FaultError
from harness.faults import Applied, Report
from harness.faults.impair import apply
from harness.faults.model import Impairment
from harness.results import ClientResult
from tests.helpers import MakeLab, require


@pytest.fixture
def lab(make_lab: MakeLab, sidecar_image: str) -> Lab:
    return make_lab(LabSpec(name="runtime", clients=1, workload=Workload(count=30)))


def _no_sidecars_left(client: docker.DockerClient, lab: Lab) -> None:
    found = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "fault"})
    assert client.containers.list(all=True, filters=found) == []


def _median(client: ClientResult, skip: int = 2) -> float:
    return statistics.median(client.rtts_ms()[skip:])


def test_update_changes_the_delay_while_traffic_flows(
    lab: Lab, docker_client: docker.DockerClient, packet_backend: str
) -> None:
    # 1 client, one request at a time, paced: ~8 s of traffic across the update.
    workload = Workload(count=160, rate=20.0)
    batch = lab.create_clients(1, workload)
    with lab.impair("server", delay="20ms", backend=packet_backend) as fault:
        run = batch.start()
        time.sleep(3.0)
        before_update = time.time()
        fault.update(delay="60ms")
        after_update = time.time()
        status = fault.status()
        result = run.wait()
    result.assert_ok()  # nothing lost, duplicated or out of order across the change
    (client,) = result.clients
    assert [e.seq for e in client.exchanges] == list(range(160))
    (engine,) = status.values()
    assert engine["note"]["delay_s"] == pytest.approx(0.06)
    if packet_backend == "nfqueue":  # the engine's own parameters, beside the note
        assert engine["params"]["delay_s"] == pytest.approx(0.06)
    early = [e.rtt_ms for e in client.exchanges[2:] if e.received < before_update]
    late = [e.rtt_ms for e in client.exchanges if e.sent > after_update + 0.1]
    assert len(early) > 20 and len(late) > 20, (len(early), len(late))
    assert 20.0 <= statistics.median(early) < 22.0, statistics.median(early)
    assert 60.0 <= statistics.median(late) < 62.0, statistics.median(late)
    _no_sidecars_left(docker_client, lab)


def test_update_validates_before_changing_anything(lab: Lab, packet_backend: str) -> None:
    with lab.impair("server", delay="5ms", backend=packet_backend) as fault:
        refused = [({"delay": "-1ms"}, "delay must be >= 0"), ({"loss": "150%"}, "loss must be")]
        if packet_backend == "nfqueue":  # its rate is tbf's, set when the fault is made
            refused.append(({"rate": "1mbit"}, "rate cannot be added"))
        for params, message in refused:
            with pytest.raises(ConfigError, match=message):
                fault.update(**params)
        with pytest.raises(ConfigError, match="direction cannot change"):
            fault.check(direction="ingress")  # update() has no such keyword: a fault's own
        (status,) = fault.status().values()
        assert status["note"]["delay_s"] == pytest.approx(0.005)


def test_nfqueue_faults_stack_on_one_target_and_come_off_in_any_order(
    lab: Lab, docker_client: docker.DockerClient, engine_backend: str
) -> None:
    def impair(**words: str | int) -> Applied:
        return apply(lab, "server", Impairment.parse(**words), backend=engine_backend)  # type: ignore[arg-type]

    egress = impair(delay="20ms")
    try:
        ingress = impair(delay="10ms", direction="ingress")
        try:
            same_way = impair(delay="5ms", loss="2%", seed=3)
            try:
                stacked = lab.run_clients(1)
            finally:
                same_way.remove()
            stacked.assert_ok()
            assert 35.0 <= _median(stacked.clients[0]) < 38.0  # 20 + 10 + 5, all three hold
            assert [s.slot for s in same_way.sidecars] == [2]
            egress.remove()  # the first one off first: the second stays in force
            only_ingress = lab.run_clients(1)
            only_ingress.assert_ok()
            assert 10.0 <= _median(only_ingress.clients[0]) < 12.0
        finally:
            ingress.remove()
    finally:
        egress.remove()  # idempotent
    _no_sidecars_left(docker_client, lab)
    healed = lab.run_clients(1)
    assert _median(healed.clients[0]) < 5.0


def test_netem_takes_one_fault_per_direction_on_a_target(
    lab: Lab, docker_client: docker.DockerClient, host_report: Report
) -> None:
    """netem has one qdisc per direction: a second egress fault is refused (change the first
    with update()), an ingress one stacks beside it."""
    backend = require(host_report, "netem")
    with lab.impair("server", delay="20ms", backend=backend):
        with (
            pytest.raises(FaultError, match="one qdisc per direction"),
            lab.impair("server", delay="5ms", backend=backend),
        ):
            pass
        with lab.impair("server", delay="10ms", direction="ingress", backend=backend):
            stacked = lab.run_clients(1)
    stacked.assert_ok()
    assert 30.0 <= _median(stacked.clients[0]) < 33.0
    _no_sidecars_left(docker_client, lab)


def test_one_rate_per_target_is_a_clear_error(lab: Lab, packet_backend: str) -> None:
    with lab.impair("server", rate="10mbit", backend=packet_backend):
        with (
            pytest.raises(FaultError, match="one rate per target"),
            lab.impair("server", rate="1mbit", backend=packet_backend),
        ):
            pass
        if packet_backend == "nfqueue":  # a delay stacks on tbf's rate
            with lab.impair("server", delay="3ms", backend=packet_backend) as delayed:
                assert delayed.mechanism == "nfqueue"


def test_a_client_impaired_before_its_first_packet(
    make_lab: MakeLab, sidecar_image: str, docker_client: docker.DockerClient, packet_backend: str
) -> None:
    lab = make_lab(LabSpec(name="clients", clients=3, workload=Workload(count=40)))
    batch = lab.create_clients()
    assert batch.ids == ["c0", "c1", "c2"]
    with (
        lab.impair("c1", delay="30ms", backend=packet_backend),
        lab.impair("server", loss="1%", seed=4, backend=packet_backend),
    ):
        result = batch.run()
    result.assert_ok()
    by_id = {c.client: c for c in result.clients}
    assert by_id["c1"].exchanges[0].rtt_ms >= 30.0  # from the very first exchange
    assert 30.0 <= _median(by_id["c1"], skip=0) < 33.0
    for other in ("c0", "c2"):
        assert _median(by_id[other]) < 5.0, other
    _no_sidecars_left(docker_client, lab)


def test_several_clients_impaired_by_name_the_others_not(
    make_lab: MakeLab, sidecar_image: str, docker_client: docker.DockerClient, packet_backend: str
) -> None:
    lab = make_lab(LabSpec(name="several", clients=3, workload=Workload(count=30)))
    batch = lab.create_clients()
    with lab.impair(["c0", "c2", "c0"], delay="20ms", backend=packet_backend) as applied:
        assert applied.targets == [f"{lab.id}-c0", f"{lab.id}-c2"]  # each once, in order
        result = batch.run()
    result.assert_ok()
    by_id = {c.client: c for c in result.clients}
    for impaired in ("c0", "c2"):
        assert 20.0 <= _median(by_id[impaired], skip=0) < 23.0, impaired
    assert _median(by_id["c1"]) < 5.0
    with pytest.raises(ConfigError, match="c9"):
        apply(
            lab, ["server", "c9"], Impairment.parse(delay="1ms")
        )  # one unknown name: nothing is applied
    with pytest.raises(ConfigError, match="non-empty list"):
        apply(lab, [], Impairment.parse(delay="1ms"))
    _no_sidecars_left(docker_client, lab)


def test_start_clients_with_before_start_and_host(make_lab: MakeLab, sidecar_image: str) -> None:
    lab = make_lab(LabSpec(name="gate", clients=2, workload=Workload(count=20)))
    seen: list[list[str]] = []
    run = lab.start_clients(before_start=lambda batch: seen.append(batch.ids), host="server")
    result = run.wait()
    result.assert_ok()
    assert seen == [["c0", "c1"]]
    bad = lab.run_command(["--count", "1", "--connect-timeout", "2"], host="nowhere", timeout=30)
    assert bad.exit_code != 0
