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
import subprocess
from collections.abc import Sequence

import docker

from harness.cli import faults, lab
from harness.cli.common import say, sigterm_is_interrupt
from harness.errors import EcholabError
from harness.experiment import cli as experiments


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    lab.add_parsers(sub)
    faults.add_parsers(sub)
    experiments.add_parser(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sigterm_is_interrupt()
    try:
        return int(args.func(args))
    except EcholabError as error:
        say(f"error: {error}")
        return 1
    except subprocess.CalledProcessError as error:
        say(f"error: {error}")
        return error.returncode or 1
    except docker.errors.DockerException as error:
        say(f"error: cannot talk to Docker: {error}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; everything this run created was removed")
        return 130
