"""A crashed run's faults: the sweep undoes, in a target that still runs, what its orphaned fault
sidecars applied (rules and qdiscs), whether the sidecar still runs or was killed."""

from __future__ import annotations

import statistics

import docker
import pytest

from harness import Lab, LabSpec, Workload, labels, sweep
from harness.faults.impair import apply
from harness.faults.model import Impairment
from harness.faults.sidecar import UNDO_ROLE
from tests.helpers import MakeLab, Orphaned, SessionOwner, in_server_namespace

pytestmark = pytest.mark.timeout(180)


def _median(lab: Lab) -> float:
    result = lab.run_clients(1)
    result.assert_ok()
    return statistics.median(result.clients[0].rtts_ms()[2:])


def test_sweep_undoes_orphaned_faults_in_a_running_target(
    make_lab: MakeLab, sidecar_image: str, docker_client: docker.DockerClient
) -> None:
    lab = make_lab(LabSpec(name="orphan", clients=1, workload=Workload(count=30)))
    baseline = _median(lab)
    # The faults' owner: another process holding its session's lease until the crash (had it
    # died before, another lab starting meanwhile, in any process, would sweep them first).
    owner = SessionOwner(sidecar_image)
    try:
        crashed = Orphaned(lab, owner.session)
        rate = apply(crashed, "server", Impairment.parse(rate="10mbit"))
        delay = apply(crashed, "server", Impairment.parse(delay="20ms"))
        assert _median(lab) >= 20.0
        assert "tbf" in in_server_namespace(
            lab, sidecar_image, ["tc", "qdisc", "show", "dev", "eth0"]
        )
        assert "NFQUEUE" in in_server_namespace(lab, sidecar_image, ["iptables-save"])
        # The crash: the rate's sidecar killed (stopped, not undone), the delay's left running;
        # neither is removed, and their owner is gone (SIGKILL: its lease ends with it).
        rate.sidecars[0].container.kill()  # type: ignore[union-attr]
        faults = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "fault"})
        assert len(docker_client.containers.list(all=True, filters=faults)) == 2
        sweep.sweep(docker_client)  # while its owner lives, the sweep leaves its faults alone
        assert len(docker_client.containers.list(all=True, filters=faults)) == 2
    finally:
        owner.crash(docker_client)

    sweep.sweep(docker_client)  # (another process starting a lab may sweep them first)

    assert docker_client.containers.list(all=True, filters=faults) == []
    undo = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: UNDO_ROLE})
    assert docker_client.containers.list(all=True, filters=undo) == []
    lab.server.reload()
    assert lab.server.status == "running"  # the target is not the sweep's (its owner lives)
    qdiscs = in_server_namespace(lab, sidecar_image, ["tc", "qdisc", "show", "dev", "eth0"])
    assert "tbf" not in qdiscs, qdiscs
    rules = in_server_namespace(lab, sidecar_image, ["iptables-save"])
    assert "NFQUEUE" not in rules, rules
    after = _median(lab)
    assert after < max(5.0, 2 * baseline), (baseline, after)
    rate.sidecars.clear()  # already gone: nothing left for the test to remove
    delay.sidecars.clear()
