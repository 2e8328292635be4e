"""What the lab itself costs: the server in its container on a lab network vs natively.

Same server code (on uvloop in both places), same C load generator, same load: natively both
run on loopback; in the lab the load generator runs in a container on the lab's internal
network and drives the server container across the bridge. Rounds alternate so that both see
the same machine. Prints a table with ratios and writes results/container.json.

    .venv/bin/python benchmarks/server/container.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # the sibling runner: build(), Server, drive()

from harness import Lab, LabSpec, labels, session, wait_for
from harness.waiting import NotReady

WORKLOADS = {
    "pingpong 1x1x64B": ["--conns", "1", "--depth", "1", "--size", "64"],
    "tput 100x8x64B": ["--conns", "100", "--depth", "8", "--size", "64"],
}


def native(args: list[str]) -> dict[str, Any]:
    server = bench.Server("ours", False, None, 1)
    try:
        return bench.drive(server, args, None)
    finally:
        server.stop()


def in_lab(lab: Lab, args: list[str]) -> dict[str, Any]:
    address = lab.server.attrs["NetworkSettings"]["Networks"][lab.id]["IPAddress"]
    argv = ["--host", address, "--port", "8899", "--duration", str(bench.DURATION)]
    argv += ["--warmup", str(bench.WARMUP), *args]
    container = lab.docker.containers.run(
        lab.spec.client_image,
        argv,
        entrypoint=["/opt/bench/loadgen"],
        volumes={str(bench.BUILD): {"bind": "/opt/bench", "mode": "ro"}},
        network=lab.id,
        labels=labels.lab_labels(
            lab.id, "bench", session.acquire(lab.docker, lab.spec.client_image)
        ),
        detach=True,
    )
    try:

        def exited() -> None:
            container.reload()
            if container.status not in ("exited", "dead"):
                raise NotReady(f"status={container.status}")

        wait_for("the load generator container to finish", exited, timeout=bench.DURATION + 60)
        lines = container.logs(stdout=True, stderr=False).decode().strip().splitlines()
        return json.loads(lines[-1]) if lines else {"errors": -1}
    finally:
        container.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="results/container.json")
    args = parser.parse_args()
    bench.build()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with Lab(LabSpec(name="bench", clients=0)) as lab:
        lab.server.reload()
        for round_no in range(args.rounds):
            for name, load in WORKLOADS.items():
                runs.setdefault((name, "native"), []).append(native(load))
                runs.setdefault((name, "lab"), []).append(in_lab(lab, load))
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    errors = sum(int(r.get("errors", 0)) for rs in runs.values() for r in rs)
    print(
        "\nserver natively on loopback vs in its container on the lab network "
        f"({args.rounds} rounds, median; {errors} reply errors)"
    )
    print(f"{'workload':<20}{'where':<8}{'msg/s':>12}{'p50 us':>9}{'p99 us':>9}{'lab/native':>12}")
    rows = []
    for name in WORKLOADS:
        native_rate = statistics.median(r["msgs_per_s"] for r in runs[(name, "native")])
        for where in ("native", "lab"):
            results = runs[(name, where)]
            rate = statistics.median(r["msgs_per_s"] for r in results)
            p50 = statistics.median(r["p50_us"] for r in results)
            p99 = statistics.median(r["p99_us"] for r in results)
            figures = f"{rate:>12,.0f}{p50:>9,.0f}{p99:>9,.0f}{rate / native_rate:>11.2f}x"
            print(f"{name:<20}{where:<8}{figures}")
            rows.append(
                {
                    "workload": name,
                    "where": where,
                    "msgs_per_s": rate,
                    "p50_us": p50,
                    "p99_us": p99,
                    "ratio_to_native": rate / native_rate,
                    "runs": results,
                }
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "errors": errors}, indent=2))
    print(f"\nwrote {out}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
