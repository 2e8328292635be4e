"""The lab's Swarm services as data: what ``SwarmLab`` asks the engine to run (pure).

Each function returns the keywords of the low-level ``APIClient.create_service`` (task template,
mode, labels, endpoint), so what a lab deploys is tested without a swarm. The SDK's
``ContainerSpec`` has no ``Ulimits`` and ``Resources`` no ``Pids`` (both in API 1.41): they are
set on the dicts themselves.

- the server: ``replicas`` tasks behind the name ``server`` (an alias on the lab's overlay), in
  ``endpoint_mode`` (``dnsrr`` where the kernel has no IPVS, see ``cluster``), restarted at once
  when one dies (the recovery experiments' subject), healthy only after a real echo exchange;
- clients: one ``replicated-job`` per batch, ``n`` tasks at once, each run to completion and
  never restarted (a rerun would send its messages twice); each task's id is ``c<slot>``, from
  the template ``{{.Task.Slot}}`` (Swarm numbers a job's tasks 0..n-1);
- the fault agent: a ``global`` service (one task per node) with the node's Docker socket.
"""

from __future__ import annotations

from typing import Any

from docker.types import (
    ContainerSpec,
    DriverConfig,
    EndpointSpec,
    Healthcheck,
    Mount,
    NetworkAttachmentConfig,
    Placement,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)

from harness import labels
from harness.spec import SERVER_ALIAS, LabSpec, Workload

SECOND = 1_000_000_000  # Swarm's durations are nanoseconds
MIB = 1 << 20
DOCKER_SOCKET = "/var/run/docker.sock"
AGENT_MODULE = ["python3", "-m", "echolab_fault_agent"]
HEALTH_PROBE = ["CMD", "python3", "-m", "echo_server.healthcheck"]
CLIENT_ID_TEMPLATE = "c{{.Task.Slot}}"
HEALTH_TIMEOUT, HEALTH_RETRIES = 10, 15
ServiceArgs = dict[str, Any]


def _ulimit(files: int) -> list[dict[str, Any]]:
    return [{"Name": "nofile", "Soft": files, "Hard": files}]


def _resources(memory_mib: int, pids: int) -> Resources:
    resources = Resources(mem_limit=memory_mib * MIB)
    resources["Limits"]["Pids"] = pids
    return resources


def _tmpfs() -> Mount:
    return Mount(target="/tmp", source=None, type="tmpfs", tmpfs_size=16 * MIB)


def server(
    spec: LabSpec,
    image: str,
    name: str,
    network: str,
    tags: dict[str, str],
    *,
    replicas: int = 1,
    endpoint_mode: str = "dnsrr",
    constraints: list[str] | None = None,
) -> ServiceArgs:
    backlog = spec.backlog
    env = {**spec.server.environment(), "ECHO_BACKLOG": str(backlog)}
    container = ContainerSpec(
        image,
        env=[f"{key}={value}" for key, value in env.items()],
        hostname=SERVER_ALIAS,
        labels={**tags, labels.ALIASES: SERVER_ALIAS},
        mounts=[_tmpfs()],
        read_only=True,
        cap_drop=["ALL"],
        sysctls={"net.core.somaxconn": str(backlog)},
        stop_grace_period=10 * SECOND,
        # Swarm reports a task running once this probe passes (a real exchange); it goes on
        # every 2 s, so a server that stops answering is replaced too. 2 s, not 1: each probe
        # is a Python process started in the server's container, CPU the clients compete for.
        # Tolerant (15 failures in a row, up to 10 s each): while 500 client tasks start on 2
        # cores a probe takes longer than 3 s, and Swarm stopped a healthy server for it.
        healthcheck=Healthcheck(
            test=HEALTH_PROBE,
            interval=2 * SECOND,
            timeout=HEALTH_TIMEOUT * SECOND,
            retries=HEALTH_RETRIES,
            start_period=20 * SECOND,
        ),
    )
    container["Ulimits"] = _ulimit(spec.server.max_connections + 1024)
    template = TaskTemplate(
        container,
        resources=_resources(256, 256),
        restart_policy=RestartPolicy(condition="any", delay=0),
        placement=Placement(constraints=constraints) if constraints else None,
        networks=[NetworkAttachmentConfig(network, aliases=[SERVER_ALIAS])],
    )
    return {
        "task_template": template,
        "name": name,
        "labels": tags,
        "mode": ServiceMode("replicated", replicas=replicas),
        "endpoint_spec": EndpointSpec(mode=endpoint_mode),
    }


def clients(
    image: str,
    name: str,
    network: str,
    tags: dict[str, str],
    n: int,
    workload: Workload,
    *,
    host: str | None = None,
    constraints: list[str] | None = None,
    command: list[str] | None = None,
    args: list[str] | None = None,
) -> ServiceArgs:
    """``command`` replaces the image's entrypoint (``jobs.gated`` holds a task at its gate);
    ``args`` the client's arguments (default: the workload's; its id is the task's slot)."""
    env = {
        "ECHO_HOST": host or SERVER_ALIAS,
        "ECHO_PORT": "8899",
        "ECHO_CLIENT_ID": CLIENT_ID_TEMPLATE,
    }
    container = ContainerSpec(
        image,
        command=command,
        args=workload.command(None) if args is None else args,
        env=[f"{key}={value}" for key, value in env.items()],
        labels={**tags, labels.ROLE: "client"},
        mounts=[_tmpfs()],
        read_only=True,
        cap_drop=["ALL"],
    )
    container["Ulimits"] = _ulimit(workload.connections + 256)
    # Its records are read back from its log: one file that holds them all (as on one machine).
    log_size = str(2 * workload.output_bytes())
    template = TaskTemplate(
        container,
        resources=_resources(128, 64),
        restart_policy=RestartPolicy(condition="none"),
        placement=Placement(constraints=constraints) if constraints else None,
        networks=[NetworkAttachmentConfig(network)],
        log_driver=DriverConfig("json-file", {"max-size": log_size, "max-file": "1"}),
    )
    return {
        "task_template": template,
        "name": name,
        "labels": tags,
        "mode": ServiceMode("replicated-job", replicas=n, concurrency=n),
    }


def agent(image: str, name: str, tags: dict[str, str], lab_id: str, lab_env: str) -> ServiceArgs:
    """The fault agent on every node. On no lab network: it talks to its node's engine alone,
    and the harness to it by exec (``harness.swarm.agent``). (Swarm predefines ``host`` and
    ``bridge`` only, no ``none``: with no network given, the task is on the node's default
    bridge, where nothing listens for it.)"""
    container = ContainerSpec(
        image,
        args=["serve"],
        env=[f"{lab_env}={lab_id}"],
        labels=tags,
        mounts=[Mount(target=DOCKER_SOCKET, source=DOCKER_SOCKET, type="bind")],
        read_only=True,
        cap_drop=["ALL"],
        stop_grace_period=30 * SECOND,  # time to remove the sidecars it started
    )
    template = TaskTemplate(
        container,
        resources=_resources(128, 64),
        restart_policy=RestartPolicy(condition="any", delay=SECOND),
    )
    return {
        "task_template": template,
        "name": name,
        "labels": tags,
        "mode": ServiceMode("global"),
    }
