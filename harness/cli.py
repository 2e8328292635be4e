"""``python -m harness``: the lab from the command line (what the Makefile calls).

images   build every image that is missing or stale: bases, server, client, fault engine, proxy
up       start the Compose stack and wait until the server is healthy (--engine swarm: on Swarm)
run      an ephemeral lab: N client containers, every reply checked, results as JSON lines
down     stop the Compose stack (its faults healed first)
clean    remove every container, network (and with --images, image) the project created
impair   a network fault on the running Compose lab (stays until heal): delay, jitter, loss, rate
update   change a fault in force on the Compose lab while traffic flows (same units as impair)
heal     remove the Compose lab's faults (of one target, or all)
faults   list the faults in force on the Compose lab, with their parameters
experiment  run a declared experiment (TOML) and report it: ``experiment run FILE``, ``report DIR``
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final, TypedDict

import docker

from harness import compose, images, labels, sweep
from harness.compose_lab import ComposeLab
from harness.containers import name_of
from harness.errors import ConfigError, EcholabError, FaultUnsupported, LabError
from harness.experiment import cli as experiments
from harness.faults import impair as impairs
from harness.faults.capabilities import BACKENDS
from harness.faults.model import Impairment, parse_distribution
from harness.faults.sidecar import Sidecar
from harness.lab import Lab
from harness.spec import LabSpec, ServerSpec, Workload
from harness.swarm import api, cluster, teardown
from harness.swarm.lab import SwarmLab
from harness.waiting import NotReady, wait_for

PROJECT = "echolab"


def _say(message: str) -> None:
    print(f"echolab: {message}", file=sys.stderr, flush=True)


def _sigterm_is_interrupt() -> None:
    """SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so every ``finally`` runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def cmd_images(args: argparse.Namespace) -> int:
    built = images.ensure_all(say=_say, force=args.force)
    _say(f"images ready: {', '.join(built.values())}")
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
        _say(f"the swarm lab {SWARM_LAB} is already up (make down ENGINE=swarm stops it)")
        return 0
    made = cluster.init(client, labels.USER)
    if made:
        _say("made a single-node swarm (advertised on 127.0.0.1); `down --engine swarm` leaves it")
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
        _say("left the single-node swarm `up --engine swarm` made (docker_gwbridge removed)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if args.engine == "swarm":
        return cmd_up_swarm(args)
    images.ensure_all(names=images.LAB_IMAGES, say=_say)  # compose.yaml names these tags
    tool = compose.detect()
    _say(f"starting the lab with {tool} (Compose {tool.version}), project {args.project}")
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
        _say(f"healed {len(healed)} fault(s): {', '.join(healed)}")
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
    _say(f"removed {swept}")
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
        _say(f"lab {lab.id}: server healthy; starting {spec.clients} client(s)")
        result = lab.run_clients()
    problems = result.problems()
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as file:
            for record in result.records():
                file.write(json.dumps(record) + "\n")
        _say(f"wrote {out}")
    for client in result.clients:
        print(client.one_line())
    print(
        f"lab {result.lab}: {len(result.clients)} client(s) started in {result.start_s:.2f} s, "
        f"finished in {result.elapsed_s:.2f} s, {len(problems)} problem(s)"
    )
    for problem in problems[:20]:
        print(f"  {problem}")
    return 0 if not problems else 1


USAGE_ERROR = 2


def cmd_impair(args: argparse.Namespace) -> int:
    """Validate everything (parameters, target, host) before anything changes; exit 2 if bad."""
    lab = ComposeLab(args.project)
    try:
        impairment = Impairment.parse(
            **_fault_words(args), direction=args.direction, seed=args.seed
        )
        applied = impairs.apply(lab, args.target, impairment, backend=args.backend)
    except (ConfigError, FaultUnsupported) as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    described = applied.describe()
    names = [s.container.name for s in applied.sidecars if isinstance(s, Sidecar) and s.container]
    print(json.dumps({**described, "sidecars": names}) if args.json else _one_fault(described))
    _say(f"in force until `python -m harness heal {args.target} --project {args.project}`")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """Change the impairment in force on a target in place (the engine's rules and held
    packets stay); every target is checked before any changes, exit 2 if a check fails."""
    params = _fault_words(args)
    if not params:
        _say(f"error: nothing to change: give one of {', '.join('--' + w for w in FAULT_WORDS)}")
        return USAGE_ERROR
    try:
        chosen = ComposeLab(args.project).impairments(args.target, args.slot)
        for applied in chosen:
            applied.check(**params)
    except ConfigError as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    for applied in chosen:
        distribution = params.get("distribution")  # valid: checked above
        applied.update(
            delay=params.get("delay"),
            jitter=params.get("jitter"),
            correlation=params.get("correlation"),
            distribution=None if distribution is None else parse_distribution(distribution),
            loss=params.get("loss"),
            rate=params.get("rate"),
        )
        described = applied.describe()
        print(json.dumps(described) if args.json else _one_fault(described))
    return 0


class FaultWords(TypedDict, total=False):
    """The fault parameters given on the command line, as the user wrote them."""

    delay: str
    jitter: str
    correlation: str
    distribution: str
    loss: str
    rate: str


def _fault_words(args: argparse.Namespace) -> FaultWords:
    """The fault parameters given on the command line, as the user wrote them."""
    words: FaultWords = {}
    for name in FAULT_WORDS:
        value = getattr(args, name)
        if value is not None:
            words[name] = value
    return words


def _one_fault(d: Mapping[str, Any]) -> str:
    """One line for a fault as ``describe`` gives it (JSON from the sidecar's note)."""
    parts = []
    if d.get("delay_s") or d.get("jitter_s"):
        parts.append(f"delay {float(d['delay_s']) * 1e3:g}ms ± {float(d['jitter_s']) * 1e3:g}ms")
    if d.get("loss"):
        parts.append(f"loss {float(d['loss']) * 100:g}%")
    if d.get("rate_bit_s"):
        parts.append(f"rate {int(d['rate_bit_s']) / 1e6:g}mbit")
    targets = d.get("targets")
    where = ", ".join(targets) if isinstance(targets, list) else d.get("target")
    return f"{where}: {', '.join(parts)} on {d.get('direction')} ({d.get('backend')})"


def cmd_heal(args: argparse.Namespace) -> int:
    try:
        removed = ComposeLab(args.project).heal(args.target)
    except ConfigError as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    _say(f"removed {len(removed)} fault(s)" + (f": {', '.join(removed)}" if removed else ""))
    return 0


def cmd_faults(args: argparse.Namespace) -> int:
    listed = ComposeLab(args.project).faults()
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    if not listed:
        print(f"no fault in force on project {args.project}")
    for entry in listed:
        where = f"{entry['sidecar']} slot {entry['slot']}"
        if entry["state"] != "running":
            print(f"{where}: {entry['why']}")
        elif entry["kind"] == "block":
            print(f"{where}: {entry['target']}: block {entry['params'].get('direction')}")
        else:
            engine = entry.get("engine", {})
            counted = f"  [seen {engine['seen']}, dropped {engine['dropped']}]" if engine else ""
            print(f"{where}: {_one_fault(entry['params'])}{counted}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

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

    hurt = sub.add_parser(
        "impair",
        help="apply a network fault to the running Compose lab (until heal)",
        description="Units as tc spells them: 250us, 50ms, 1.5s; 1%; 500kbit, 10mbit. "
        "delay is added to each packet of the direction (egress: leaving the target).",
    )
    hurt.add_argument("target", help="server, clients, a service or a container of the project")
    _fault_options(hurt)
    hurt.add_argument("--direction", default="egress", help="egress (default), ingress or both")
    hurt.add_argument("--seed", type=int, default=0)
    hurt.add_argument(
        "--backend", choices=tuple(BACKENDS), default=None, help="default: the host's best"
    )
    hurt.add_argument("--project", default=PROJECT)
    hurt.add_argument("--json", action="store_true")
    hurt.set_defaults(func=cmd_impair)

    change = sub.add_parser(
        "update",
        help="change a fault in force on the Compose lab while traffic flows",
        description="Only the parameters given change; direction and seed stay. Units as for "
        "impair. A target holding several impairments needs --slot (see `faults`).",
    )
    change.add_argument("target", help="server, clients, a service or a container of the project")
    _fault_options(change)
    change.add_argument("--slot", type=int, default=None, help="which impairment (see faults)")
    change.add_argument("--project", default=PROJECT)
    change.add_argument("--json", action="store_true")
    change.set_defaults(func=cmd_update)

    heal = sub.add_parser("heal", help="remove the Compose lab's faults (of one target, or all)")
    heal.add_argument("target", nargs="?", default=None)
    heal.add_argument("--project", default=PROJECT)
    heal.set_defaults(func=cmd_heal)

    listed = sub.add_parser("faults", help="list the faults in force on the Compose lab")
    listed.add_argument("--project", default=PROJECT)
    listed.add_argument("--json", action="store_true")
    listed.set_defaults(func=cmd_faults)

    experiments.add_parser(sub)
    return top


FAULT_WORDS: Final = ("delay", "jitter", "correlation", "distribution", "loss", "rate")
_FAULT_HELP = {"distribution": "of jitter: uniform (default), normal, pareto, paretonormal"}


def _engine_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--engine",
        choices=("compose", "swarm"),
        default="compose",
        help="compose (one machine, the default) or swarm (services on a swarm)",
    )


def _fault_options(command: argparse.ArgumentParser) -> None:
    for name in FAULT_WORDS:
        command.add_argument(f"--{name}", help=_FAULT_HELP.get(name))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _sigterm_is_interrupt()
    try:
        return int(args.func(args))
    except EcholabError as error:
        _say(f"error: {error}")
        return 1
    except subprocess.CalledProcessError as error:
        _say(f"error: {error}")
        return error.returncode or 1
    except docker.errors.DockerException as error:
        _say(f"error: cannot talk to Docker: {error}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted; everything this run created was removed")
        return 130
