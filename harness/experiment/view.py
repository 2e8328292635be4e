"""What the report shows, computed from the stored results (pure: records in, data out).

Kept apart from the drawing (``figures``) and the HTML (``report``) so that what a reader sees
can be tested against the results without parsing a picture: the fault periods come from the
timeline as it happened, the marks from the violations and the reconnects in the exchanges,
the verdicts from the summary row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.experiment.stats import Floats, cdf
from harness.experiment.store import Columns

# A run's timeline is thinned to about this many points in all (every n-th reply per client):
# a figure of a million points would weigh tens of MB and show no more.
POINTS_PER_TIMELINE = 6000


@dataclass(frozen=True)
class Period:
    """A fault's time, in seconds into the run: surely in force from ``sure_start`` (its
    action had returned) to ``sure_end`` (its removal had not begun), and possibly from
    ``start`` (its action began) to ``end`` (its removal returned): applying a fault takes
    a sidecar's start-up, and the fault bites somewhere within it."""

    fault: str
    label: str
    start: float
    sure_start: float
    sure_end: float
    end: float
    removed: bool  # False: it was still in force when the run ended


@dataclass(frozen=True)
class Mark:
    """Something that happened to one client at a time: a violation or a reconnect."""

    client: str
    t: float
    kind: str  # lost, duplicated, out_of_order, malformed, reconnect
    detail: str


@dataclass(frozen=True)
class Verdict:
    check: str
    ok: bool
    detail: str


@dataclass
class RunView:
    id: str
    label: str
    settings: Mapping[str, Any]
    stats: Mapping[str, Any]
    backend: str | None
    cdf: tuple[Floats, Floats]
    lanes: dict[str, tuple[Floats, Floats]] = field(default_factory=dict)
    periods: list[Period] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    fidelity: Mapping[str, Any] = field(default_factory=dict)
    end: float = 0.0

    @property
    def ok(self) -> bool:
        """The run's behaviour held (its ``status``); fidelity is a verdict on the faults."""
        return all(v.ok for v in self.verdicts if v.check != "fidelity")


def periods(timeline: Sequence[Mapping[str, Any]], end: float) -> list[Period]:
    """Each fault's time in force, from its ``applied`` and ``removed`` entries (the run's
    end when it was never removed)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in timeline:
        fault = str(entry.get("fault"))
        if entry.get("event") == "applied":
            found[fault] = {"start": float(entry["t_s"]), "sure_start": float(entry["done_s"]),
                            "label": _label(entry)}  # fmt: skip
        elif entry.get("event") == "removed" and fault in found:
            found[fault].update(sure_end=float(entry["t_s"]), end=float(entry["done_s"]))
    return [
        Period(
            fault,
            f["label"],
            f["start"],
            f["sure_start"],
            f.get("sure_end", end),
            f.get("end", end),
            "end" in f,
        )
        for fault, f in found.items()
    ]


def _label(entry: Mapping[str, Any]) -> str:
    params = entry.get("params") or {}
    words = " ".join(f"{k} {v}" for k, v in params.items())
    return " ".join(x for x in (str(entry.get("action")), str(entry.get("target")), words) if x)


def marks(record: Mapping[str, Any], columns: Columns, t0: float) -> list[Mark]:
    """Violations at the time of the message they concern (a lost one at the last reply its
    client got), and each reconnect at the first reply on the new connection."""
    by_message: dict[tuple[str, int], float] = {}
    last: dict[str, float] = {}
    found: list[Mark] = []
    previous: dict[str, int] = {}
    for client, conn, seq, sent in zip(
        columns.client, columns.conn, columns.seq, columns.sent, strict=True
    ):
        t = float(sent) - t0
        by_message[(client, int(seq))] = t
        last[client] = max(last.get(client, t), t)
        if client in previous and int(conn) != previous[client]:
            found.append(Mark(client, t, "reconnect", f"connection {int(conn)}"))
        previous[client] = int(conn)
    kinds = {"missing": "lost", "duplicate": "duplicated", "order": "out_of_order",
             "timestamp": "out_of_order"}  # fmt: skip
    for violation in record.get("violations", []):
        client, seq = str(violation["client"]), violation.get("seq")
        if seq is None:
            continue  # a client's exit code: in the verdicts, not at a time
        t = by_message.get((client, int(seq)), last.get(client, 0.0))
        kind = kinds.get(str(violation["check"]), "malformed")
        found.append(Mark(client, t, kind, f"seq {seq}: {violation['check']}"))
    return found


def verdicts(stats: Mapping[str, Any], fidelity: Mapping[str, Any]) -> list[Verdict]:
    """The verdict grid's cells of one run."""
    cells = [
        Verdict("order", stats["out_of_order"] == 0, f"{stats['out_of_order']} out of order"),
        Verdict("format", stats["malformed"] == 0, f"{stats['malformed']} malformed"),
        Verdict(
            "complete",
            stats["lost"] == 0 and stats["duplicated"] == 0,
            f"{stats['lost']} lost, {stats['duplicated']} duplicated",
        ),
        Verdict("clients", stats["failed_clients"] == 0, f"{stats['failed_clients']} failed"),
    ]
    if fidelity.get("ok") is not None:
        faults = fidelity["faults"]
        late = [f["late_us_p99"] for f in faults if f.get("late_us_p99") is not None]
        said = [f"release lateness p99 {max(late):g} us, bound {fidelity['bound_us']:g} us"]
        said = said if late else []
        said += [
            f"{f['fault']}: {f['probe_ms']:g} ms added for {f['expected_ms']:g} ms "
            f"(bound ±{f['probe_bound_ms']:g})"
            for f in faults
            if f.get("probe_ms") is not None
        ]
        if any(f.get("engine_died") or "died" in str(f.get("why", "")) for f in faults):
            said.append("an engine died")
        cells.append(Verdict("fidelity", bool(fidelity["ok"]), "; ".join(said)))
    return cells


def lanes(columns: Columns, t0: float) -> dict[str, tuple[Floats, Floats]]:
    """Per client: (seconds into the run, round trip ms), thinned (``POINTS_PER_TIMELINE``)."""
    clients = np.asarray(columns.client)
    names = sorted(set(columns.client), key=lambda c: (len(c), c))
    per_client = max(50, POINTS_PER_TIMELINE // max(len(names), 1))
    found = {}
    for client in names:
        chosen = clients == client
        t, rtt = columns.sent[chosen] - t0, columns.rtt_ms[chosen]
        order = np.argsort(t)
        step = max(1, t.size // per_client)
        found[client] = (t[order][::step], rtt[order][::step])
    return found


def run_view(record: Mapping[str, Any], columns: Columns) -> RunView:
    t0 = record.get("t0_wall")
    if t0 is None:
        t0 = float(columns.sent.min()) if len(columns) else 0.0
    end = float(columns.received.max()) - float(t0) if len(columns) else 0.0
    fidelity = record.get("fidelity", {})
    return RunView(
        id=str(record["id"]),
        label=str(record["label"]),
        settings=record["settings"],
        stats=record["stats"],
        backend=record.get("backend"),
        cdf=cdf(columns.rtt_ms),
        lanes=lanes(columns, float(t0)),
        periods=periods(record.get("timeline", []), end),
        marks=marks(record, columns, float(t0)),
        verdicts=verdicts(record["stats"], fidelity),
        fidelity=fidelity,
        end=end,
    )


@dataclass(frozen=True)
class SweepPoint:
    value: Any
    run: str
    p50: float | None
    p99: float | None
    throughput: float | None


def sweep(views: Sequence[RunView], key: str) -> list[SweepPoint]:
    """Each run's figures against the value of ``key`` it ran with (repetitions as several
    points at one value)."""
    return [
        SweepPoint(
            v.settings[key], v.id, v.stats.get("p50_ms"), v.stats.get("p99_ms"),
            v.stats.get("throughput_msg_s"),
        )
        for v in views
    ]  # fmt: skip
