"""N clients x M messages on a single-node Swarm (``SwarmLab``) against the single-machine
``Lab`` doing the same, on the same engine; and what a client task holds in memory.

For each engine, in one round: the time to bring the lab up (for Swarm: the registry, four
pushes, the overlay, the agent and server services, health), then the time to run the clients
(from the call to every result read back and checked, all messages answered). Memory: each
running client task's cgroup usage (``docker stats``, one shot), sampled every second while the
clients run, the peak per task; its median and maximum over the tasks.

The swarm is made for the run if the engine is in none, and left afterwards (as the e2e test
does). Run it under ``flock /tmp/echolab-heavy.lock`` on a shared machine. Exit status 1 if any
run was not clean (a reply lost, duplicated, out of order) or a bound is missed: the swarm run
of the clients must take no more than ``--bound`` times the single-machine one.

With ``--nodes 2`` the Swarm row runs on simulated nodes (``harness.swarm.nodes``): the server
on the manager, the client tasks on the worker, across the overlay (memory sampled on the
worker's engine). ``--connections K`` gives each client K connections.

    .venv/bin/python benchmarks/swarm.py [--clients 50] [--count 100] [--connections 1]
        [--nodes 0|2] [--bound 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from harness import Lab, LabSpec, RunResult, Workload, labels, session
from harness.swarm import cluster, nodes
from harness.swarm.lab import SwarmLab

MIB = 1 << 20


def sample_memory(client: docker.DockerClient, lab_id: str, stop: threading.Event) -> list[float]:
    """Peak MiB per client container of ``lab_id`` seen while ``stop`` is not set."""
    peaks: dict[str, float] = {}
    wanted = {"label": [f"{labels.LAB}={lab_id}", f"{labels.ROLE}=client"], "status": "running"}

    def one(ident: str) -> None:
        try:
            stats = client.api.stats(ident, stream=False, one_shot=True)
        except docker.errors.APIError:
            return
        usage = (stats.get("memory_stats") or {}).get("usage")
        if usage:
            peaks[ident] = max(peaks.get(ident, 0.0), usage / MIB)

    with ThreadPoolExecutor(8) as pool:
        while not stop.is_set():
            listed = [c["Id"] for c in client.api.containers(filters=wanted)]
            list(pool.map(one, listed))
            stop.wait(1.0)
    return list(peaks.values())


def timed(
    client: docker.DockerClient, lab_id: str, run: Callable[[], RunResult]
) -> tuple[float, RunResult, list[float]]:
    stop = threading.Event()
    memory: list[float] = []
    sampler = threading.Thread(target=lambda: memory.extend(sample_memory(client, lab_id, stop)))
    sampler.start()
    began = time.monotonic()
    try:
        result = run()
    finally:
        stop.set()
        sampler.join()
    return time.monotonic() - began, result, memory


def measure(
    lab: Lab | SwarmLab,
    client: docker.DockerClient,
    n: int,
    workload: Workload,
    run: Callable[[], RunResult] | None = None,
) -> dict[str, Any]:
    """``client``: the engine whose client containers are sampled; ``run``: how the clients
    run (default: ``lab.run_clients``)."""
    began = time.monotonic()
    lab.start()
    try:
        up = time.monotonic() - began
        took, result, memory = timed(client, lab.id, run or (lambda: lab.run_clients(n, workload)))
    finally:
        lab.close()
    problems = result.problems()
    failed = [c for c in result.clients if c.exit_code != 0]
    return {
        "up_s": round(up, 1),
        "clients_s": round(took, 1),
        "problems": len(problems),
        "first_problems": [str(p) for p in problems[:5]],
        "failed_clients": [
            f"{c.client}: exit {c.exit_code}: {c.stderr[-300:]}" for c in failed[:5]
        ],
        "median_rtt_ms": round(
            statistics.median(e.rtt_ms for c in result.clients for e in c.exchanges), 3
        ),
        "memory_mib_median": round(statistics.median(memory), 1) if memory else 0.0,
        "memory_mib_max": round(max(memory), 1) if memory else 0.0,
        "tasks_sampled": len(memory),
        "connections": n * workload.connections,
        "nodes": sorted({c.node or "host" for c in result.clients}),
    }


def on_nodes(client: docker.DockerClient, spec: LabSpec) -> dict[str, Any]:
    """The Swarm row on two simulated nodes: server on the manager, clients on the worker."""
    with nodes.start(client, workers=1) as made:
        lab = made.lab(spec, server_constraints=[cluster.SUT])
        worker = made.workers[0].docker

        def run() -> RunResult:
            return lab.start_clients(
                spec.clients, spec.workload, constraints=[cluster.NOT_SUT]
            ).wait()

        return measure(lab, worker, spec.clients, spec.workload, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--connections", type=int, default=1, help="per client")
    parser.add_argument("--nodes", type=int, default=0, choices=(0, 2), help="simulated nodes")
    parser.add_argument("--bound", type=float, default=3.0)
    parser.add_argument("--out", default="results/swarm.json")
    args = parser.parse_args()
    client = docker.from_env(max_pool_size=32)
    workload = Workload(count=args.count, connections=args.connections)
    spec = LabSpec(name="bench", clients=args.clients, workload=workload)
    figures = {"docker": measure(Lab(spec, client), client, args.clients, workload)}
    if args.nodes:
        figures["swarm"] = on_nodes(client, spec)
    else:
        with cluster.single_node(client, f"bench-{session.current_id()}"):
            figures["swarm"] = measure(SwarmLab(spec, client), client, args.clients, workload)
    where = "two simulated nodes, clients on the worker" if args.nodes else "one node"
    print(f"{args.clients} clients x {args.connections} connections x {args.count} messages, "
          f"{where} (2 cores)")  # fmt: skip
    print(f"{'engine':8} {'up s':>6} {'clients s':>10} {'problems':>9} {'median rtt ms':>14} "
          f"{'MiB/task med':>13} {'max':>6}")  # fmt: skip
    for engine, row in figures.items():
        print(f"{engine:8} {row['up_s']:>6} {row['clients_s']:>10} {row['problems']:>9} "
              f"{row['median_rtt_ms']:>14} {row['memory_mib_median']:>13} "
              f"{row['memory_mib_max']:>6}")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shape = {"clients": args.clients, "count": args.count, "connections": args.connections,
             "simulated_nodes": args.nodes}  # fmt: skip
    out.write_text(json.dumps({**shape, **figures}, indent=2))
    ratio = figures["swarm"]["clients_s"] / figures["docker"]["clients_s"]
    clean = all(row["problems"] == 0 for row in figures.values())
    print(f"swarm / single machine, clients: {ratio:.2f} (bound {args.bound}); clean: {clean}")
    return 0 if clean and ratio <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
