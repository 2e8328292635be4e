"""The fault commands on the running Compose lab: impair, update, heal, faults. Each checks
everything it is given (parameters, target, host) before it changes anything, and exits 2
(``USAGE_ERROR``) when a check fails."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any, Final, TypedDict

from harness.cli.common import PROJECT, USAGE_ERROR, say
from harness.compose_lab import ComposeLab
from harness.errors import ConfigError, FaultUnsupported
from harness.faults import impair as impairs
from harness.faults.capabilities import BACKENDS
from harness.faults.model import Impairment, parse_distribution
from harness.faults.sidecar import Sidecar

FAULT_WORDS: Final = ("delay", "jitter", "correlation", "distribution", "loss", "rate")
_FAULT_HELP = {"distribution": "of jitter: uniform (default), normal, pareto, paretonormal"}


def cmd_impair(args: argparse.Namespace) -> int:
    """Validate everything (parameters, target, host) before anything changes; exit 2 if bad."""
    lab = ComposeLab(args.project)
    try:
        impairment = Impairment.parse(
            **_fault_words(args), direction=args.direction, seed=args.seed
        )
        applied = impairs.apply(lab, args.target, impairment, backend=args.backend)
    except (ConfigError, FaultUnsupported) as error:
        say(f"error: {error}")
        return USAGE_ERROR
    described = applied.describe()
    names = [s.container.name for s in applied.sidecars if isinstance(s, Sidecar) and s.container]
    print(json.dumps({**described, "sidecars": names}) if args.json else _one_fault(described))
    say(f"in force until `python -m harness heal {args.target} --project {args.project}`")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """Change the impairment in force on a target in place (the engine's rules and held
    packets stay); every target is checked before any changes, exit 2 if a check fails."""
    params = _fault_words(args)
    if not params:
        say(f"error: nothing to change: give one of {', '.join('--' + w for w in FAULT_WORDS)}")
        return USAGE_ERROR
    try:
        chosen = ComposeLab(args.project).impairments(args.target, args.slot)
        for applied in chosen:
            applied.check(**params)
    except ConfigError as error:
        say(f"error: {error}")
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
        say(f"error: {error}")
        return USAGE_ERROR
    say(f"removed {len(removed)} fault(s)" + (f": {', '.join(removed)}" if removed else ""))
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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _fault_options(command: argparse.ArgumentParser) -> None:
    for name in FAULT_WORDS:
        command.add_argument(f"--{name}", help=_FAULT_HELP.get(name))
