"""What the Swarm overlay costs a round trip: same node and across nodes, against a bridge.

Two simulated nodes (``harness.swarm.nodes``: Docker engines in containers on this machine) and
one server task on the manager. The same paced client (one connection, one request in flight,
``--rate`` per second, ``--count`` messages) runs, in interleaved rounds:

- **bridge**: a plain container on a bridge network of the manager's own engine, beside a
  server container there: the fair baseline (the same nested engine, no overlay);
- **overlay, same node**: a job task on the manager, to the server task over the overlay;
- **overlay, cross node**: a job task on the worker, over the overlay between the two nodes.

The round trips are the client's own (send to reply, its monotonic clock), every reply checked
by the lab's checks. Figures: median, p90 and p99 per row, and each overlay row's median as a
ratio of the bridge's. Exits 1 if any reply was missing or wrong; the ratios are figures (what
an overlay costs is what this measures), not bounds. Writes results/overlay.json.

    .venv/bin/python benchmarks/overlay.py [--count 1000] [--rate 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import docker
from docker.types import EndpointSpec
from observe import quantile
from verdict import host_facts, now, write

from harness import checks, images
from harness.results import ClientResult, read_client_output
from harness.spec import Workload
from harness.swarm import nodes

ROWS = ("bridge", "overlay, same node", "overlay, cross node")


def _bridge_round(
    cluster: nodes.Cluster, server: str, client: str, argv: list[str]
) -> ClientResult:
    """One client container beside one server container on a bridge of the manager's engine."""
    engine = cluster.manager.docker
    network = engine.networks.create("bridge-round", driver="bridge", internal=True)
    try:
        # Its name is what the client asks for: the engine's DNS answers it on this network.
        serving = engine.containers.run(server, detach=True, name="server", network=network.name)
        try:
            done = engine.containers.run(
                client, [*argv, "--id", "bridge"], detach=True, network=network.name
            )
            code = int(done.wait(timeout=600)["StatusCode"])
            out = done.logs(stdout=True, stderr=False).decode(errors="replace")
            err = done.logs(stdout=False, stderr=True).decode(errors="replace")
            done.remove(force=True)
            return read_client_output("bridge", str(done.name), code, out, err)
        finally:
            serving.remove(force=True)
    finally:
        network.remove()


def _job_round(
    cluster: nodes.Cluster, client: str, workload: Workload, overlay: str, hostname: str, n: int
) -> ClientResult:
    result = cluster.run_clients(
        client, overlay, 1, workload, constraints=[f"node.hostname=={hostname}"],
        name=f"probe-{hostname}-{n}",
    )  # fmt: skip
    (task,) = result.clients
    if task.node != hostname:
        raise RuntimeError(f"the probe task ran on {task.node}, not {hostname}")
    return task


def measure(count: int, rate: int, rounds: int) -> dict[str, list[ClientResult]]:
    client_api = docker.from_env()
    workload = Workload(count=count, rate=rate, pipeline=1, timeout=600, connect_timeout=60)
    argv = workload.command(None)
    found: dict[str, list[ClientResult]] = {row: [] for row in ROWS}
    with nodes.start(client_api, workers=1) as cluster:
        server = cluster.image(images.tag_for(client_api, "server"))
        client = cluster.image(images.tag_for(client_api, "client"))
        engine = cluster.manager.docker
        overlay = engine.networks.create(
            "overlay-lab", driver="overlay", internal=True, attachable=True
        )
        serving = engine.services.create(
            server, name="server", networks=[overlay.name],
            endpoint_spec=EndpointSpec(mode="dnsrr"), constraints=["node.hostname==node0"],
        )  # fmt: skip
        try:
            for n in range(rounds):
                found["bridge"].append(_bridge_round(cluster, server, client, argv))
                found["overlay, same node"].append(
                    _job_round(cluster, client, workload, str(overlay.name), "node0", n)
                )
                found["overlay, cross node"].append(
                    _job_round(cluster, client, workload, str(overlay.name), "node1", n)
                )
                print(f"round {n + 1} of {rounds} done", flush=True)
        finally:
            serving.remove()
    return found


def summarize(results: list[ClientResult]) -> dict[str, Any]:
    rtts = sorted(rtt for r in results for rtt in r.rtts_ms())
    return {
        "replies": len(rtts),
        "median_ms": statistics.median(rtts) if rtts else None,
        "p90_ms": quantile(rtts, 0.9) if rtts else None,
        "p99_ms": quantile(rtts, 0.99) if rtts else None,
        "round_medians_ms": [statistics.median(r.rtts_ms()) for r in results if r.exchanges],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="results/overlay.json")
    args = parser.parse_args()
    if not (1 <= args.count <= 100_000 and 1 <= args.rate <= 10_000 and 1 <= args.rounds <= 20):
        parser.error("--count 1..100000, --rate 1..10000, --rounds 1..20")
    started = now()
    found = measure(args.count, args.rate, args.rounds)
    rows = {name: summarize(results) for name, results in found.items()}
    base = rows["bridge"]["median_ms"]
    problems = [
        f"{name}: {p}"
        for name, results in found.items()
        for p in checks.check_run(results, args.count)
    ]
    print(f"\n{args.rounds} rounds x {args.count} messages at {args.rate}/s, one in flight")
    print(f"{'row':<22}{'replies':>9}{'median':>10}{'p90':>10}{'p99':>10}{'x bridge':>10}")
    for name, row in rows.items():
        if row["median_ms"] is None:
            print(f"{name:<22}{0:>9}")
            continue
        ratio = row["median_ms"] / base if base else float("nan")
        row["median_x_bridge"] = ratio
        print(f"{name:<22}{row['replies']:>9}{row['median_ms']:>9.3f}m{row['p90_ms']:>9.3f}m"
              f"{row['p99_ms']:>9.3f}m{ratio:>9.2f}x")  # fmt: skip
    for line in problems[:20]:
        print(f"MISSED {line}")
    record = {"started": started, "count": args.count, "rate": args.rate, "rounds": args.rounds}
    write(args.out, {**record, "rows": rows, "problems": problems[:100],
                     "host": host_facts(docker.from_env())})  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
