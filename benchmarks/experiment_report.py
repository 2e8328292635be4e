"""What an experiment of 1,000,000 exchanges costs to store and to report (no Docker).

Writes a results folder of synthetic exchanges (``--runs`` x ``--clients`` x ``--messages``,
round trips drawn from a seeded log-normal, one scheduled fault per run), through the very
``store.Results`` and ``report.write_report`` the command line uses, and prints: the time to
store the exchanges, their size as gzipped CSV against the client's own JSON lines (the same
records, the reference), the time to write the report and its size. Exits 1 when the report
takes longer than ``--max-seconds`` or is larger than ``--max-mb``.

    .venv/bin/python benchmarks/experiment_report.py [--runs 10 --clients 10 --messages 10000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from echo_client.records import Exchange

from harness.experiment.declare import parse
from harness.experiment.expand import expand
from harness.experiment.report import write_report
from harness.experiment.stats import run_stats
from harness.experiment.store import EXCHANGES, Results
from harness.paths import RESULTS


def _exchanges(run: int, clients: int, messages: int, seed: int) -> list[Exchange]:
    rng = np.random.default_rng(seed)
    found = []
    for c in range(clients):
        rtts = rng.lognormal(np.log(0.5), 0.4, messages)
        sent = 1_000_000.0 + np.arange(messages) * 0.001
        request = f"c{c} 00000000 {'x' * 50}\n"
        reply = f"[Wed Dec  2 10:00:00 2026] {request}"
        found += [
            Exchange(f"c{c}", 0, i, float(s), float(s + r / 1e3), float(r), request, reply)
            for i, (s, r) in enumerate(zip(sent, rtts, strict=True))
        ]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--max-mb", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "experiment-report.json")
    args = parser.parse_args()
    declared = (
        f'[experiment]\nname = "bench"\nrepetitions = {args.runs}\n'
        f"[run]\nclients = {args.clients}\nmessages = {args.messages}\nsize = 64\n"
    )
    runs = expand(parse(declared))
    with tempfile.TemporaryDirectory() as tmp:
        manifest = {"name": "bench", "seed": 0, "order": "shuffle", "created": "now",
                    "swept": [], "expanded": [r.as_dict() for r in runs],
                    "provenance": {"echolab": "benchmark"}}  # fmt: skip
        results = Results.create(Path(tmp) / "out", declared, manifest)
        store_s = jsonl_bytes = csv_bytes = 0.0
        total = 0
        for n, run in enumerate(runs):
            exchanges = _exchanges(n, args.clients, args.messages, seed=n)
            total += len(exchanges)
            timeline = [
                {"fault": "s0", "event": "applied", "action": "impair", "target": "server",
                 "params": {"delay": "20ms"}, "t_s": 2.0, "done_s": 2.5},
                {"fault": "s0", "event": "removed", "action": "heal", "target": "server",
                 "t_s": 5.0, "done_s": 5.2},
            ]  # fmt: skip
            rtt = np.array([e.rtt_ms for e in exchanges])
            sent = np.array([e.sent for e in exchanges])
            stats = run_stats(rtt, sent, sent + rtt / 1e3, [], expected=rtt.size, reconnects=0)
            record = {"id": run.id, "label": f"#{run.repetition}", "settings": dict(run.settings),
                      "status": "ok", "backend": "nfqueue", "t0_wall": 1_000_000.0,
                      "timeline": timeline, "stats": stats.as_dict(), "violations": []}  # fmt: skip
            began = time.perf_counter()
            results.write_run(run.id, exchanges, record)
            store_s += time.perf_counter() - began
            csv_bytes += (results.run_dir(run.id) / EXCHANGES).stat().st_size
            jsonl_bytes += sum(len(e.to_json()) + 1 for e in exchanges)
            if n == 0:
                lines = "\n".join(e.to_json() for e in exchanges).encode()
                jsonl_gz_ratio = len(gzip.compress(lines, 6)) / len(lines)
        began = time.perf_counter()
        report = write_report(results)
        report_s = time.perf_counter() - began
        html_mb = report.stat().st_size / 1e6
    figures = {
        "exchanges": total,
        "store_s": round(store_s, 2),
        "exchanges_csv_gz_mb": round(csv_bytes / 1e6, 2),
        "client_jsonl_mb": round(jsonl_bytes / 1e6, 2),
        "client_jsonl_gz_mb_estimated": round(jsonl_bytes * jsonl_gz_ratio / 1e6, 2),
        "report_s": round(report_s, 2),
        "report_mb": round(html_mb, 2),
        "bounds": {"report_s": args.max_seconds, "report_mb": args.max_mb},
    }
    print(f"{total:,} exchanges in {len(runs)} runs")
    print(f"  store (gzipped CSV)  {store_s:6.2f} s   {csv_bytes / 1e6:7.2f} MB")
    gz = figures["client_jsonl_gz_mb_estimated"]
    print(f"  client's JSON lines            {jsonl_bytes / 1e6:7.2f} MB  "
          f"({jsonl_bytes / csv_bytes:.1f}x the CSV; gzipped: ~{gz} MB)")  # fmt: skip
    print(f"  report.html          {report_s:6.2f} s   {html_mb:7.2f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    missed = report_s > args.max_seconds or html_mb > args.max_mb
    if missed:
        print(f"MISSED: report within {args.max_seconds} s and {args.max_mb} MB", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
