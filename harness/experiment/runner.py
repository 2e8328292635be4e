"""An experiment run on real labs: one fresh ``Lab`` per run (no run inherits another's server,
connections or faults), its faults put in force before the clients send their first packet,
the schedule applied while they run, every reply checked, the run stored when it is done.

Ctrl-C (or SIGTERM, which the command line turns into one) stops the run in progress: its
schedule is stopped, its faults removed, its lab torn down by ``Lab``'s own ``with``; every
run finished before is already on disk, and ``--resume`` runs only what is missing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from dataclasses import asdict
from typing import Any, Protocol, cast

import docker
import numpy as np
from echo_client.records import Exchange

from harness import session
from harness.clients import ClientBatch
from harness.errors import EcholabError
from harness.experiment.declare import Experiment
from harness.experiment.expand import (
    Run,
    impairment_of,
    lab_spec_of,
    schedule_of,
    toxics_of,
    workload_of,
)
from harness.experiment.probe import probe_rows
from harness.experiment.schedule import Scheduler, Timeline
from harness.experiment.stats import RunStats, fidelity, run_stats
from harness.experiment.store import Columns, Results
from harness.faults.impair import Applied
from harness.lab import Lab
from harness.results import RunResult
from harness.swarm import cluster, nodes
from harness.swarm.lab import SwarmLab
from harness.swarm.nodes import Cluster

LISTED = 1000  # violations and problems kept by name per run (all are counted)


class Display(Protocol):
    """What the runner tells whoever shows progress (``live.LiveDisplay``)."""

    def run_started(self, run: Run, batch: ClientBatch, scheduler: Scheduler) -> None: ...
    def run_finished(self, run: Run, stats: RunStats, seconds: float) -> None: ...


def _client_command(experiment: Experiment, run: Run) -> list[str] | None:
    """The clients' argv when it is not ``Workload``'s own: raw framing needs the client's
    ``--framing raw`` (the client id then comes from its environment)."""
    if run.settings["framing"] != "raw":
        return None
    argv = workload_of(experiment, run.settings).command("-")
    at = argv.index("--id")
    return [*argv[:at], *argv[at + 2 :], "--framing", "raw"]


def _lab(experiment: Experiment, run: Run, nodes: Cluster | None) -> Lab:
    """A fresh lab for ``run``: on one engine, on the engine's swarm, or on the batch's
    simulated nodes; on a swarm its server placed as ``placement`` asks."""
    spec = lab_spec_of(experiment, run)
    if experiment.engine != "swarm":
        return Lab(spec)
    server_on, _ = cluster.placement(str(run.settings["placement"]))
    if nodes is not None:
        return cast(Lab, nodes.lab(spec, server_constraints=server_on))
    return cast(Lab, SwarmLab(spec, server_constraints=server_on))


def execute(
    experiment: Experiment, run: Run, display: Display, nodes: Cluster | None = None
) -> dict[str, Any]:
    """Run one run on a fresh lab; its record (``run.json``) and its exchanges."""
    began = time.monotonic()
    timeline = Timeline()
    applied: list[tuple[str, Applied]] = []
    with _lab(experiment, run, nodes) as lab:
        lab_ready = time.monotonic()
        with ExitStack() as faults:
            host = _grid_proxy(experiment, run, lab, timeline, faults)
            command = _client_command(experiment, run)
            if isinstance(lab, SwarmLab):
                _, clients_on = cluster.placement(str(run.settings["placement"]))
                batch = lab.create_clients(command=command, host=host, constraints=clients_on)
            else:
                batch = lab.create_clients(command=command, host=host)
            grid = _grid_impair(experiment, run, lab, timeline, faults)
            if grid is not None:
                applied.append(("g0", grid))
            scheduler = Scheduler(lab, schedule_of(experiment, run.settings), seed=run.seed,
                                  backend=experiment.backend, timeline=timeline)  # fmt: skip
            faults.callback(scheduler.stop)
            scheduler.stage()
            display.run_started(run, batch, scheduler)
            started = batch.start()
            timeline.t0 = time.time() - started.start_s
            scheduler.start(timeline.t0)
            result = started.wait()
            clients_done = time.monotonic()
        faults_removed = time.monotonic()
    applied += [(h.fault, h.applied) for h in scheduler.removed if h.applied is not None]
    timings = {
        "lab_start_s": lab_ready - began,
        "clients_start_s": result.start_s,
        "clients_s": result.elapsed_s,
        "faults_removed_s": faults_removed - clients_done,
        "teardown_s": time.monotonic() - faults_removed,
        "total_s": time.monotonic() - began,
    }
    return _record(experiment, run, result, timeline, applied, timings, lab.id)


def _grid_proxy(
    experiment: Experiment, run: Run, lab: Lab, timeline: Timeline, faults: ExitStack
) -> str | None:
    """The run's toxic proxy, in force until ``faults`` closes; the clients' host, or None."""
    toxics = toxics_of(experiment, run.settings)
    if toxics is None:
        return None
    entry = {"fault": "p0", "source": "grid", "action": "proxy", "target": "clients"}
    began = time.time()
    held = ExitStack()
    proxy = held.enter_context(lab.proxy(toxics, seed=run.seed))
    wire = [toxic.wire().as_dict() for toxic in toxics]
    timeline.record(began, **entry, event="applied", toxics=wire)

    def removed() -> None:
        began = time.time()
        try:
            decisions = proxy_decisions(proxy.stats())
        except EcholabError as error:
            decisions = {"error": str(error)}
        held.close()
        timeline.record(began, **entry, event="removed", decisions=decisions)

    faults.callback(removed)
    return proxy.host


def proxy_decisions(stats: dict[str, Any]) -> dict[str, Any]:
    """What the proxy's seed decided: per connection number (accept order), the toxics that
    hit it. The same seed hits the same numbers; which client's connection got a number is
    up to the order in which they arrived."""
    hit = {str(c["conn"]): sorted({t for ts in c["toxics"].values() for t in ts})
           for c in stats.get("connections", [])}  # fmt: skip
    return {"accepted": stats.get("accepted"), "resets": stats.get("resets"),
            "hit": dict(sorted(hit.items(), key=lambda kv: int(kv[0])))}  # fmt: skip


def _grid_impair(
    experiment: Experiment, run: Run, lab: Lab, timeline: Timeline, faults: ExitStack
) -> Applied | None:
    """The run's packet fault on ``fault_target``, in force before the first packet and
    until ``faults`` closes (then its engine's counters are recorded)."""
    impairment = impairment_of(experiment, run.settings)
    if impairment is None:
        return None
    target = experiment.fault_target
    entry = {"fault": "g0", "source": "grid", "action": "impair", "target": target}
    began = time.time()
    seeded = dataclasses.replace(impairment, seed=run.seed)
    held = ExitStack()
    one = held.enter_context(lab.impair_with(target, seeded, backend=experiment.backend))
    timeline.record(began, **entry, event="applied", params=_grid_fault(run),
                    backend=one.backend.name, mechanism=one.mechanism)  # fmt: skip

    def removed() -> None:
        began = time.time()
        held.close()
        timeline.record(began, **entry, event="removed", engine=one.engine_stats())

    faults.callback(removed)
    return one


def _grid_fault(run: Run) -> dict[str, Any]:
    keys = ("delay", "jitter", "loss", "bandwidth")
    return {k: run.settings[k] for k in keys if run.settings[k] not in ("0", "", 0)}


def _record(
    experiment: Experiment,
    run: Run,
    result: RunResult,
    timeline: Timeline,
    applied: Sequence[tuple[str, Applied]],
    timings: dict[str, float],
    lab_id: str,
) -> dict[str, Any]:
    exchanges = [e for client in result.clients for e in client.exchanges]
    violations = result.problems()
    reported = [p for client in result.clients for p in client.reported]
    stats = run_stats(
        np.array([e.rtt_ms for e in exchanges], dtype=np.float64),
        np.array([e.sent for e in exchanges], dtype=np.float64),
        np.array([e.received for e in exchanges], dtype=np.float64),
        violations,
        expected=result.workload.count * result.workload.connections * len(result.clients),
        reconnects=sum(c.summary.reconnects for c in result.clients if c.summary),
    )
    entries = timeline.entries()
    backends = sorted({str(e["backend"]) for e in entries if e.get("backend")})
    return {
        "id": run.id,
        "point": run.point,
        "repetition": run.repetition,
        "seed": run.seed,
        "settings": dict(run.settings),
        "label": run.label(experiment.swept),
        "lab": lab_id,
        "status": "ok" if stats.ok else "violations",
        "backend": ", ".join(backends) or None,
        "engine": experiment.engine,
        "timings": timings,
        "t0_wall": timeline.t0,
        "timeline": entries,
        "fidelity": probe_rows(
            fidelity([(fault, a.describe(), a.engine_stats()) for fault, a in applied]),
            entries,
            columns_of(exchanges),
            timeline.t0 if timeline.t0 is not None else 0.0,
        ),
        "stats": stats.as_dict(),
        "violations_total": len(violations),
        "violations": [asdict(v) for v in violations[:LISTED]],
        "client_problems_total": len(reported),
        "client_problems": [asdict(p) for p in reported[:LISTED]],
        "clients": [
            {
                "client": c.client,
                "exit_code": c.exit_code,
                "replied": len(c.exchanges),
                "reconnects": c.summary.reconnects if c.summary else None,
                **({"node": c.node} if c.node else {}),
                "stderr_tail": c.stderr[-2000:] if c.exit_code != 0 else "",
            }
            for c in result.clients
        ],
        "_exchanges": exchanges,
    }


def columns_of(exchanges: Sequence[Exchange]) -> Columns:
    """Exchanges as the store's columns (what the probe reads)."""
    return Columns(
        [e.client for e in exchanges],
        np.array([e.conn for e in exchanges], dtype=np.int64),
        np.array([e.seq for e in exchanges], dtype=np.int64),
        np.array([e.sent for e in exchanges], dtype=np.float64),
        np.array([e.received for e in exchanges], dtype=np.float64),
        np.array([e.rtt_ms for e in exchanges], dtype=np.float64),
    )


def run_all(
    experiment: Experiment,
    runs: Sequence[Run],
    results: Results,
    display: Display,
) -> list[str]:
    """Every run not yet in ``results``, in order; returns the ids run now. A run's record is
    on disk before the next begins. A Ctrl-C unwinds the run in progress (the command line
    raises again one that Python dropped in a finalizer: ``cli.common``)."""
    done = set(results.done())
    ran = []
    made: Cluster | None = None
    with ExitStack() as swarm:
        if experiment.engine == "swarm":
            client = swarm.enter_context(closing(docker.from_env()))
            if experiment.nodes >= 2:  # simulated nodes on this machine, for the batch
                made = swarm.enter_context(nodes.start(client, workers=experiment.nodes - 1))
                client = made.manager.docker
            else:  # the swarm this engine is in, or a single-node one made for the batch
                swarm.enter_context(cluster.single_node(client, session.current_id()))
            for where in sorted({str(r.settings["placement"]) for r in runs}):
                cluster.check_placement(client, where)
        for run in runs:
            if run.id in done:
                continue
            record = execute(experiment, run, display, made)
            exchanges = record.pop("_exchanges")
            results.write_run(run.id, exchanges, record)
            display.run_finished(
                run, RunStats(**_stat_fields(record["stats"])), record["timings"]["total_s"]
            )
            ran.append(run.id)
    return ran


def _stat_fields(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k != "ok"}
