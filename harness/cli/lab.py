"""The lab's commands: build the images, start and stop the Compose (or Swarm) lab, run an
ephemeral lab of N checked clients, clean up what the project made."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import docker

from harness import compose, images, labels, sweep
from harness.cli.common import PROJECT, say
from harness.compose_lab import ComposeLab
from harness.containers import name_of
from harness.errors import LabError
from harness.faults import impair as impairs
from harness.lab import Lab
from harness.spec import LabSpec, ServerSpec, Workload
from harness.swarm import api, cluster, teardown
from harness.swarm.lab import SwarmLab
from harness.waiting import NotReady, wait_for


def cmd_images(args: argparse.Namespace) -> int:
    built = images.ensure_all(say=say, force=args.force)
    say(f"images ready: {', '.join(built.values())}")
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    report = impairs.report(docker.from_env())
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0


def _server_health(project: str) -> str:
    client = docker.from_env()
    found = client.containers.list(
        all=True,
        filters={
            "label": [f"com.docker.compose.project={project}", "com.docker.compose.service=server"]
        },
    )
    if not found:
        raise NotReady("no server container yet")
    state = found[0].attrs["State"]
    if state["Status"] in ("exited", "dead"):
        raise LabError(
            f"server exited with {state['ExitCode']}",
            {name_of(found[0]): found[0].logs(tail=30).decode()},
        )
    health = state.get("Health", {}).get("Status", "none")
    if health != "healthy":
        raise NotReady(f"health={health}")
    return name_of(found[0])


SWARM_LAB = "swarm-echolab"  # the lab id of `up --engine swarm`: one per swarm, the user's


def cmd_up_swarm(args: argparse.Namespace) -> int:
    """The lab on the swarm this engine manages, or on a single-node swarm made for it (and
    left by ``down --engine swarm``): kept running, owned by the user, like ``make up``."""
    client = docker.from_env()
    if cluster.is_manager(client) and api.services(client, {"label": f"{labels.LAB}={SWARM_LAB}"}):
        say(f"the swarm lab {SWARM_LAB} is already up (make down ENGINE=swarm stops it)")
        return 0
    made = cluster.init(client, labels.USER)
    if made:
        say("made a single-node swarm (advertised on 127.0.0.1); `down --engine swarm` leaves it")
    lab = SwarmLab(
        LabSpec(name="echolab"),
        client,
        replicas=args.replicas,
        endpoint_mode=args.endpoint_mode,
        lab_id=SWARM_LAB,
        owner=labels.USER,
    )
    try:
        lab.start()
    except BaseException:
        if made:
            cluster.leave(client)
        raise
    print(
        f"echolab is up on Swarm: service {lab.service_name('server')} ({args.replicas} task(s), "
        f"endpoint mode {lab.endpoint_mode}) on the overlay {lab.network}, images from "
        f"{lab.references['server'].split('/')[0]}, a fault agent on every node.\n"
        f"  talk to it:   docker run --rm -it --network {lab.network} "
        f"{images.CLIENT_IMAGE}\n"
        f"  stop it:      make down ENGINE=swarm"
    )
    return 0


def cmd_down_swarm(args: argparse.Namespace) -> int:
    client = docker.from_env()
    if cluster.state(client) == "active":
        teardown.remove_lab(client, SWARM_LAB)
    else:  # no swarm: only what a crash may have left (the registry, containers)
        sweep.remove_lab(client, SWARM_LAB)
    if cluster.leave_if_ours(client, labels.USER):
        say("left the single-node swarm `up --engine swarm` made (docker_gwbridge removed)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if args.engine == "swarm":
        return cmd_up_swarm(args)
    images.ensure_all(names=images.LAB_IMAGES, say=say)  # compose.yaml names these tags
    tool = compose.detect()
    say(f"starting the lab with {tool} (Compose {tool.version}), project {args.project}")
    subprocess.run(tool.command(args.project, "up", "-d", "--no-build", "server"), check=True)
    name = wait_for(
        f"server of project {args.project} to be healthy",
        lambda: _server_health(args.project),
        timeout=args.timeout,
    )
    run = compose.spelling_for_users()
    print(
        f"echolab is up: server {name} is healthy on the internal network.\n"
        f"  talk to it:   {run} run --rm client\n"
        f"  piped:        printf 'hello\\n' | {run} run --rm -T client\n"
        f"  stop it:      make down"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if args.engine == "swarm":
        return cmd_down_swarm(args)
    healed = ComposeLab(args.project).heal()  # sidecars hold the server's network namespace
    if healed:
        say(f"healed {len(healed)} fault(s): {', '.join(healed)}")
    tool = compose.detect()
    subprocess.run(
        tool.command(args.project, "--profile", "client", "down", "--remove-orphans", "-t", "10"),
        check=True,
    )
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    client = docker.from_env()
    if cluster.is_manager(client):  # services first: Swarm would restart their containers
        for service in api.services(client, {"label": labels.project_filter()["label"]}):
            api.remove_service(client, service["ID"])
        teardown.remove_lab(client, SWARM_LAB)
    swept = sweep.sweep(client, everything=True, images=args.images)
    say(f"removed {swept}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    spec = LabSpec(
        clients=args.clients,
        workload=Workload(
            count=args.count,
            size=args.size,
            pipeline=args.pipeline,
            rate=args.rate,
            timeout=args.timeout,
            connections=args.connections,
        ),
        # sized to what was asked for: the server's own default limit is for strangers
        server=ServerSpec(
            framing=args.framing,
            max_connections=max(ServerSpec.max_connections, args.clients * args.connections),
        ),
    )
    with Lab(spec) as lab:
        say(f"lab {lab.id}: server healthy; starting {spec.clients} client(s)")
        result = lab.run_clients()
    problems = result.problems()
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as file:
            for record in result.records():
                file.write(json.dumps(record) + "\n")
        say(f"wrote {out}")
    for client in result.clients:
        print(client.one_line())
    print(
        f"lab {result.lab}: {len(result.clients)} client(s) started in {result.start_s:.2f} s, "
        f"finished in {result.elapsed_s:.2f} s, {len(problems)} problem(s)"
    )
    for problem in problems[:20]:
        print(f"  {problem}")
    return 0 if not problems else 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    built = sub.add_parser("images", help="build every image that is missing or stale")
    built.add_argument("--force", action="store_true", help="rebuild even what is current")
    built.set_defaults(func=cmd_images)

    check = sub.add_parser("preflight", help="which network faults this host can apply, and how")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_preflight)

    up = sub.add_parser("up", help="start the Compose lab and wait until the server is healthy")
    up.add_argument("--project", default=PROJECT)
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health")
    _engine_option(up)
    up.add_argument("--replicas", type=int, default=1, help="server tasks (--engine swarm)")
    up.add_argument(
        "--endpoint-mode",
        choices=("vip", "dnsrr"),
        default=None,
        help="the server service's (--engine swarm; default: vip where the kernel has IPVS)",
    )
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the Compose lab")
    down.add_argument("--project", default=PROJECT)
    _engine_option(down)
    down.set_defaults(func=cmd_down)

    clean = sub.add_parser(
        "clean", help="remove every labelled container and network of the project"
    )
    clean.add_argument("--images", action="store_true", help="remove the project's images too")
    clean.set_defaults(func=cmd_clean)

    run = sub.add_parser("run", help="run N clients in an ephemeral lab and check every reply")
    run.add_argument("--clients", type=int, default=10)
    run.add_argument(
        "--connections", type=int, default=1, help="connections per client, each its own seqs"
    )
    run.add_argument("--count", type=int, default=100, help="messages per connection")
    run.add_argument("--size", type=int, default=64, help="bytes per message, newline included")
    run.add_argument("--pipeline", type=int, default=1, help="requests outstanding per connection")
    run.add_argument("--rate", type=float, default=None, help="messages per second per connection")
    run.add_argument("--framing", choices=("line", "raw"), default="line")
    run.add_argument("--timeout", type=float, default=120.0, help="seconds a client may take")
    run.add_argument("--out", help="write every exchange as JSON lines to this file")
    run.set_defaults(func=cmd_run)


def _engine_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--engine",
        choices=("compose", "swarm"),
        default="compose",
        help="compose (one machine, the default) or swarm (services on a swarm)",
    )
