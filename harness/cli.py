"""``python -m harness``: the lab from the command line (what the Makefile calls).

images   build the base (if needed), the server and the client images
up       start the Compose stack and wait until the server is healthy
run      an ephemeral lab: N client containers, every reply checked, results as JSON lines
down     stop the Compose stack
clean    remove every container, network (and with --images, image) the project created
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

        _say(f"fault sidecar ready: {fault_image.build(say=_say)}")
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    built = sub.add_parser("images", help="build the lab's images (base too, if missing)")
    built.add_argument("--faults", action="store_true", help="also the fault-injection sidecar")
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
    return top


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
