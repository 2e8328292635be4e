"""An experiment's runs: the grid's product times the repetitions, each with its own seed, in
the declared order or shuffled by the seed (flent shuffles by default: runs late in a batch
must not all share what the machine did late). Pure: ``Experiment`` in, ``Run`` list out.

Each run is checked against what the lab accepts before anything starts: the client's own
payload rule (``--size`` fits the header), the lab's ``Workload``, ``Impairment`` and
``Toxic``, that every client a schedule names exists, that a ``toxics`` name is declared.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from echo_client.workload import min_size

from harness.errors import ConfigError
from harness.experiment.declare import (
    DEFAULT_SCHEDULE,
    NO_SCHEDULE,
    NO_TOXICS,
    SETTINGS,
    Event,
    Experiment,
    ExperimentError,
    Value,
)
from harness.faults.model import Impairment, parse_duration, parse_percent
from harness.faults.toxic import Toxic
from harness.spec import LabSpec, ServerSpec, Workload


@dataclass(frozen=True)
class Run:
    """One run: a point of the grid and its repetition. ``id`` is stable for a given file
    (the point's place in the declared product, and the repetition), so ``--resume`` finds
    what is done whatever the order."""

    id: str
    point: int
    repetition: int
    seed: int
    settings: Mapping[str, Value]

    def label(self, keys: Sequence[str]) -> str:
        shown = " ".join(f"{k}={self.settings[k]}" for k in keys)
        return f"{shown} #{self.repetition}" if shown else f"#{self.repetition}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "point": self.point,
            "repetition": self.repetition,
            "seed": self.seed,
            "settings": dict(self.settings),
        }


def run_seed(seed: int, run_id: str) -> int:
    """A run's seed: from the experiment's and the run's id, the same on every machine."""
    digest = hashlib.sha256(f"{seed}:{run_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def expand(experiment: Experiment) -> list[Run]:
    """Every run, in the order they will run; ``ExperimentError`` if any run is not possible."""
    base = {key: default for key, (_, default) in SETTINGS.items()}
    if DEFAULT_SCHEDULE not in experiment.schedules:
        base["schedule"] = NO_SCHEDULE
    base.update(experiment.base)
    keys = [key for key, _ in experiment.grid]
    points = list(itertools.product(*(values for _, values in experiment.grid)))
    runs = []
    for point, values in enumerate(points):
        settings = {**base, **dict(zip(keys, values, strict=True))}
        check(experiment, settings, f"grid point {point} ({_describe(keys, values)})")
        for repetition in range(experiment.repetitions):
            run_id = f"{point:03d}-r{repetition}"
            seed = run_seed(experiment.seed, run_id)
            runs.append(Run(run_id, point, repetition, seed, settings))
    if experiment.order == "shuffle":
        random.Random(experiment.seed).shuffle(runs)
    return runs


def _describe(keys: Sequence[str], values: Sequence[Value]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(keys, values, strict=True)) or "no grid"


def _why(key: str, value: object, where: str, allowed: str) -> ExperimentError:
    return ExperimentError(f"{key} (in {where})", value, allowed)


def check(experiment: Experiment, settings: Mapping[str, Value], where: str) -> None:
    """What one run would ask of the lab, checked with the lab's own rules."""
    clients = int(settings["clients"])
    workload_of(experiment, settings)  # Workload's own checks, and connections
    needed = min_size(f"c{clients - 1}", int(settings["messages"]))
    if int(settings["size"]) < needed:
        raise _why("size", settings["size"], where, f">= {needed} (the client's header + newline)")
    if settings["placement"] != "any" and experiment.engine != "swarm":
        raise _why("placement", settings["placement"], where, "'any' unless engine = 'swarm'")
    if settings["framing"] == "raw" and int(settings["pipeline"]) > 1:
        raise _why("pipeline", settings["pipeline"], where, "1 with framing 'raw'")
    try:
        impairment_of(experiment, settings)
    except ConfigError as error:
        raise _why("delay/jitter/loss/bandwidth", None, where, str(error)) from None
    name = str(settings["toxics"])
    if name != NO_TOXICS and name not in experiment.toxic_sets:
        declared = ", ".join(["none", *experiment.toxic_sets])
        raise _why("toxics", name, where, f"a declared set: {declared}")
    schedule = str(settings["schedule"])
    if schedule != NO_SCHEDULE and schedule not in experiment.schedules:
        declared = ", ".join(["none", *experiment.schedules])
        raise _why("schedule", schedule, where, f"a declared schedule: {declared}")
    for target in {experiment.fault_target, *(e.target for e in schedule_of(experiment, settings))}:
        if target in ("server", "clients", "all"):
            continue
        if not _is_client(target, clients):
            raise _why("target", target, where, f"'server', 'clients' or c0..c{clients - 1}")


def _is_client(target: str, clients: int) -> bool:
    return target.startswith("c") and target[1:].isdigit() and int(target[1:]) < clients


def workload_of(experiment: Experiment, settings: Mapping[str, Value]) -> Workload:
    """The lab's ``Workload`` for a run. ``connections`` goes to it only when not 1, and a
    lab whose ``Workload`` has no such field says so instead of ignoring it."""
    words: dict[str, Any] = {
        "count": int(settings["messages"]),
        "size": int(settings["size"]),
        "pipeline": int(settings["pipeline"]),
        "rate": float(settings["rate"]) or None,
        "timeout": experiment.timeout,
    }
    words["connections"] = int(settings["connections"])
    try:
        return Workload(**words)
    except ConfigError as error:
        raise ExperimentError("run settings", dict(settings), str(error)) from None


def lab_spec_of(experiment: Experiment, run: Run) -> LabSpec:
    """The lab a run is made on: one per run, so no run inherits another's server state."""
    clients = int(run.settings["clients"])
    workload = workload_of(experiment, run.settings)
    # The server admits what the run asks for (its default, 10,000, at least).
    admits = max(ServerSpec.max_connections, clients * workload.connections)
    return LabSpec(
        name="exp",
        clients=clients,
        workload=workload,
        server=ServerSpec(framing=str(run.settings["framing"]), max_connections=admits),
    )


def impairment_of(experiment: Experiment, settings: Mapping[str, Value]) -> Impairment | None:
    """The packet fault held on ``fault_target`` for the whole run, or None."""
    words = {
        "delay": parse_duration(settings["delay"], "delay"),
        "jitter": parse_duration(settings["jitter"], "jitter"),
        "loss": parse_percent(settings["loss"], "loss"),
    }
    bandwidth = str(settings["bandwidth"]) or None
    if not any(words.values()) and bandwidth is None:
        return None
    return Impairment.parse(
        delay=settings["delay"],
        jitter=settings["jitter"],
        loss=settings["loss"],
        rate=bandwidth,
        direction=experiment.direction,
    )


def toxics_of(experiment: Experiment, settings: Mapping[str, Value]) -> tuple[Toxic, ...] | None:
    """The proxy's toxics for a run, or None: clients then talk to the server directly."""
    name = str(settings["toxics"])
    return None if name == NO_TOXICS else experiment.toxic_sets[name]


def schedule_of(experiment: Experiment, settings: Mapping[str, Value]) -> tuple[Event, ...]:
    """The faults over time of a run (none for the schedule "none")."""
    return experiment.schedules.get(str(settings["schedule"]), ())


def event_words(event: Event, seed: int) -> dict[str, Any]:
    """``lab.impair``'s keyword arguments for a scheduled impair, seeded by the run."""
    return {**dict(event.params), "seed": seed}


def override(doc: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` assignments (``run.clients=3``, ``grid.delay=["0ms","20ms"]``,
    ``experiment.seed=7``) applied to a parsed document; a value is read as TOML, and as a
    plain string when it is not TOML (``grid.delay=20ms`` is the string ``"20ms"``); a single
    value given to a grid key is a list of one."""
    result = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        parts = path.strip().split(".")
        if not sep or len(parts) != 2 or parts[0] not in ("experiment", "run", "grid", "search"):
            raise ExperimentError(
                "--set", assignment, "TABLE.KEY=VALUE with TABLE experiment, run, grid or search"
            )
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        if parts[0] == "grid" and not isinstance(value, list):
            value = [value]
        table = result.setdefault(parts[0], {})
        if not isinstance(table, dict):
            raise ExperimentError(parts[0], table, "a table")
        table[parts[1]] = value
        if parts[0] == "run" and parts[1] in result.get("grid", {}):
            del result["grid"][parts[1]]  # a fixed value replaces a swept one
    return result
