"""Partitions (the Docker network itself) and one-way blocks (iptables in a sidecar), end to end."""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack

import pytest

from harness import ConfigError, LabSpec, Workload, labels
from harness.checks import check_run
from harness.clients import running
from harness.faults.block import block_plan
from harness.faults.partition import partitioned
from tests.helpers import MakeLab, in_server_namespace

pytestmark = pytest.mark.timeout(180)


def test_partitioned_client_others_go_on_then_it_recovers_after_heal(make_lab: MakeLab) -> None:
    lab = make_lab(LabSpec(name="part", clients=3, workload=Workload(count=100, pipeline=4)))
    # c0 exists, gated: it is cut off before it sends its first packet (its DNS lookup
    # included), then let go; it retries for 60 s.
    batch = lab.create_clients(1, Workload(count=50, connect_timeout=60, timeout=120))
    (late,) = batch.ids
    name = f"{lab.id}-{late}"
    try:
        assert lab.partition(late) == [name]
        assert lab.partition(late) == []  # idempotent
        run = batch.start()
        others = lab.run_clients()  # the rest of the lab is unaffected meanwhile
        others.assert_ok()
        assert [c.name for c in partitioned(lab)] == [name]
        assert running(lab.docker, lab.id, {name}) == [name]  # still cut off, still retrying
        healed_at = time.monotonic()
        assert lab.heal() == [name]
        assert lab.heal() == []  # idempotent
    finally:
        lab.heal()
    (late_result,) = run.wait(120).clients
    print(f"partitioned client finished {time.monotonic() - healed_at:.2f} s after heal")
    assert late_result.exit_code == 0, late_result.stderr
    assert check_run([late_result], 50) == []


def test_server_partition_heals_with_its_dns_alias(make_lab: MakeLab) -> None:
    lab = make_lab(LabSpec(name="partsrv", workload=Workload(count=20, connect_timeout=2)))
    lab.partition("server")
    try:
        cut_off = lab.run_clients()
        (client,) = cut_off.clients
        assert client.exit_code == 3, client.stderr  # cannot connect: "server" does not resolve
    finally:
        lab.heal()
    lab.server.reload()
    aliases = lab.server.attrs["NetworkSettings"]["Networks"][lab.id]["Aliases"]
    assert "server" in aliases  # moby#24322: given back on reconnect
    lab.run_clients().assert_ok()


def test_block_plan_is_pure_and_validated() -> None:
    plan = block_plan("egress", tag="ab12")
    rule = ["OUTPUT", "-o", "eth0", "-m", "comment", "--comment", "echolab-block-ab12", "-j"]
    assert plan.apply == [["iptables", "-w", "-I", *rule, "DROP"]]
    assert plan.remove == [["iptables", "-w", "-D", *rule, "DROP"]]
    assert block_plan("egress", tag="cd34").remove != plan.remove  # each block its own rule
    with pytest.raises(ConfigError, match="ingress' or 'egress"):
        block_plan("both")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tag"):
        block_plan("egress", tag="x; rm")


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_one_way_block_on_the_server_then_removed(
    make_lab: MakeLab, sidecar_image: str, direction: str
) -> None:
    lab = make_lab(LabSpec(name="block", workload=Workload(count=20, connect_timeout=2)))
    with lab.block("server", direction) as blocked:
        assert blocked == [lab.server.name]
        (client,) = lab.run_clients().clients
        assert client.exit_code == 3, client.stderr  # SYNs (or SYN-ACKs) dropped
    found = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "fault"})
    assert lab.docker.containers.list(all=True, filters=found) == []
    lab.run_clients().assert_ok()


def test_a_block_and_an_impair_on_one_target_come_off_on_their_own(
    make_lab: MakeLab, sidecar_image: str
) -> None:

    lab = make_lab(LabSpec(name="blockimp", workload=Workload(count=20, connect_timeout=2)))
    with lab.impair("server", delay="20ms"):
        with lab.block("server", "egress"):
            fault = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "fault"})
            kinds = sorted(
                c.labels["org.echolab.fault-kind"]
                for c in lab.docker.containers.list(filters=fault)
            )
            assert kinds == ["block", "impair"]  # both in force, side by side
            (client,) = lab.run_clients().clients
            assert client.exit_code == 3, client.stderr  # the server's SYN-ACKs dropped
        delayed = lab.run_clients()  # the block is off, the delay holds
        delayed.assert_ok()
        assert 20.0 <= statistics.median(delayed.clients[0].rtts_ms()[2:]) < 23.0
    healed = lab.run_clients()
    healed.assert_ok()
    assert statistics.median(healed.clients[0].rtts_ms()[2:]) < 5.0


def test_two_blocks_one_way_on_one_target_come_off_one_at_a_time(
    make_lab: MakeLab, sidecar_image: str
) -> None:
    """Two egress blocks on the server are two rules: lifting one leaves the other in force."""
    lab = make_lab(LabSpec(name="block2", workload=Workload(count=20, connect_timeout=2)))

    def drop_rules() -> int:
        return in_server_namespace(lab, sidecar_image, ["iptables", "-w", "-S"]).count("DROP")

    with ExitStack() as first:
        first.enter_context(lab.block("server", "egress"))
        with lab.block("server", "egress"):
            assert drop_rules() == 2
        assert drop_rules() == 1  # the first block is still in force
        (client,) = lab.run_clients().clients
        assert client.exit_code == 3, client.stderr  # and still drops the SYN-ACKs
    assert drop_rules() == 0
    lab.run_clients().assert_ok()
