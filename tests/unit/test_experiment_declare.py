"""An experiment file read, checked and expanded: the grid as declared, the errors as promised."""

from __future__ import annotations

import dataclasses
import tomllib
from collections import Counter

import pytest

from harness.experiment.declare import Experiment, ExperimentError, parse
from harness.experiment.expand import expand, lab_spec_of, override, run_seed, workload_of

FILE = """
[experiment]
name = "sweep"
seed = 7
repetitions = 2

[run]
messages = 50
size = 64

[grid]
clients = [1, 3]
delay = ["0ms", "20ms", "50ms"]

[toxics]
slow = [{type = "latency", attributes = {latency = "20ms"}}]

[[schedule]]
at = "5s"
action = "partition"
target = "c0"

[[schedule]]
at = "2s"
action = "impair"
target = "server"
delay = "50ms"

[[schedule]]
at = "8s"
action = "heal"
"""


def test_grid_is_the_product_times_repetitions() -> None:
    experiment = parse(FILE.replace('target = "c0"', 'target = "server"'))
    runs = expand(experiment)
    assert len(runs) == 2 * 3 * 2
    points = Counter((r.settings["clients"], r.settings["delay"]) for r in runs)
    assert set(points) == {(c, d) for c in (1, 3) for d in ("0ms", "20ms", "50ms")}
    assert set(points.values()) == {2}
    assert {r.settings["messages"] for r in runs} == {50}
    assert experiment.swept == ("clients", "delay")


def test_schedule_is_sorted_by_time_and_typed() -> None:
    experiment = parse(FILE.replace('target = "c0"', 'target = "server"'))
    schedule = experiment.schedules["default"]
    assert [(e.at, e.action) for e in schedule] == [
        (2.0, "impair"),
        (5.0, "partition"),
        (8.0, "heal"),
    ]
    assert schedule[0].params == (("delay", "50ms"),)
    assert schedule[2].target == "all"


def test_shuffled_by_seed_reproducibly_declared_order_kept() -> None:
    text = FILE.replace('target = "c0"', 'target = "server"')
    first, again = expand(parse(text)), expand(parse(text))
    assert [r.id for r in first] == [r.id for r in again]
    declared = expand(parse(text.replace("repetitions = 2", 'repetitions = 2\norder = "declared"')))
    ids = [r.id for r in declared]
    assert ids == sorted(ids)
    assert [r.id for r in first] != ids
    assert sorted(r.id for r in first) == ids
    other_seed = expand(parse(text.replace("seed = 7", "seed = 8")))
    assert [r.id for r in other_seed] != [r.id for r in first]


def test_each_run_has_its_own_stable_seed() -> None:
    runs = expand(parse(FILE.replace('target = "c0"', 'target = "server"')))
    assert len({r.seed for r in runs}) == len(runs)
    for run in runs:
        assert run.seed == run_seed(7, run.id)


def test_partition_of_a_client_some_runs_lack_is_refused_before_anything_runs() -> None:
    with pytest.raises(ExperimentError) as raised:
        expand(parse(FILE.replace('target = "c0"', 'target = "c2"')))
    message = str(raised.value)
    assert message.startswith("target (in grid point")
    assert "clients=1" in message  # which run
    assert "c0..c0" in message  # what is allowed


@pytest.mark.parametrize(
    ("change", "key", "allowed"),
    [
        (("clients = [1, 3]", "clients = [1, 0]"), "grid.clients[1]", "an integer >= 1"),
        (('delay = ["0ms"', 'delay = ["0 parsecs"'), "grid.delay[0]", "a duration"),
        (('"50ms"]', '"50ms", "50ms"]'), "grid.delay", "without repeated"),
        (("size = 64", "sise = 64"), "run.sise", "a key among clients"),
        (("repetitions = 2", "repetitions = 0"), "experiment.repetitions", ">= 1"),
        (("seed = 7", 'order = "random"'), "experiment.order", "'shuffle', 'declared'"),
        (('action = "heal"', 'action = "explode"'), "schedule[2].action", "'impair'"),
        (('at = "5s"', 'at = "5"'), "schedule[0].at", "a duration"),
        (('delay = "50ms"', 'delay = "50ms"\nloss = "200%"'), "schedule[1]", "100%"),
        (('latency = "20ms"', 'latency = "fast"'), "toxics.slow[0]", "a valid toxic"),
        (("[run]", "[runs]"), "runs", "experiment, run, grid"),
    ],
)
def test_a_bad_file_names_key_value_and_what_is_allowed(
    change: tuple[str, str], key: str, allowed: str
) -> None:
    old, new = change
    assert old in FILE
    with pytest.raises(ExperimentError) as raised:
        expand(parse(FILE.replace(old, new)))
    assert raised.value.key == key
    assert allowed in str(raised.value)


def test_not_toml_is_a_config_error_naming_the_file() -> None:
    with pytest.raises(Exception, match=r"sweep.toml: not valid TOML"):
        parse("[experiment\n", "sweep.toml")


def test_size_too_small_for_the_clients_header_is_refused() -> None:
    text = "[run]\nclients = 12\nmessages = 100\nsize = 8\n"
    with pytest.raises(ExperimentError, match=r">= \d+ \(the client's header"):
        expand(parse(text))


def test_unknown_toxic_set_is_refused() -> None:
    with pytest.raises(ExperimentError, match="a declared set: none, slow"):
        expand(parse(FILE.replace("[grid]", '[grid]\ntoxics = ["none", "fast"]')))


def test_connections_reach_the_workload_and_size_the_server() -> None:
    experiment = Experiment(name="x")
    run = expand(experiment)[0]
    settings = {**dict(run.settings)}
    assert workload_of(experiment, settings).count == 100
    assert workload_of(experiment, settings).connections == 1
    settings.update(connections=400, clients=50)
    assert workload_of(experiment, settings).connections == 400
    spec = lab_spec_of(experiment, dataclasses.replace(run, settings=settings))
    assert spec.server.max_connections == 20_000  # 50 x 400, above the default 10,000


def test_lab_spec_of_a_run() -> None:
    experiment = parse(FILE.replace('target = "c0"', 'target = "server"'))
    run = next(r for r in expand(experiment) if r.settings["clients"] == 3)
    spec = lab_spec_of(experiment, run)
    assert spec.clients == 3
    assert spec.workload.count == 50


def test_overrides_replace_keys_as_toml_or_as_plain_strings() -> None:
    doc = tomllib.loads(FILE)
    changed = override(
        doc, ["experiment.seed=9", "grid.delay=20ms", "grid.clients=[3]", "run.size=128"]
    )
    experiment = parse_doc(changed)
    assert experiment.seed == 9
    assert dict(experiment.grid)["delay"] == ("20ms",)
    runs = expand(experiment)
    assert {r.settings["size"] for r in runs} == {128}
    assert {r.settings["clients"] for r in runs} == {3}
    assert doc["experiment"]["seed"] == 7  # the declared document is not changed


def test_a_fixed_override_replaces_a_swept_key() -> None:
    experiment = parse_doc(override(tomllib.loads(FILE), ["run.clients=3"]))
    assert {r.settings["clients"] for r in expand(experiment)} == {3}


def test_bad_override_is_refused() -> None:
    with pytest.raises(ExperimentError, match=r"TABLE\.KEY=VALUE"):
        override({}, ["seed"])


def parse_doc(doc: dict[str, object]) -> Experiment:
    from harness.experiment.declare import from_document

    return from_document(doc)


NAMED = """
[grid]
schedule = ["none", "cut"]

[schedules]
cut = [{at = "1s", action = "partition", target = "c0"}, {at = "2s", action = "heal"}]
"""


def test_named_schedules_are_chosen_per_run() -> None:
    from harness.experiment.expand import schedule_of

    experiment = parse(NAMED)
    runs = expand(experiment)
    chosen = {r.settings["schedule"]: schedule_of(experiment, r.settings) for r in runs}
    assert chosen["none"] == ()
    assert [e.action for e in chosen["cut"]] == ["partition", "heal"]


def test_without_any_schedule_runs_have_none() -> None:
    runs = expand(parse("[run]\nclients = 2\n"))
    assert {r.settings["schedule"] for r in runs} == {"none"}


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ExperimentError, match="a declared schedule: none, cut"):
        expand(parse(NAMED.replace('"cut"]', '"cat"]')))
    with pytest.raises(ExperimentError) as raised:
        parse(NAMED.replace('action = "heal"', 'action = "mend"'))
    assert raised.value.key == "schedules.cut[1].action"


SWARM = """
[experiment]
name = "on-swarm"
engine = "swarm"

[run]
clients = 3

[grid]
delay = ["0ms", "20ms"]

[[schedule]]
at = "1s"
action = "impair"
target = "server"
delay = "5ms"

[[schedule]]
at = "2s"
action = "heal"
"""


TOXICS = '[toxics]\nslow = [{type = "latency", attributes = {latency = "20ms"}}]'
IMPAIR = 'action = "impair"\ntarget = "server"\ndelay = "5ms"'


def test_the_engine_is_docker_unless_swarm_is_declared() -> None:
    assert parse(FILE).engine == "docker"
    assert parse(SWARM).engine == "swarm"
    assert len(expand(parse(SWARM))) == 2
    with pytest.raises(ExperimentError) as raised:
        parse(SWARM.replace('engine = "swarm"', 'engine = "k8s"'))
    assert raised.value.key == "experiment.engine"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("[run]", 'fault_target = "clients"\n[run]'), "fault_target"),
        (("[run]", f"{TOXICS}\n[run]"), "toxic_sets"),
        ((IMPAIR, 'action = "partition"\ntarget = "c1"'), "schedules"),
        ((IMPAIR, 'action = "restart"'), "schedules"),
        (('target = "server"', 'target = "c0"'), "schedules"),
        (("clients = 3", 'clients = 3\nframing = "raw"'), "base"),
    ],
)
def test_a_swarm_experiment_declares_what_a_docker_one_does(
    change: tuple[str, str], field: str
) -> None:
    """Faults on clients, restarts, toxics and raw framing: a Swarm lab has them all (gated
    client tasks, a forced update, the proxy on the overlay), so nothing is refused for it."""
    old, new = change
    assert old in SWARM
    on_swarm = parse(SWARM.replace(old, new))
    on_docker = parse(SWARM.replace(old, new).replace('engine = "swarm"', 'engine = "docker"'))
    assert on_swarm.engine == "swarm"
    assert getattr(on_swarm, field) == getattr(on_docker, field) != getattr(parse(SWARM), field)


def test_placement_and_simulated_nodes_are_a_swarm_s() -> None:
    """``placement`` (clients on the server's node or on others) is a run setting a grid can
    sweep, on a swarm; ``nodes = N`` (>= 2) runs the batch on N simulated nodes."""
    on_nodes = parse(
        SWARM.replace('engine = "swarm"', 'engine = "swarm"\nnodes = 2').replace(
            "[grid]", '[grid]\nplacement = ["same", "cross"]'
        )
    )
    assert on_nodes.nodes == 2
    assert sorted(r.settings["placement"] for r in expand(on_nodes)) == ["cross"] * 2 + ["same"] * 2
    assert parse(SWARM).nodes == 0
    assert {r.settings["placement"] for r in expand(parse(SWARM))} == {"any"}
    for nodes in ("1", "-1", '"2"'):
        with pytest.raises(ExperimentError) as raised:
            parse(SWARM.replace('engine = "swarm"', f'engine = "swarm"\nnodes = {nodes}'))
        assert raised.value.key == "experiment.nodes"
    with pytest.raises(ExperimentError) as raised:
        parse(SWARM.replace('engine = "swarm"', "nodes = 2"))
    assert raised.value.key == "experiment.nodes"
    with pytest.raises(ExperimentError) as raised:
        parse(SWARM.replace("[grid]", '[grid]\nplacement = ["near"]'))
    assert raised.value.key == "grid.placement[0]"
    on_docker = parse(
        SWARM.replace('engine = "swarm"', 'engine = "docker"').replace(
            "[run]", '[run]\nplacement = "cross"'
        )
    )
    with pytest.raises(ExperimentError) as raised:
        expand(on_docker)
    assert raised.value.key.startswith("placement")
