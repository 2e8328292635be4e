"""Many connections per client container against one connection per container, side by side.

Each row is a whole lab, run in its own process (so the harness's peak RSS is that row's):
``Lab`` start, the clients created gated, released at once, waited for and checked. Rows:
200 containers x 1 connection (the reference: what the harness could do before), 50 x 20
(1,000 connections) and 50 x 200 (10,000). Every connection sends ``--count`` messages paced at
``--rate`` per second, for 20 s by default: longer than the **connect phase** (printed: from
the row's first request to the last connection's first, i.e. the clients' release and their
connects), so that all of them are open at once (the records show it: the peak
number of connections carrying traffic at the same moment). A life shorter than the connect
phase lets the first connections finish before the last begin.

Figures per row, each from an observer that is not the thing measured:
- **time**: from ``Lab`` start (before the network exists) to the checked result (every reply
  of every connection checked by the harness), by this process's monotonic clock;
- **peak memory** of the server and of the clients: each container's cgroup high-water mark
  (``memory.max_usage_in_bytes`` on cgroup v1, ``memory.peak`` on v2), read by the kernel and
  sampled from the host every 0.1 s while the container lives (a client's last 0.1 s may
  escape it); the server's process alone too (its VmHWM: the cgroup's mark includes the
  health probe exec'd into it); the harness: its own ``ru_maxrss``;
- the server's listen-queue overflows (``TcpExt ListenOverflows``, its network namespace's).

Exits 1 if any reply was missing or wrong, if fewer connections of a many-connection row were
open at once than asked for, or if a bound below is missed; prints a table and writes
results/connections.json. The reference's "open at once" is a figure, not a bound: one-
connection containers come up one after another (each a Python start on 2 shared cores), so
many of them are done before the last begins; that is what this feature is for.

    .venv/bin/python benchmarks/connections.py [--count 10] [--rate 0.5]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container
from verdict import host_facts, now, write

from harness import Lab, LabSpec, Workload
from harness.containers import output_of
from harness.results import ConnectionResult

ROWS = {"200 x 1": (200, 1), "50 x 20": (50, 20), "50 x 200": (50, 200)}
REFERENCE = "200 x 1"
MEMORY_SHARE = 0.8
"""A container's peak stays under this share of its memory limit (lab.py sets them: 256 MiB
for the server, 128 MiB for a client), or the next step up would be killed by the kernel."""
TIME_RATIO = 1.0
"""10,000 connections from 50 containers take no longer than 200 one-connection containers."""
CGROUP_FILES = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes",
    "/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.max_usage_in_bytes",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak",
    "/sys/fs/cgroup/docker/{id}/memory.peak",
)


class PeakMemory:
    """Samples every container's cgroup high-water mark from the host until stopped."""

    def __init__(self, containers: list[Container], period: float = 0.1) -> None:
        self.paths = {c.id: self._path(str(c.id)) for c in containers}
        self.peaks: dict[str, int] = {}
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    @staticmethod
    def _path(container_id: str) -> Path:
        for template in CGROUP_FILES:
            path = Path(template.format(id=container_id))
            if path.exists():
                return path
        raise SystemExit(f"no cgroup memory file for container {container_id[:12]} on this host")

    def sample(self) -> None:
        for key, path in self.paths.items():
            try:
                value = int(path.read_text())
            except (OSError, ValueError):
                continue  # the container has exited: its cgroup is gone
            self.peaks[str(key)] = max(value, self.peaks.get(str(key), 0))

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def process_peak_mib(container: Container) -> float:
    """The peak RSS (VmHWM, kept by the kernel) of the container's main process alone: the
    cgroup's mark also counts what was exec'd into it (the harness's health probe is a second
    Python), which can outweigh a small server's own growth."""
    container.reload()
    status = Path(f"/proc/{container.attrs['State']['Pid']}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def listen_overflows(server: Container) -> int:
    """TcpExt ListenOverflows in the server's network namespace."""
    code, output = server.exec_run(["cat", "/proc/net/netstat"])
    if code != 0:
        raise SystemExit(f"cannot read the server's /proc/net/netstat: {output_of(output)!r}")
    lines = [line.split() for line in output_of(output).decode().splitlines()]
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names[0] == "TcpExt:":
            return int(dict(zip(names, values, strict=True))["ListenOverflows"])
    raise SystemExit("no TcpExt line in the server's /proc/net/netstat")


def run_row(clients: int, connections: int, count: int, rate: float) -> dict[str, Any]:
    """One lab, start to checked result; runs in its own process (see main)."""
    workload = Workload(
        count=count, rate=rate, connections=connections, timeout=180, connect_timeout=60
    )
    began = time.monotonic()
    with Lab(LabSpec(name="bench-conns", clients=clients, workload=workload)) as lab:
        batch = lab.create_clients()
        with PeakMemory([lab.server, *batch.containers]) as memory:
            result = batch.start().wait(timeout=workload.timeout + 120)
            problems = result.problems()
            checked_s = time.monotonic() - began
            memory.sample()
        overflows = listen_overflows(lab.server)
        server_id = str(lab.server.id)
        server_process_mib = process_peak_mib(lab.server)
    client_peaks = [memory.peaks.get(str(c.id), 0) for c in batch.containers]
    return {
        "clients": clients,
        "connections_each": connections,
        "connections": clients * connections,
        "messages": clients * connections * count,
        "time_s": checked_s,
        "run_s": result.elapsed_s,
        "replies": sum(len(c.exchanges) for c in result.clients),
        "problems": len(problems),
        "first_problems": [str(p) for p in problems[:5]],
        "peak_concurrency": result.peak_concurrency(),
        "connect_phase_s": connect_phase(result.connections()),
        "server_peak_mib": memory.peaks.get(server_id, 0) / 2**20,
        "server_process_peak_mib": server_process_mib,
        "client_peak_mib_max": max(client_peaks) / 2**20,
        "clients_peak_mib_sum": sum(client_peaks) / 2**20,
        "harness_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "listen_overflows": overflows,
        "reconnects": sum(c.summary.reconnects for c in result.clients if c.summary),
    }


def connect_phase(connections: list[ConnectionResult]) -> float:
    """Seconds from the row's first request to the last connection's first: how long the
    clients took to have every connection sending (0 with none)."""
    firsts = [min(e.sent for e in c.exchanges) for c in connections if c.exchanges]
    return max(firsts) - min(firsts) if firsts else 0.0


def bounds(rows: dict[str, dict[str, Any]]) -> list[str]:
    """What was missed, one line each (nothing: every bound held)."""
    missed = []
    for name, row in rows.items():
        if row["problems"] or row["replies"] != row["messages"]:
            missed.append(f"{name}: {row['replies']}/{row['messages']} replies, "
                          f"{row['problems']} problem(s): {row['first_problems']}")  # fmt: skip
        if name != REFERENCE and row["peak_concurrency"] < row["connections"]:
            missed.append(f"{name}: {row['peak_concurrency']} connections open at once "
                          f"of {row['connections']} (connect phase {row['connect_phase_s']:.1f}"
                          " s: a connection's life must outlast it)")  # fmt: skip
        if row["server_peak_mib"] > MEMORY_SHARE * 256:
            missed.append(f"{name}: server peak {row['server_peak_mib']:.0f} MiB > 80 % of 256")
        if row["client_peak_mib_max"] > MEMORY_SHARE * 128:
            missed.append(f"{name}: a client's peak {row['client_peak_mib_max']:.0f} MiB > "
                          "80 % of 128")  # fmt: skip
    big, reference = rows.get("50 x 200"), rows.get(REFERENCE)
    if big and reference and big["time_s"] > TIME_RATIO * reference["time_s"]:
        missed.append(f"50 x 200 took {big['time_s']:.1f} s > {TIME_RATIO}x {REFERENCE}'s "
                      f"{reference['time_s']:.1f} s")  # fmt: skip
    return missed


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    reference = rows.get(REFERENCE)
    head = ("containers x conns", "conns", "time s", "x ref", "server MiB", "server RSS",
            "client MiB max", "clients MiB sum", "harness MiB", "open at once",
            "connect s", "overflows")  # fmt: skip
    print("".join(f"{h:>16}" for h in head))
    for name, row in rows.items():
        ratio = row["time_s"] / reference["time_s"] if reference else float("nan")
        cells = (name, row["connections"], f"{row['time_s']:.1f}", f"{ratio:.2f}",
                 f"{row['server_peak_mib']:.1f}", f"{row['server_process_peak_mib']:.1f}",
                 f"{row['client_peak_mib_max']:.1f}",
                 f"{row['clients_peak_mib_sum']:.0f}", f"{row['harness_maxrss_mib']:.0f}",
                 row["peak_concurrency"], f"{row['connect_phase_s']:.1f}",
                 row["listen_overflows"])  # fmt: skip
        print("".join(f"{c:>16}" for c in cells))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10, help="messages per connection")
    parser.add_argument("--rate", type=float, default=0.5, help="messages/s per connection")
    parser.add_argument("--rows", default=",".join(ROWS), help="which rows, comma-separated")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # a child process: run this row only
    parser.add_argument("--out", default="results/connections.json")
    args = parser.parse_args()
    if args.row:
        clients, connections = ROWS[args.row]
        print(json.dumps(run_row(clients, connections, args.count, args.rate)))
        return 0
    rows: dict[str, dict[str, Any]] = {}
    started = now()
    for name in args.rows.split(","):
        child = subprocess.run(
            [sys.executable, __file__, "--row", name, "--count", str(args.count),
             "--rate", str(args.rate)],
            capture_output=True, text=True, check=False, timeout=900,
        )  # fmt: skip
        if child.returncode != 0:
            print(child.stdout + child.stderr, file=sys.stderr)
            print(f"row {name}: failed (exit {child.returncode})", file=sys.stderr)
            return 1
        rows[name] = json.loads(child.stdout.splitlines()[-1])
        print(f"{name}: done in {rows[name]['time_s']:.1f} s", flush=True)
    print(f"\nevery connection: {args.count} messages at {args.rate}/s; time from Lab start to "
          f"the checked result; peak memory from each container's cgroup")  # fmt: skip
    print_table(rows)
    missed = bounds(rows)
    for line in missed:
        print(f"MISSED {line}")
    host = host_facts(docker.from_env())
    record = {"started": started, "count": args.count, "rate": args.rate, "rows": rows}
    write(args.out, {**record, "missed": missed, "host": host})
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
