"""``python -m harness experiment ...``: run a declared experiment, report it.

run FILE [--out DIR] [--set TABLE.KEY=VALUE ...] [--dry-run]   every run of the file
run --resume DIR                                              only the runs DIR lacks
report DIR [--figures OUT [--format png|svg]]                 DIR/report.html again; figures
compare DIR_A DIR_B                                           B - A per matching run, with CIs
search FILE [--out DIR]                                       bisect [search]'s parameter

``run`` exits 0 when every run finished (whatever their verdicts: those are results, in the
summary and the report), 130 when interrupted (the finished runs are kept), 2 for a bad file
(nothing was started), 1 for any other error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import docker
import numpy as np

from harness import paths
from harness.errors import ConfigError, EcholabError
from harness.experiment import compare, provenance
from harness.experiment.declare import Experiment, from_document
from harness.experiment.expand import Run, check, expand, override, run_seed
from harness.experiment.figures import FORMATS
from harness.experiment.live import LiveDisplay
from harness.experiment.report import export_figures, write_report
from harness.experiment.runner import execute, run_all
from harness.experiment.search import Outcome, bisect, parse_search
from harness.experiment.stats import RunStats
from harness.experiment.store import Results

USAGE_ERROR = 2
INTERRUPTED = 130


# Which backends draw their loss and jitter from the run's seed (the same seed, the same
# decisions), and which cannot promise it (tests/e2e/test_experiment_seeds.py).
REPRODUCIBLE = {
    "nfqueue": "seeded: the n-th packet the engine decides on is dropped or held for the same "
    "drawn delay in every run of the seed (its decision log is in the run's timeline); which "
    "TCP segment is the n-th follows the traffic's timing, so the messages hit may differ",
    "proxy": "seeded: the n-th connection the proxy accepts is hit by the same toxics, with the "
    "same draws; which client's connection is the n-th follows the order they arrived in",
    "netem": "not seeded: netem draws from the kernel's random numbers",
}


def _say(message: str) -> None:
    print(f"echolab: {message}", file=sys.stderr, flush=True)


def load(text: str, source: str, assignments: list[str]) -> tuple[Experiment, list[Run]]:
    """The experiment a file's text declares, with overrides, and its runs; ConfigError."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    try:
        experiment = from_document(override(doc, assignments), Path(source).stem)
        return experiment, expand(experiment)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def dry_run(experiment: Experiment, runs: list[Run]) -> str:
    """The expanded runs, one line each, in the order they would run."""
    keys = [k for k, _ in experiment.grid] or ["clients", "messages"]
    lines = [
        f"experiment {experiment.name}: {len(runs)} run(s), seed {experiment.seed}, "
        f"order {experiment.order}",
        "fixed: " + ", ".join(f"{k}={v}" for k, v in runs[0].settings.items() if k not in keys),
    ]
    for name, events in experiment.schedules.items():
        for event in events:
            shown = ", ".join(f"{k}={v}" for k, v in event.as_dict().items())
            lines.append(f"schedule {name}: {shown}")
    lines.append(f"{'#':>4}  {'run':<8} {'seed':>10}  " + "  ".join(keys))
    for n, run in enumerate(runs):
        shown = "  ".join(f"{k}={run.settings[k]}" for k in keys)
        lines.append(f"{n:>4}  {run.id:<8} {run.seed:>10}  {shown}")
    return "\n".join(lines)


def _manifest(
    experiment: Experiment, runs: list[Run], source: str, assignments: list[str]
) -> dict[str, Any]:
    return {
        "format": 1,
        "name": experiment.name,
        "source": source,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seed": experiment.seed,
        "order": experiment.order,
        "overrides": assignments,
        "swept": list(experiment.swept),
        "schedules": {
            name: [event.as_dict() for event in events]
            for name, events in experiment.schedules.items()
        },
        "toxic_sets": {
            name: [toxic.wire().as_dict() for toxic in toxics]
            for name, toxics in experiment.toxic_sets.items()
        },
        "expanded": [run.as_dict() for run in runs],
        "reproducible": REPRODUCIBLE,
        "provenance": provenance.collect(docker.from_env()),
    }


def cmd_run(args: argparse.Namespace) -> int:
    try:
        if args.resume:
            results = Results(Path(args.resume))
            manifest = results.manifest
            if args.set:
                raise ConfigError("--resume takes the overrides the experiment was started with")
            experiment, runs = load(results.declared, manifest["source"], manifest["overrides"])
            if [r.as_dict() for r in runs] != manifest["expanded"]:
                raise ConfigError(f"{args.resume}: its runs differ from its manifest's")
        else:
            if args.file is None:
                raise ConfigError("give an experiment FILE, or --resume DIR")
            text = Path(args.file).read_text()
            experiment, runs = load(text, args.file, args.set)
    except (ConfigError, OSError) as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    if args.dry_run:
        print(dry_run(experiment, runs))
        return 0
    if not args.resume:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path(args.out) if args.out else paths.RESULTS / f"{experiment.name}-{stamp}"
        if out.exists() and any(out.iterdir()):
            _say(f"error: {out} is not empty (--resume {out} continues it)")
            return USAGE_ERROR
        results = Results.create(out, text, _manifest(experiment, runs, args.file, args.set))
    done = len(results.done())
    _say(f"{len(runs)} run(s), {done} already done; results in {results.root}")
    stopped: str | None = None
    with LiveDisplay(experiment.name, runs, experiment.swept) as display:
        display.skip(done)
        try:
            run_all(experiment, runs, results, display)
        except KeyboardInterrupt:
            stopped = "interrupted"
        except EcholabError as error:  # a lab that would not start, a fault that failed...
            stopped = f"stopped by an error: {error}"
    if results.done():
        report = write_report(results)
        _say(f"report: {report}")
    if stopped is not None:
        kept = len(results.done())
        _say(f"{stopped}\n{kept} run(s) kept; continue with --resume {results.root}")
        return INTERRUPTED if stopped == "interrupted" else 1
    failed = [r for r in results.done() if results.run_record(r)["status"] != "ok"]
    _say(f"{len(results.done())} run(s) done, {len(failed)} with violations; {results.root}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    results = Results(Path(args.dir))
    if not results.done():
        _say(f"error: {args.dir} has no finished run")
        return USAGE_ERROR
    print(write_report(results))
    if args.figures:
        for path in export_figures(results, Path(args.figures), args.format):
            print(path)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Bisect one fault parameter for where ``holds`` breaks; every probe run is stored as a
    run of the folder (so ``report`` and ``compare`` read it), the outcome in the manifest."""
    try:
        text = Path(args.file).read_text()
        experiment, runs = load(text, args.file, args.set)
        doc = override(tomllib.loads(text), args.set)
        search = parse_search(doc.get("search") or {})
        if len(runs) != experiment.repetitions or experiment.swept:
            raise ConfigError(f"{args.file}: a search varies only [search].parameter: no [grid]")
    except (ConfigError, OSError) as error:
        _say(f"error: {error}")
        return USAGE_ERROR
    base = dict(runs[0].settings)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else paths.RESULTS / f"{experiment.name}-search-{stamp}"
    if out.exists() and any(out.iterdir()):
        _say(f"error: {out} is not empty")
        return USAGE_ERROR
    manifest = _manifest(experiment, [], args.file, args.set)
    manifest["swept"] = [search.parameter]
    results = Results.create(out, text, manifest)
    steps = max(0, int(np.ceil(np.log2((search.high - search.low) / search.resolution))))
    planned = [runs[0]] * ((2 + steps) * search.repeat)
    points = 0

    def probe(value: float) -> bool:
        nonlocal points
        settings = {**base, search.parameter: search.spell(value)}
        check(experiment, settings, f"search probe {search.spell(value)}")
        held = True
        for repetition in range(search.repeat):
            run_id = f"p{points:02d}-r{repetition}"
            run = Run(run_id, points, repetition, run_seed(experiment.seed, run_id), settings)
            results.expand(run.as_dict())
            record = execute(experiment, run, display)
            record["label"] = run.label([search.parameter])
            exchanges = record.pop("_exchanges")
            results.write_run(run.id, exchanges, record)
            stats = record["stats"]
            display.run_finished(run, _stats(stats), record["timings"]["total_s"])
            held = held and search.holds.holds(stats)
        points += 1
        return held

    with LiveDisplay(experiment.name, planned, [search.parameter]) as display:
        try:
            outcome = bisect(search, probe)
        except KeyboardInterrupt:
            _say(f"interrupted: probes so far in {results.root}")
            return INTERRUPTED
    results.note("search", _search_outcome(search, outcome))
    print(_describe_search(search, outcome))
    if results.done():
        _say(f"report: {write_report(results)}")
    return 0


def _stats(stats: dict[str, Any]) -> RunStats:
    return RunStats(**{k: v for k, v in stats.items() if k != "ok"})


def _search_outcome(search: Any, outcome: Outcome) -> dict[str, Any]:
    return {
        "parameter": search.parameter, "holds": search.holds.text, "repeat": search.repeat,
        "held": None if outcome.held is None else search.spell(outcome.held),
        "broke": None if outcome.broke is None else search.spell(outcome.broke),
        "bracketed": outcome.bracketed,
        "probes": [{"value": search.spell(v), "held": h} for v, h in outcome.probes],
    }  # fmt: skip


def _describe_search(search: Any, outcome: Outcome) -> str:
    name, spell = search.parameter, search.spell
    if outcome.broke is None:
        return f"'{search.holds.text}' held up to {name} {spell(search.high)}: no breaking point"
    if outcome.held is None:
        return f"'{search.holds.text}' broke already at {name} {spell(search.low)}"
    middle, half = outcome.threshold or (0.0, 0.0)
    return (
        f"'{search.holds.text}' breaks between {name} {spell(outcome.held)} (held) and "
        f"{spell(outcome.broke)} (broke): {spell(middle)} ± {spell(half)}, "
        f"{len(outcome.probes)} probes x {search.repeat} runs"
    )


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = Results(Path(args.a)), Results(Path(args.b))
    left, right = compare.pooled(a), compare.pooled(b)
    for warning in compare.warnings(a.manifest, b.manifest):
        _say(f"warning: {warning}")
    only_a, only_b = compare.unmatched(left, right)
    for side, keys in (("A", only_a), ("B", only_b)):
        for key in keys:
            _say(f"only in {side}: {key}")
    rows = compare.compare(left, right, resamples=args.resamples, seed=args.seed)
    if args.json:
        print(json.dumps([
            {"settings": dict(r.settings), "replies": r.replies,
             "differences": [asdict(d) for d in r.differences]}
            for r in rows
        ], indent=2))  # fmt: skip
        return 0
    swept = sorted({k for r in rows for k, v in r.settings.items()
                    if len({json.dumps(x.settings[k]) for x in rows}) > 1})  # fmt: skip
    print(f"B - A, {int(rows[0].differences[0].confidence * 100) if rows else 95} % bootstrap "
          f"intervals ({args.resamples} resamples); A = {args.a}, B = {args.b}")  # fmt: skip
    for row in rows:
        where = " ".join(f"{k}={row.settings[k]}" for k in swept) or "all"
        cells = []
        for d in row.differences:
            star = " *" if d.significant else ""
            cells.append(
                f"{d.statistic} {d.a:.3f} -> {d.b:.3f} ms: {d.difference:+.3f} "
                f"[{d.low:+.3f}, {d.high:+.3f}]{star}"
            )
        print(f"{where:<30} n={row.replies[0]}/{row.replies[1]}  " + "   ".join(cells))
    return 0


def add_parser(sub: Any) -> None:
    """The ``experiment`` command and its own subcommands, on the harness's parser."""
    top = sub.add_parser("experiment", help="run a declared experiment (TOML), report it")
    verbs = top.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run every run of an experiment file (or what is missing)")
    run.add_argument("file", nargs="?", help="the experiment's TOML file")
    run.add_argument("--out", help="results folder (default: results/<name>-<UTC time>)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help='override a key, e.g. run.clients=3, grid.delay=\'["0ms","20ms"]\'',
    )
    run.add_argument("--dry-run", action="store_true", help="print the runs, start nothing")
    run.add_argument("--resume", metavar="DIR", help="run only what DIR's experiment lacks")
    run.set_defaults(func=cmd_run)
    report = verbs.add_parser("report", help="write DIR/report.html (one self-contained file)")
    report.add_argument("dir")
    report.add_argument(
        "--figures", metavar="OUT", help="also write each figure as a file in OUT (for pages)"
    )
    report.add_argument("--format", choices=FORMATS, default="png", help="of --figures' files")
    report.set_defaults(func=cmd_report)
    versus = verbs.add_parser(
        "compare", help="B - A per matching run: medians and p99 with bootstrap intervals"
    )
    versus.add_argument("a", help="results folder A")
    versus.add_argument("b", help="results folder B")
    versus.add_argument("--resamples", type=int, default=2000)
    versus.add_argument("--seed", type=int, default=0, help="of the bootstrap's resampling")
    versus.add_argument("--json", action="store_true")
    versus.set_defaults(func=cmd_compare)
    bisecting = verbs.add_parser(
        "search", help="bisect [search]'s fault parameter for where a property breaks"
    )
    bisecting.add_argument("file")
    bisecting.add_argument("--out", help="results folder (default: results/<name>-search-<time>)")
    bisecting.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    bisecting.set_defaults(func=cmd_search)
