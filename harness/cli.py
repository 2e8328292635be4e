"""``python -m harness``: the lab from the command line (what the Makefile calls).

images   build the base (if needed), the server and the client images
up       start the Compose stack and wait until the server is healthy
run      an ephemeral lab: N client containers, every reply checked, results as JSON lines
down     stop the Compose stack (its faults healed first)
clean    remove every container, network (and with --images, image) the project created
impair   a network fault on the running Compose lab (stays until heal): delay, jitter, loss, rate
update   change a fault in force on the Compose lab while traffic flows (same units as impair)
heal     remove the Compose lab's faults (of one target, or all)
faults   list the faults in force on the Compose lab, with their parameters
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import docker

from harness import compose, images, sweep
from harness.lab import Lab, LabError
from harness.spec import LabSpec, ServerSpec, Workload
from harness.waiting import NotReady, WaitTimeout, wait_for

PROJECT = "echolab"


def _say(message: str) -> None:
    print(f"echolab: {message}", file=sys.stderr, flush=True)


def _sigterm_is_interrupt() -> None:
    """SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so every ``finally`` runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def cmd_images(args: argparse.Namespace) -> int:
    base = images.build_all(say=_say)
    _say(f"images ready: {images.SERVER_IMAGE}, {images.CLIENT_IMAGE} (base {base})")
    if args.faults:
        from harness.faults import image as fault_image
        from harness.faults.proxy import image as proxy_image

        _say(f"fault sidecar ready: {fault_image.build(say=_say)}")
        _say(f"fault proxy ready: {proxy_image.build(say=_say)}")
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from harness.faults import image as fault_image
    from harness.faults import preflight

    client = docker.from_env()
    report = preflight(client, fault_image.build(client, say=_say))
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
            {found[0].name: found[0].logs(tail=30).decode()},
        )
    health = state.get("Health", {}).get("Status", "none")
    if health != "healthy":
        raise NotReady(f"health={health}")
    return found[0].name


def cmd_up(args: argparse.Namespace) -> int:
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
    from harness.faults.compose_lab import ComposeLab

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
    swept = sweep.sweep(docker.from_env(), everything=True, images=args.images)
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
        ),
        server=ServerSpec(framing=args.framing),
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
    from harness.faults import FaultUnsupported, Impairment, apply
    from harness.faults.compose_lab import ComposeLab

    params = {**_fault_words(args), "direction": args.direction, "seed": args.seed}
    lab = ComposeLab(args.project)
    try:
        Impairment.parse(**params)
        lab.resolve_target(args.target)
    except ValueError as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    try:
        applied = apply(lab, args.target, backend=args.backend, **params)
    except (ValueError, FaultUnsupported) as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    described = applied.describe()
    names = [s.container.name for s in applied.sidecars if s.container is not None]
    print(json.dumps({**described, "sidecars": names}) if args.json else _one_fault(described))
    _say(f"in force until `python -m harness heal {args.target} --project {args.project}`")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """Change the impairment in force on a target in place (the engine's rules and held
    packets stay); every target is checked before any changes, exit 2 if a check fails."""
    from harness.faults.compose_lab import ComposeLab

    params = _fault_words(args)
    if not params:
        _say(f"error: nothing to change: give one of {', '.join('--' + w for w in FAULT_WORDS)}")
        return USAGE_ERROR
    try:
        chosen = ComposeLab(args.project).impairments(args.target, args.slot)
        for applied in chosen:
            applied.check(**params)
    except ValueError as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    for applied in chosen:
        applied.update(**params)
        described = applied.describe()
        print(json.dumps(described) if args.json else _one_fault(described))
    return 0


def _fault_words(args: argparse.Namespace) -> dict[str, str]:
    """The fault parameters given on the command line, as the user wrote them."""
    given = {name: getattr(args, name) for name in FAULT_WORDS}
    return {name: value for name, value in given.items() if value is not None}


def _one_fault(d: dict[str, object]) -> str:
    parts = []
    if d.get("delay_s") or d.get("jitter_s"):
        parts.append(f"delay {float(d['delay_s']) * 1e3:g}ms ± {float(d['jitter_s']) * 1e3:g}ms")  # type: ignore[arg-type]
    if d.get("loss"):
        parts.append(f"loss {float(d['loss']) * 100:g}%")  # type: ignore[arg-type]
    if d.get("rate_bit_s"):
        parts.append(f"rate {int(d['rate_bit_s']) / 1e6:g}mbit")  # type: ignore[call-overload]
    targets = d.get("targets")
    where = ", ".join(targets) if isinstance(targets, list) else d.get("target")
    return f"{where}: {', '.join(parts)} on {d.get('direction')} ({d.get('backend')})"


def cmd_heal(args: argparse.Namespace) -> int:
    from harness.faults.compose_lab import ComposeLab

    try:
        removed = ComposeLab(args.project).heal(args.target)
    except ValueError as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    _say(f"removed {len(removed)} fault(s)" + (f": {', '.join(removed)}" if removed else ""))
    return 0


def cmd_faults(args: argparse.Namespace) -> int:
    from harness.faults.compose_lab import ComposeLab

    listed = ComposeLab(args.project).faults()
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    if not listed:
        print(f"no fault in force on project {args.project}")
    for entry in listed:
        engine = entry.get("engine", {})
        counted = (
            f"  [seen {engine['seen']}, dropped {engine['dropped']}]" if "seen" in engine else ""
        )
        print(f"{entry['sidecar']} slot {entry['slot']}: {_one_fault(entry['params'])}{counted}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    built = sub.add_parser("images", help="build the lab's images (base too, if missing)")
    built.add_argument(
        "--faults", action="store_true", help="also the fault sidecar and proxy images"
    )
    built.set_defaults(func=cmd_images)

    check = sub.add_parser("preflight", help="which network faults this host can apply, and how")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_preflight)

    up = sub.add_parser("up", help="start the Compose lab and wait until the server is healthy")
    up.add_argument("--project", default=PROJECT)
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the Compose lab")
    down.add_argument("--project", default=PROJECT)
    down.set_defaults(func=cmd_down)

    clean = sub.add_parser(
        "clean", help="remove every labelled container and network of the project"
    )
    clean.add_argument("--images", action="store_true", help="remove the project's images too")
    clean.set_defaults(func=cmd_clean)

    run = sub.add_parser("run", help="run N clients in an ephemeral lab and check every reply")
    run.add_argument("--clients", type=int, default=10)
    run.add_argument("--count", type=int, default=100, help="messages per client")
    run.add_argument("--size", type=int, default=64, help="bytes per message, newline included")
    run.add_argument("--pipeline", type=int, default=1, help="requests outstanding per client")
    run.add_argument("--rate", type=float, default=None, help="messages per second per client")
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
    hurt.add_argument("--backend", choices=("netem", "nfqueue"), default=None)
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
    return top


FAULT_WORDS = ("delay", "jitter", "correlation", "distribution", "loss", "rate")
_FAULT_HELP = {"distribution": "of jitter: uniform (default), normal, pareto, paretonormal"}


def _fault_options(command: argparse.ArgumentParser) -> None:
    for name in FAULT_WORDS:
        command.add_argument(f"--{name}", help=_FAULT_HELP.get(name))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _sigterm_is_interrupt()
    try:
        return int(args.func(args))
    except (LabError, WaitTimeout, ValueError, RuntimeError) as error:
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
