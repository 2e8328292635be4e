"""Bringing up N clients: the harness (Docker SDK, bounded pool) vs `compose up --scale client=N`.

Both start the same client image with the same command against an already healthy server, and
are timed from the call until every container has been started. Rounds alternate so that both
see the same machine state. Prints a table and writes it as JSON (results/startup.json).

    .venv/bin/python benchmarks/startup.py [--clients 50] [--rounds 3] [--pools 4,8,16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker

from harness import Lab, LabSpec, Workload, compose, wait_for
from harness.waiting import NotReady

OVERRIDE = """services:
  client:
    command: ["--count", "1", "--connect-timeout", "60"]
    stdin_open: false
"""


def time_harness(clients: int, pool: int) -> float:
    spec = LabSpec(name="bench", start_parallelism=pool, workload=Workload(count=1))
    with Lab(spec) as lab:
        run = lab.start_clients(clients)
        run.wait().assert_ok()
        return run.start_s


def time_compose(tool: compose.Compose, clients: int, override: Path) -> float:
    project = f"echolab-bench-{uuid.uuid4().hex[:8]}"
    base = [*tool.argv, "-f", str(compose.COMPOSE_FILE), "-f", str(override), "-p", project]
    env = {**os.environ, "ECHOLAB_OWNER_PID": str(os.getpid())}
    client = docker.from_env()

    def healthy() -> None:
        found = client.containers.list(
            filters={
                "label": [
                    f"com.docker.compose.project={project}",
                    "com.docker.compose.service=server",
                ]
            }
        )
        if not found or found[0].attrs["State"].get("Health", {}).get("Status") != "healthy":
            raise NotReady("server not healthy")

    try:
        subprocess.run(
            [*base, "up", "-d", "--no-build", "server"], check=True, env=env, capture_output=True
        )
        wait_for(f"server of {project} healthy", healthy, timeout=60)
        began = time.monotonic()
        scale = ["up", "-d", "--no-build", "--scale", f"client={clients}", "client"]
        subprocess.run(
            [*base, "--profile", "client", *scale], check=True, env=env, capture_output=True
        )
        return time.monotonic() - began
    finally:
        subprocess.run(
            [*base, "--profile", "client", "down", "-t", "5", "--remove-orphans"],
            env=env,
            capture_output=True,
            check=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pools", default="8", help="harness start pool sizes to compare, e.g. 4,8,16"
    )
    parser.add_argument("--out", default="results/startup.json")
    args = parser.parse_args()
    pools = [int(p) for p in args.pools.split(",")]
    flavours = compose.available()
    timings: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        override = Path(folder) / "override.yaml"
        override.write_text(OVERRIDE)
        for round_no in range(args.rounds):
            for pool in pools:
                timings.setdefault(f"harness pool={pool}", []).append(
                    time_harness(args.clients, pool)
                )
            for tool in flavours:
                label = f"compose {tool.version} --scale"
                timings.setdefault(label, []).append(time_compose(tool, args.clients, override))
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)

    reference = min(statistics.median(v) for k, v in timings.items() if k.startswith("compose"))
    print(f"\nstarting {args.clients} client containers (s; {args.rounds} rounds)")
    print(f"{'how':<28}{'min':>8}{'median':>8}{'max':>8}{'vs best compose':>17}")
    rows = []
    for label, values in timings.items():
        median = statistics.median(values)
        figures = f"{min(values):>8.2f}{median:>8.2f}{max(values):>8.2f}"
        print(f"{label:<28}{figures}{median / reference:>16.2f}x")
        rows.append(
            {
                "how": label,
                "runs_s": values,
                "median_s": median,
                "ratio_to_compose": median / reference,
            }
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"clients": args.clients, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
