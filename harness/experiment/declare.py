"""An experiment declared in TOML, read into a frozen, typed ``Experiment`` (pure: text in).

Every key is checked before any container exists, and a bad one raises ``ExperimentError``
naming the key (as a path into the file: ``grid.delay[1]``), the value and what is allowed.
Values keep the spelling the user wrote (``"20ms"``), so the expanded runs print and store as
declared; the lab's own types (``Workload``, ``Impairment``, ``Toxic``) are built from them in
``expand`` with the lab's own validation.

The file (see ``examples/``)::

    [experiment]            name, seed, repetitions, order ("shuffle" | "declared"), timeout,
                            fault_target, direction, backend, engine ("docker" | "swarm"),
                            nodes (swarm: 0 the engine's own swarm, >= 2 simulated nodes)
    [run]                   one value per key: the settings every run starts from
    [grid]                  a list per key: the runs are the product of all lists
    [toxics.NAME]           named sets of proxy toxics, chosen with the key toxics = "NAME"
    [[schedule]]            faults over time: at, action, target, and impair's parameters
    [schedules.NAME]        other named schedules (arrays of the same tables), chosen with the
                            key schedule = "NAME" ("default": [[schedule]]; "none": no fault)
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ConfigError
from harness.faults.model import (
    DIRECTIONS,
    Impairment,
    parse_duration,
    parse_percent,
    parse_rate,
)
from harness.faults.toxic import Toxic
from harness.spec import FRAMINGS

Value = str | int | float
Order = Literal["shuffle", "declared"]
Action = Literal["impair", "partition", "heal", "restart"]
ACTIONS: tuple[Action, ...] = ("impair", "partition", "heal", "restart")
PLACEMENTS = ("any", "same", "cross")  # clients on the server's node, on others (Swarm)
NO_TOXICS = "none"
NO_SCHEDULE = "none"
DEFAULT_SCHEDULE = "default"


class ExperimentError(ConfigError):
    """A key of the experiment file with a value that is not allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {value!r}: not allowed; allowed: {allowed}")


def _int(low: int) -> Callable[[str, object], int]:
    def check(key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ExperimentError(key, value, f"an integer >= {low}")
        return value

    return check


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ExperimentError(key, value, "a number >= 0 (0: as fast as the pipeline allows)")
    return float(value)


def _spelled(parse: Callable[[str | float, str], object], example: str) -> Callable[..., str]:
    def check(key: str, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ExperimentError(key, value, example)
        try:
            parse(value, key)
        except ConfigError as error:
            raise ExperimentError(key, value, f"{example} ({error})") from None
        return str(value)

    return check


def _bandwidth(key: str, value: object) -> str:
    if value in ("", NO_TOXICS):
        return ""
    return _spelled(parse_rate, "a rate such as '10mbit', or '' for none")(key, value)


def _choice(options: tuple[str, ...]) -> Callable[[str, object], str]:
    def check(key: str, value: object) -> str:
        if value not in options:
            raise ExperimentError(key, value, f"one of {', '.join(map(repr, options))}")
        return str(value)

    return check


def _action(key: str, value: object) -> Action:
    for action in ACTIONS:
        if value == action:
            return action
    raise ExperimentError(key, value, f"one of {', '.join(map(repr, ACTIONS))}")


def _name(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ExperimentError(key, value, "the name of a declared set ([toxics.NAME], "
                              "[schedules.NAME]), or 'none'")  # fmt: skip
    return value


# The keys of [run] and [grid]: each run's settings. ``rate`` is messages/s per client (0: none);
# ``delay``/``jitter``/``loss``/``bandwidth`` a packet fault on ``fault_target`` for the whole run.
SETTINGS: dict[str, tuple[Callable[[str, object], Value], Value]] = {
    "clients": (_int(1), 1),
    "connections": (_int(1), 1),
    "messages": (_int(1), 100),
    "size": (_int(2), 64),
    "pipeline": (_int(1), 1),
    "rate": (_number, 0.0),
    "framing": (_choice(FRAMINGS), "line"),
    "delay": (_spelled(parse_duration, "a duration such as '20ms', '250us' or 0"), "0"),
    "jitter": (_spelled(parse_duration, "a duration such as '2ms' or 0"), "0"),
    "loss": (_spelled(parse_percent, "a percentage such as '1%' or 0"), "0"),
    "bandwidth": (_bandwidth, ""),
    "toxics": (_name, NO_TOXICS),
    "schedule": (_name, DEFAULT_SCHEDULE),  # "none" where no [[schedule]] is declared
    "placement": (_choice(PLACEMENTS), "any"),
}


@dataclass(frozen=True)
class Event:
    """One fault at a time into the run (seconds after the clients were let go).

    ``impair`` adds a packet fault on ``target`` (``params``: delay, jitter, loss, rate,
    direction, as ``lab.impair`` spells them); ``partition`` cuts ``target`` off the network;
    ``heal`` removes what earlier events put on ``target`` (every one when ``target`` is
    ``"all"``); ``restart`` restarts the server (it drains first).
    """

    at: float
    action: Action
    target: str
    params: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"at_s": self.at, "action": self.action, "target": self.target, **dict(self.params)}


@dataclass(frozen=True)
class Experiment:
    """A whole experiment as declared (``expand`` makes its runs)."""

    name: str
    seed: int = 0
    repetitions: int = 1
    order: Order = "shuffle"
    timeout: float = 120.0  # seconds each client may take
    fault_target: str = "server"
    direction: str = "egress"
    backend: str | None = None
    engine: str = "docker"  # or "swarm": each run on a SwarmLab
    nodes: int = 0  # swarm: 0 the engine's own swarm; >= 2 simulated nodes made for the batch
    base: Mapping[str, Value] = field(default_factory=dict)
    grid: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    toxic_sets: Mapping[str, tuple[Toxic, ...]] = field(default_factory=dict)
    schedules: Mapping[str, tuple[Event, ...]] = field(default_factory=dict)

    @property
    def swept(self) -> tuple[str, ...]:
        """The keys whose grid list has more than one value (what plots put on their x axis)."""
        return tuple(key for key, values in self.grid if len(values) > 1)


_TOP = ("experiment", "run", "grid", "toxics", "schedule", "schedules", "search")
_EXPERIMENT = (
    "name", "seed", "repetitions", "order", "timeout", "fault_target", "direction", "backend",
    "engine", "nodes",
)  # fmt: skip
_IMPAIR_WORDS = ("delay", "jitter", "loss", "rate", "direction", "correlation", "distribution")


def _table(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ExperimentError(key, value, "a table ([" + key + "])")
    return value


def _unknown(where: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise ExperimentError(path, table[key], "a key among " + ", ".join(allowed))


def _settings(table: Mapping[str, Any]) -> dict[str, Value]:
    _unknown("run", table, tuple(SETTINGS))
    return {key: SETTINGS[key][0](f"run.{key}", value) for key, value in table.items()}


def _grid(table: Mapping[str, Any]) -> tuple[tuple[str, tuple[Value, ...]], ...]:
    _unknown("grid", table, tuple(SETTINGS))
    grid = []
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise ExperimentError(f"grid.{key}", values, "a non-empty list of values")
        check = SETTINGS[key][0]
        checked = tuple(check(f"grid.{key}[{i}]", v) for i, v in enumerate(values))
        if len(set(checked)) != len(checked):
            raise ExperimentError(f"grid.{key}", values, "a list without repeated values")
        grid.append((key, checked))
    return tuple(grid)


def _toxic_sets(table: Mapping[str, Any]) -> dict[str, tuple[Toxic, ...]]:
    sets: dict[str, tuple[Toxic, ...]] = {}
    for name, toxics in table.items():
        if name == NO_TOXICS or not isinstance(toxics, list):
            raise ExperimentError(f"toxics.{name}", toxics, "a list of toxic tables, not 'none'")
        found = []
        for i, toxic in enumerate(toxics):
            key = f"toxics.{name}[{i}]"
            if not isinstance(toxic, dict):
                raise ExperimentError(key, toxic, "a table {type = ..., attributes = {...}}")
            try:
                found.append(Toxic.from_dict(toxic))
            except ConfigError as error:
                raise ExperimentError(key, toxic, f"a valid toxic ({error})") from None
        sets[name] = tuple(found)
    return sets


def _event(where: str, i: int, entry: object) -> Event:
    key = f"{where}[{i}]"
    if not isinstance(entry, dict):
        raise ExperimentError(key, entry, "a table {at = '2s', action = ..., target = ...}")
    _unknown(key, entry, ("at", "action", "target", *_IMPAIR_WORDS))
    if "at" not in entry:
        raise ExperimentError(f"{key}.at", None, "a time into the run such as '2s'")
    at = parse_duration_key(f"{key}.at", entry["at"])
    action = _action(f"{key}.action", entry.get("action"))
    default_target = "all" if action == "heal" else "server"
    target = entry.get("target", default_target)
    if not isinstance(target, str) or not target:
        raise ExperimentError(f"{key}.target", target, "'server', 'clients' or a client id")
    params = {k: v for k, v in entry.items() if k in _IMPAIR_WORDS}
    if action != "impair" and params:
        first = next(iter(params))
        raise ExperimentError(f"{key}.{first}", params[first], f"nothing: {action} takes none")
    if action == "impair":
        if not params:
            raise ExperimentError(key, entry, "an impair with delay, jitter, loss or rate")
        _check_impairment(key, params)
    if action == "restart" and target != "server":
        raise ExperimentError(f"{key}.target", target, "'server' (only the server restarts)")
    return Event(at, action, target, tuple((k, str(v)) for k, v in params.items()))


def _schedule(where: str, entries: object) -> tuple[Event, ...]:
    if not isinstance(entries, list):
        raise ExperimentError(where, entries, "an array of tables ([[schedule]])")
    events = (_event(where, i, entry) for i, entry in enumerate(entries))
    return tuple(sorted(events, key=lambda e: e.at))


def parse_duration_key(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ExperimentError(key, value, "a duration such as '2s' or '500ms'")
    try:
        return parse_duration(value, key)
    except ConfigError as error:
        raise ExperimentError(key, value, f"a duration such as '2s' ({error})") from None


def _check_impairment(key: str, params: Mapping[str, Any]) -> None:
    try:
        Impairment.parse(**{k: v for k, v in params.items()})
    except (ConfigError, TypeError) as error:
        raise ExperimentError(key, dict(params), f"impair's parameters ({error})") from None


def _meta(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    _unknown("experiment", table, _EXPERIMENT)
    meta: dict[str, Any] = {}
    name = table.get("name", source)
    if not isinstance(name, str) or not name:
        raise ExperimentError("experiment.name", name, "a non-empty string")
    meta["name"] = name
    meta["seed"] = _int(0)("experiment.seed", table.get("seed", 0))
    meta["repetitions"] = _int(1)("experiment.repetitions", table.get("repetitions", 1))
    meta["order"] = _choice(("shuffle", "declared"))(
        "experiment.order", table.get("order", "shuffle")
    )
    meta["timeout"] = parse_duration_key("experiment.timeout", table.get("timeout", "120s"))
    if meta["timeout"] <= 0:
        raise ExperimentError("experiment.timeout", table.get("timeout"), "a duration > 0")
    target = table.get("fault_target", "server")
    if not isinstance(target, str) or not target:
        raise ExperimentError("experiment.fault_target", target, "'server', 'clients' or an id")
    meta["fault_target"] = target
    meta["direction"] = _choice(DIRECTIONS)(
        "experiment.direction", table.get("direction", "egress")
    )
    backend = table.get("backend")
    if backend is not None:
        backend = _choice(("netem", "nfqueue"))("experiment.backend", backend)
    meta["backend"] = backend
    meta["engine"] = _choice(("docker", "swarm"))(
        "experiment.engine", table.get("engine", "docker")
    )
    meta["nodes"] = _int(0)("experiment.nodes", table.get("nodes", 0))
    if meta["nodes"] == 1 or (meta["nodes"] and meta["engine"] != "swarm"):
        raise ExperimentError("experiment.nodes", meta["nodes"], "0, or >= 2 with engine = 'swarm'")
    return meta


def parse(text: str, source: str = "experiment") -> Experiment:
    """The experiment a TOML text declares, or ``ExperimentError`` naming what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    return from_document(doc, source)


def from_document(doc: Mapping[str, Any], source: str = "experiment") -> Experiment:
    """The experiment a parsed TOML document declares (overrides are applied to it first)."""
    _unknown("", doc, _TOP)
    schedules = {DEFAULT_SCHEDULE: _schedule("schedule", doc.get("schedule", []))}
    for name, entries in _table(doc, "schedules").items():
        if name in (NO_SCHEDULE, DEFAULT_SCHEDULE):
            raise ExperimentError(f"schedules.{name}", entries, "a name other than none, default")
        schedules[name] = _schedule(f"schedules.{name}", entries)
    if not schedules[DEFAULT_SCHEDULE]:
        del schedules[DEFAULT_SCHEDULE]
    experiment = Experiment(
        **_meta(_table(doc, "experiment"), source),
        base=_settings(_table(doc, "run")),
        grid=_grid(_table(doc, "grid")),
        toxic_sets=_toxic_sets(_table(doc, "toxics")),
        schedules=schedules,
    )
    return experiment
