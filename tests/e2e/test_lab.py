"""The harness end to end: real containers on a lab network, every reply checked."""

from __future__ import annotations

import re
import time

import docker
import pytest

from harness import Lab, LabError, LabSpec, ServerSpec, Workload, labels, wait_for
from harness.clients import running
from harness.containers import name_of
from harness.waiting import NotReady
from tests.helpers import MakeLab


def test_ten_clients_hundred_pipelined_messages_each(make_lab: MakeLab) -> None:
    lab = make_lab(LabSpec(name="e2e", clients=10, workload=Workload(count=100, pipeline=8)))
    result = lab.run_clients()
    result.assert_ok()
    assert len(result.clients) == 10
    assert {c.client for c in result.clients} == {f"c{i}" for i in range(10)}
    for client in result.clients:
        assert [e.seq for e in client.exchanges] == list(range(100))
        assert client.summary is not None and client.summary.ok


def test_seed_client_against_raw_framing(make_lab: MakeLab) -> None:
    """The tutorial's own client (sends without newline) works against the seed's framing."""
    lab = make_lab(LabSpec(name="seed", server=ServerSpec(framing="raw")))
    result = lab.run_command(
        ["-c", "printf 'hello\\nsecond\\n' | python3 -m echo_client.seed"], entrypoint=["sh"]
    )
    assert result.exit_code == 0, result.stderr
    replies = re.findall(r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] (\S+)", result.stdout)
    assert replies == ["hello", "second"], result.stdout


def test_server_restart_mid_run_loses_and_duplicates_nothing(make_lab: MakeLab) -> None:
    workload = Workload(count=600, pipeline=4, rate=200.0, connect_timeout=30.0)
    lab = make_lab(LabSpec(name="restart", clients=4, workload=workload))
    run = lab.start_clients()

    def clients_mid_run() -> None:
        if len(running(lab.docker, lab.id, {name_of(c) for c in run.containers})) < 4:
            raise NotReady("clients not all running")

    wait_for("4 clients running", clients_mid_run, timeout=30)
    time.sleep(1.0)  # let them exchange ~200 messages each before the restart
    lab.restart_server()
    result = run.wait()
    result.assert_ok()
    reconnects = [c.summary.reconnects for c in result.clients if c.summary]
    assert len(reconnects) == 4 and all(r >= 1 for r in reconnects), reconnects
    for client in result.clients:
        assert sorted(e.seq for e in client.exchanges) == list(range(600))
        assert len({e.conn for e in client.exchanges}) >= 2


def test_labs_run_side_by_side_and_leave_nothing(docker_client: docker.DockerClient) -> None:
    spec = LabSpec(name="twin", clients=2, workload=Workload(count=20))
    with Lab(spec, client=docker_client) as one, Lab(spec, client=docker_client) as two:
        assert one.id != two.id
        for lab in (one, two):
            lab.run_clients().assert_ok()
    for lab_id in (one.id, two.id):
        found = labels.project_filter(**{labels.LAB: lab_id})
        assert docker_client.containers.list(all=True, filters=found) == []
        assert docker_client.networks.list(filters=found) == []


def test_failure_inside_a_lab_still_tears_it_down(docker_client: docker.DockerClient) -> None:
    lab = Lab(LabSpec(name="boom"), client=docker_client)
    with pytest.raises(RuntimeError, match="on purpose"), lab:
        raise RuntimeError("on purpose")
    found = labels.project_filter(**{labels.LAB: lab.id})
    assert docker_client.containers.list(all=True, filters=found) == []
    assert docker_client.networks.list(filters=found) == []


def test_missing_image_is_a_clear_error_and_leaves_nothing(
    docker_client: docker.DockerClient,
) -> None:
    lab = Lab(
        LabSpec(name="noimage", server_image="echolab-server:does-not-exist"), client=docker_client
    )
    with pytest.raises(LabError, match=r"image echolab-server:does-not-exist not found"):
        lab.start()
    found = labels.project_filter(**{labels.LAB: lab.id})
    assert docker_client.networks.list(filters=found) == []


def test_client_failure_is_reported_with_the_client_and_reason(make_lab: MakeLab) -> None:
    """A client that cannot reach the server exits 3; the run's problems say which and why."""
    lab = make_lab(LabSpec(name="unreach"))
    result = lab.run_command(["--host", "nowhere", "--count", "1", "--connect-timeout", "1"])
    assert result.exit_code == 3
    assert "cannot connect" in result.stderr and "Traceback" not in result.stderr


def test_lab_containers_are_hardened_on_an_internal_network(make_lab: MakeLab) -> None:
    """Non-root, read-only root, no capabilities, no-new-privileges, memory and pids limits."""
    lab = make_lab(LabSpec(name="hard", clients=1, workload=Workload(count=20, rate=50.0)))
    run = lab.start_clients()
    for container in [lab.server, *run.containers]:
        container.reload()
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, container.name
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], container.name
        assert "no-new-privileges:true" in host["SecurityOpt"], container.name
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, container.name
        assert host["PortBindings"] in ({}, None), container.name
        assert container.attrs["Config"]["User"] == "10001:10001", container.name
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [lab.id], container.name
    assert lab.docker.networks.get(lab.id).attrs["Internal"] is True
    run.wait().assert_ok()
