"""What a Swarm lab deploys, as data (``harness.swarm.services``), and the pure parts of
reading its tasks back (``harness.swarm.jobs``) and choosing its endpoint mode (``cluster``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from echolab_fault_agent.agent import handle

from harness.clients import GATE_FILE, GATE_SCRIPT
from harness.errors import ConfigError, LabError
from harness.spec import SERVER_ALIAS, LabSpec, Workload
from harness.swarm import cluster, jobs, services

TAGS = {"org.echolab.lab": "l1"}


def test_the_server_is_a_healthy_checked_service_behind_the_name_server() -> None:
    args = services.server(LabSpec(), "reg/echolab-server:latest", "l1-server", "l1", TAGS,
                           replicas=3, endpoint_mode="dnsrr")  # fmt: skip
    assert args["mode"]["replicated"] == {"Replicas": 3}
    assert args["endpoint_spec"]["Mode"] == "dnsrr"
    template = args["task_template"]
    (network,) = template["Networks"]
    assert (network["Target"], network["Aliases"]) == ("l1", [SERVER_ALIAS])
    assert template["RestartPolicy"]["Condition"] == "any"  # a killed task is replaced
    container = template["ContainerSpec"]
    health = container["Healthcheck"]
    assert health["Test"][-1] == "echo_server.healthcheck"
    # A loaded host's slow probes do not get a healthy server stopped: a minute of failures.
    assert health["Retries"] * (health["Interval"] + health["Timeout"]) >= 60 * services.SECOND
    assert container["ReadOnly"] and container["CapabilityDrop"] == ["ALL"]
    assert container["Ulimits"][0]["Name"] == "nofile"
    assert template["Resources"]["Limits"]["Pids"] == 256


def test_clients_are_one_job_of_n_tasks_never_restarted_each_with_its_slot_as_id() -> None:
    workload = Workload(count=7, connections=2)
    args = services.clients("reg/c", "l1-clients0", "l1", TAGS, 50, workload)
    assert args["mode"]["ReplicatedJob"] == {"MaxConcurrent": 50, "TotalCompletions": 50}
    template = args["task_template"]
    assert template["RestartPolicy"]["Condition"] == "none"  # a rerun would send twice
    container = template["ContainerSpec"]
    assert "ECHO_CLIENT_ID=c{{.Task.Slot}}" in container["Env"]
    assert "--id" not in container["Args"]
    assert container["Args"][:2] == ["--count", "7"]
    assert int(template["LogDriver"]["Options"]["max-size"]) >= 2 * workload.output_bytes()


def test_the_agent_runs_on_every_node_with_its_socket() -> None:
    args = services.agent("reg/a", "l1-agent", TAGS, "l1", "ECHOLAB_LAB")
    assert "global" in args["mode"]
    container = args["task_template"]["ContainerSpec"]
    assert container["Env"] == ["ECHOLAB_LAB=l1"]
    assert [m["Target"] for m in container["Mounts"]] == [services.DOCKER_SOCKET]


def test_endpoint_mode_follows_the_kernel_unless_told(tmp_path: Path) -> None:
    assert cluster.endpoint_mode(proc=tmp_path / "absent") == "dnsrr"
    (tmp_path / "ip_vs").write_text("")
    assert cluster.endpoint_mode(proc=tmp_path / "ip_vs") == "vip"
    assert cluster.endpoint_mode("dnsrr", proc=tmp_path / "ip_vs") == "dnsrr"
    with pytest.raises(LabError, match="vip"):
        cluster.endpoint_mode("ipvs")  # type: ignore[arg-type]


def test_a_task_s_id_and_exit_code_come_from_its_slot_and_status() -> None:
    assert jobs.client_id({"ID": "t"}) == "c0"  # Swarm leaves a zero slot out
    assert jobs.client_id({"Slot": 7}) == "c7"
    done = {"Status": {"State": "complete", "ContainerStatus": {"ExitCode": 0}}}
    assert jobs.exit_code(done) == 0
    assert jobs.exit_code({"Status": {"State": "rejected", "Err": "no such image"}}) == -1


def test_a_client_swarm_ran_twice_is_found() -> None:
    tasks = [{"Slot": 1}, {"Slot": 2}, {"Slot": 1}, {"ID": "slot zero"}]
    assert jobs.reruns(tasks) == {"c1": 2}
    assert jobs.reruns(tasks[1:3]) == {}


def test_the_agent_refuses_what_it_does_not_know_without_docker() -> None:
    reply = handle(None, {"op": "format-disk"})  # type: ignore[arg-type]
    assert reply["ok"] is False and "unknown op" in reply["error"]
    assert handle(None, {"op": "ping"}) == {"ok": True}  # type: ignore[arg-type]


def test_the_lab_overlay_gets_a_free_slash_20_that_holds_thousands_of_tasks() -> None:
    assert cluster.free_subnet([]) == "10.128.0.0/20"
    used = ["172.17.0.0/16", "10.128.0.0/24", "10.128.16.0/20", "fd00::/64"]
    assert cluster.free_subnet(used) == "10.128.32.0/20"
    with pytest.raises(LabError, match="no free /20"):
        cluster.free_subnet(["10.0.0.0/8"])
    assert cluster.tasks_fit("10.128.0.0/20", 4000)
    assert not cluster.tasks_fit("10.128.0.0/20", 4090)
    assert not cluster.tasks_fit("10.0.0.0/24", 500)  # Swarm's default: why 500 tasks failed


def test_gated_clients_wait_at_the_gate_then_run_the_image_s_entrypoint() -> None:
    """A gated job replaces the entrypoint with the gate (which imports the client's module
    and waits for its file); the client's arguments stay the workload's, or those given."""
    entrypoint = ["python3", "-m", "echo_client"]
    workload = Workload(count=7)
    gated = services.clients(
        "img", "lab-clients0", "net", {}, 3, workload, command=jobs.gated(entrypoint)
    )
    spec = gated["task_template"]["ContainerSpec"]
    assert spec["Command"] == ["python3", "-c", GATE_SCRIPT, *entrypoint]
    assert spec["Args"] == workload.command(None)
    assert GATE_FILE in GATE_SCRIPT and GATE_FILE.startswith("/tmp/")  # the task's tmpfs
    plain = services.clients("img", "lab-clients1", "net", {}, 3, workload, args=["--x"])
    assert plain["task_template"]["ContainerSpec"].get("Command") is None  # the image's
    assert plain["task_template"]["ContainerSpec"]["Args"] == ["--x"]


@pytest.mark.parametrize(
    ("where", "server", "clients"),
    [
        ("any", [], []),
        ("same", [cluster.SUT], [cluster.SUT]),
        ("cross", [cluster.SUT], [cluster.NOT_SUT]),
    ],
)
def test_placement_puts_the_server_on_the_sut_node_and_clients_beside_it_or_not(
    where: str, server: list[str], clients: list[str]
) -> None:
    assert cluster.placement(where) == (server, clients)


def test_an_unknown_placement_is_refused() -> None:
    with pytest.raises(ConfigError, match="'any', 'same' or 'cross'"):
        cluster.placement("near")
