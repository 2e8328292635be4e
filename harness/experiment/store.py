"""An experiment's results folder: self-describing, one file per kind of thing (I/O only).

::

    experiment.toml          the file exactly as declared
    manifest.json            declared and expanded (every run, its settings and seed, in run
                             order), the overrides, the seed, the provenance (echolab commit,
                             Docker, Compose, kernels, the fault preflight), and per finished run
                             its status, fault backend and whether its faults held their bounds
    summary.csv              one row per finished run (``stats.RunStats``), in run order
    runs/<id>/exchanges.csv.gz   every reply: run, client, conn, seq, sent, received, rtt_ms
    runs/<id>/run.json       the run's settings, seed, timings, fault timeline as it happened,
                             fidelity, its summary row, violations and the clients' problems
    report.html              ``python -m harness experiment report DIR``

Why gzipped CSV for the exchanges: every tool reads it (``zcat``, pandas, R, a spreadsheet)
without a library of ours, it streams, and it is small: 1,000,000 exchanges take 12 MB, against
327 MB as the client's JSON lines and ~22 MB as those gzipped (``benchmarks/experiment_report.py``).
The request and reply texts are dropped: every one that was wrong is kept in ``run.json``'s
violations, and the others are the request echoed.
A run is finished when its ``run.json`` exists; it is written last and atomically (a rename),
so a run killed half-way leaves no ``run.json`` and ``--resume`` runs it again.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from echo_client.records import Exchange

from harness.experiment.stats import Floats, Ints

EXCHANGE_COLUMNS = ("run", "client", "conn", "seq", "sent", "received", "rtt_ms")
MANIFEST = "manifest.json"
DECLARED = "experiment.toml"
SUMMARY = "summary.csv"
REPORT = "report.html"
RUN_RECORD = "run.json"
EXCHANGES = "exchanges.csv.gz"


@dataclass(frozen=True)
class Columns:
    """A run's exchanges as columns (what the report and statistics read)."""

    client: Sequence[str]
    conn: Ints
    seq: Ints
    sent: Floats
    received: Floats
    rtt_ms: Floats

    def __len__(self) -> int:
        return int(self.rtt_ms.size)


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON atomically: a reader sees the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=2, default=str)
            file.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Results:
    """The folder of one experiment."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, root: Path, declared: str, manifest: Mapping[str, Any]) -> Results:
        root.mkdir(parents=True, exist_ok=True)
        (root / DECLARED).write_text(declared)
        results = cls(root)
        write_json(root / MANIFEST, {**manifest, "runs": {}})
        return results

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / MANIFEST).read_text())
        return data

    @property
    def declared(self) -> str:
        return (self.root / DECLARED).read_text()

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def done(self) -> list[str]:
        """The finished runs, in the order they were expanded."""
        order = [run["id"] for run in self.manifest["expanded"]]
        return [r for r in order if (self.run_dir(r) / RUN_RECORD).exists()]

    def write_run(
        self, run_id: str, exchanges: Iterable[Exchange], record: Mapping[str, Any]
    ) -> None:
        """The exchanges, then the run's record (last: it marks the run finished), then the
        summary and the manifest's entry for it."""
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        with gzip.open(folder / EXCHANGES, "wt", newline="", compresslevel=6) as file:
            writer = csv.writer(file)
            writer.writerow(EXCHANGE_COLUMNS)
            for e in exchanges:
                writer.writerow(
                    (run_id, e.client, e.conn, e.seq, f"{e.sent:.6f}", f"{e.received:.6f}",
                     f"{e.rtt_ms:.4f}")
                )  # fmt: skip
        write_json(folder / RUN_RECORD, record)
        manifest = self.manifest
        manifest["runs"][run_id] = {
            "status": record["status"],
            "backend": record.get("backend"),
            "fidelity_ok": record.get("fidelity", {}).get("ok"),
        }
        write_json(self.root / MANIFEST, manifest)
        self.write_summary()

    def expand(self, run: Mapping[str, Any]) -> None:
        """Add a run to the manifest's expanded ones (a search decides its runs as it goes)."""
        manifest = self.manifest
        manifest["expanded"].append(dict(run))
        write_json(self.root / MANIFEST, manifest)

    def note(self, key: str, value: object) -> None:
        """Record ``key`` in the manifest (a search's outcome)."""
        manifest = self.manifest
        manifest[key] = value
        write_json(self.root / MANIFEST, manifest)

    def run_record(self, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run_dir(run_id) / RUN_RECORD).read_text())
        return data

    def exchanges(self, run_id: str) -> Columns:
        client: list[str] = []
        numbers: list[tuple[float, float, float, float, float]] = []
        with gzip.open(self.run_dir(run_id) / EXCHANGES, "rt", newline="") as file:
            reader = csv.reader(file)
            header = next(reader)
            if tuple(header) != EXCHANGE_COLUMNS:
                raise ValueError(f"{run_id}/{EXCHANGES}: unexpected columns {header}")
            for row in reader:
                client.append(row[1])
                numbers.append((float(row[2]), float(row[3]), float(row[4]), float(row[5]),
                                float(row[6])))  # fmt: skip
        table = np.array(numbers, dtype=np.float64).reshape(-1, 5)
        return Columns(
            client=client,
            conn=table[:, 0].astype(np.int64),
            seq=table[:, 1].astype(np.int64),
            sent=table[:, 2],
            received=table[:, 3],
            rtt_ms=table[:, 4],
        )

    def write_summary(self) -> None:
        rows = []
        for run_id in self.done():
            record = self.run_record(run_id)
            rows.append({"run": run_id, **record["settings"], **record["stats"]})
        if not rows:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        tmp = self.root / f".{SUMMARY}.tmp"
        with tmp.open("w", newline="") as file:
            writer = csv.DictWriter(file, columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.root / SUMMARY)
