"""How faithfully the fault backend applies ``delay``: configured vs observed round trips.

One client, pipeline 1, against a server whose egress is delayed by 1, 10 and 100 ms (backend 2,
the NFQUEUE engine, where the kernel has no netem); also the unimpaired baseline. Observed is the
client's own rtt per exchange; ``excess`` is the median minus the configured delay. Prints a
table and, with ``--out``, writes it as JSON. A figure, never a timed test.

    .venv/bin/python benchmarks/fidelity.py [--count 200] [--delays 1ms,10ms,100ms]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from harness import Lab, LabSpec, Workload
from harness.faults import image as fault_image
from harness.faults import impair, parse_duration


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="exchanges per delay")
    parser.add_argument("--delays", default="1ms,10ms,100ms")
    parser.add_argument("--backend", default=None, help="force 'netem' or 'nfqueue'")
    parser.add_argument("--out", help="write the rows as JSON to this file")
    args = parser.parse_args()
    fault_image.build()
    rows = []
    spec = LabSpec(name="fidelity", clients=1, workload=Workload(count=args.count, pipeline=1))
    with Lab(spec) as lab:
        for delay in ["0", *args.delays.split(",")]:
            if delay == "0":
                result, backend, stats = lab.run_clients(), "none", {}
            else:
                with impair(lab, "server", delay=delay, backend=args.backend) as applied:
                    result = lab.run_clients()
                backend, stats = applied.backend, next(iter(applied.engine_stats().values()))
            result.assert_ok()
            rtts = result.clients[0].rtts_ms()[5:]  # the first exchanges include connecting
            configured = parse_duration(delay) * 1e3
            median = statistics.median(rtts)
            rows.append(
                {
                    "configured_ms": configured,
                    "backend": backend,
                    "median_ms": round(median, 3),
                    "p90_ms": round(quantile(rtts, 0.9), 3),
                    "excess_ms": round(median - configured, 3),
                    "engine_late_us_p50": stats.get("late_us_p50"),
                    "engine_late_us_p99": stats.get("late_us_p99"),
                }
            )
    print(f"{'configured':>10} {'backend':>8} {'median':>9} {'p90':>9} {'excess':>8} late(us)")
    for r in rows:
        print(
            f"{r['configured_ms']:>8.1f}ms {r['backend']:>8} {r['median_ms']:>7.3f}ms "
            f"{r['p90_ms']:>7.3f}ms {r['excess_ms']:>6.3f}ms "
            f"p50 {r['engine_late_us_p50']} p99 {r['engine_late_us_p99']}"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
