"""Rows, verdicts and the record of a fidelity run: one format for every backend.

A row says what was configured, what an observer that is not the fault saw (``observe``), the
bound, and a verdict: ``ok`` or ``MISSED`` for a graded row; ``figure`` for a row that is only a
figure (CPU, the proxy's hop); ``n/a`` for what a backend cannot do by design; ``skipped`` when
this host cannot apply it (with the preflight's reason, so an absent backend is visible rather
than silently missing); ``ERROR`` when the measurement itself failed. Figures that are *not*
graded (the mechanism's own counters, the shift against a second baseline) are the row's
``notes``, printed under it, so they can be compared without ever deciding a verdict.

The process exits 1 when any graded row missed its bound or failed, and 2 when nothing could be
graded at all: a benchmark that judged nothing has not shown fidelity.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docker.client import DockerClient
from observe import quantile

Row = dict[str, Any]
GRADED = ("ok", "MISSED", "ERROR")
FAILING = ("MISSED", "ERROR")
ROOT = Path(__file__).resolve().parent.parent


def row(
    kind: str,
    backend: str,
    configured: str,
    observed: str,
    bound: str,
    ok: bool | None,
    notes: Sequence[str] = (),
    **data: Any,
) -> Row:
    """A measured row: graded when ``ok`` is a bool, a plain figure when it is None."""
    verdict = "figure" if ok is None else ("ok" if ok else "MISSED")
    return {
        "kind": kind,
        "backend": backend,
        "configured": configured,
        "observed": observed,
        "bound": bound,
        "verdict": verdict,
        "notes": list(notes),
        **data,
    }


def unmeasured(kind: str, backend: str, configured: str, verdict: str, why: str) -> Row:
    """A row with no measurement: ``skipped`` (this host cannot), ``n/a`` (by design) or
    ``ERROR`` (the measurement failed); ``why`` is printed under it."""
    return row(kind, backend, configured, "-", "-", None, [why], verdict=verdict)


def cpu_times() -> tuple[float, float]:
    """(busy, total) time of all the host's CPUs so far, from /proc/stat (idle and iowait are
    not busy). The containers share this kernel, so their work is in it."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def busy_since(start: tuple[float, float]) -> float:
    """Percent of all CPUs busy since ``start`` (``cpu_times()``)."""
    busy, total = cpu_times()
    return round(100 * (busy - start[0]) / max(1e-9, total - start[1]), 1)


def guard(
    rows: list[Row], kind: str, backend: str, configured: str, measure: Callable[[], Row]
) -> None:
    """Append ``measure()``'s row, or an ``ERROR`` row if it raised: one failed measurement
    fails the run (exit 1) but does not cost the rows after it."""
    start = cpu_times()
    try:
        measured = measure()
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        why = f"{type(error).__name__}: {str(error)[:300]}"
        measured = unmeasured(kind, backend, configured, "ERROR", why)
    # What else ran meanwhile decides how late a user-space process wakes: it is part of the
    # conditions the figure was taken in, so every row carries it.
    busy, load = busy_since(start), round(os.getloadavg()[0], 2)
    measured["notes"].append(
        f"host CPUs busy during this row: {busy:.0f} % (everything, this benchmark included); "
        f"load average {load}"
    )
    rows.append(measured | {"host_busy_pct": busy, "loadavg_1min": load})


def shifts(observed: list[float], reference: list[float]) -> tuple[float, float]:
    """The shift of the median and of the p90 round trip: q(observed) - q(reference). Not the
    added delay's own quantiles: a difference of quantiles is not a quantile of differences."""
    return (
        quantile(observed, 0.5) - quantile(reference, 0.5),
        quantile(observed, 0.9) - quantile(reference, 0.9),
    )


def summary_of(rtts: list[float]) -> dict[str, float]:
    return {
        "n": len(rtts),
        "median_ms": round(quantile(rtts, 0.5), 3),
        "p90_ms": round(quantile(rtts, 0.9), 3),
        "stdev_ms": round(statistics.stdev(rtts), 3) if len(rtts) > 1 else 0.0,
    }


def delay_row(
    backend: str,
    configured_ms: float,
    impaired: list[float],
    reference: tuple[str, list[float]],
    beside: tuple[str, list[float]],
    notes: Sequence[str] = (),
) -> Row:
    """Graded on the shift against ``reference`` (median and p90 both within 0.2 ms + 1 %);
    the shift against ``beside`` is printed, never graded."""
    bound = 0.2 + 0.01 * configured_ms
    med, p90 = shifts(impaired, reference[1])
    other_med, other_p90 = shifts(impaired, beside[1])
    ok = abs(med - configured_ms) <= bound and abs(p90 - configured_ms) <= bound
    ref, rtts = summary_of(reference[1]), summary_of(impaired)
    return row(
        "delay",
        backend,
        f"{configured_ms:g} ms",
        f"shift of median rtt {med:+.3f} ms, of p90 rtt {p90:+.3f} ms",
        f"+-{bound:.2f} ms",
        ok,
        [
            f"graded against {reference[0]}: median {ref['median_ms']:.3f}, p90 "
            f"{ref['p90_ms']:.3f} ms; impaired: median {rtts['median_ms']:.3f}, p90 "
            f"{rtts['p90_ms']:.3f} ms ({rtts['n']} exchanges)",
            f"against {beside[0]} (not graded): shift of median rtt {other_med:+.3f} ms, "
            f"of p90 rtt {other_p90:+.3f} ms",
            *notes,
        ],
        shift_median_ms=round(med, 3),
        shift_p90_ms=round(p90, 3),
        bound_ms=round(bound, 3),
        reference={"name": reference[0], **ref},
        impaired=rtts,
        beside={
            "name": beside[0],
            "shift_median_ms": round(other_med, 3),
            "shift_p90_ms": round(other_p90, 3),
        },
    )


def jitter_row(
    backend: str,
    delay_ms: float,
    jitter_ms: float,
    impaired: list[float],
    reference: tuple[str, list[float]],
    notes: Sequence[str] = (),
) -> Row:
    """Uniform jitter of +-``jitter_ms`` has a standard deviation of jitter/sqrt(3); graded on
    the stdev of the round trips the probe saw (within 10 %). The reference's own spread is
    printed beside, and the stdev with it taken out in quadrature, neither graded."""
    expected = jitter_ms / math.sqrt(3)
    observed = statistics.stdev(impaired)
    noise = statistics.stdev(reference[1])
    corrected = math.sqrt(max(0.0, observed**2 - noise**2))
    mean_shift = statistics.mean(impaired) - statistics.mean(reference[1])
    return row(
        "jitter",
        backend,
        f"{delay_ms:g} +- {jitter_ms:g} ms uniform (stdev {expected:.3f} ms)",
        f"stdev of rtt {observed:.3f} ms",
        f"+-{0.1 * expected:.3f} ms (10 %)",
        abs(observed - expected) <= 0.1 * expected,
        [
            f"{reference[0]} (not graded): stdev {noise:.3f} ms; the impaired stdev with it "
            f"taken out in quadrature {corrected:.3f} ms; shift of mean rtt {mean_shift:+.3f} ms",
            *notes,
        ],
        stdev_ms=round(observed, 3),
        expected_stdev_ms=round(expected, 3),
        reference={"name": reference[0], **summary_of(reference[1])},
        impaired=summary_of(impaired),
        noise_corrected_stdev_ms=round(corrected, 3),
        mean_shift_ms=round(mean_shift, 3),
    )


def print_table(title: str, rows: list[Row], legend: Sequence[str] = ()) -> None:
    print(f"\n{title}")
    for line in legend:
        print(f"  {line}")
    head = f"{'kind':<8} {'backend':<12} {'configured':<40} {'observed':<54} {'bound':<18} verdict"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['kind']:<8} {r['backend']:<12} {r['configured']:<40} {r['observed']:<54} "
            f"{r['bound']:<18} {r['verdict']}"
        )
        for note in r["notes"]:
            print(f"{'':<10}{note}")


def summarize(rows: list[Row]) -> tuple[dict[str, Any], int]:
    """Counts per verdict, the rows that failed, and the exit code (see the module's doc)."""
    counts = {
        v: sum(r["verdict"] == v for r in rows)
        for v in ("ok", "MISSED", "ERROR", "skipped", "figure", "n/a")
    }
    failing = [
        f"{r['kind']} {r['backend']} {r['configured']}: {r['verdict']}"
        for r in rows
        if r["verdict"] in FAILING
    ]
    graded = sum(counts[v] for v in GRADED)
    code = 1 if failing else (2 if graded == 0 else 0)
    return {"graded": graded, **counts, "failing": failing}, code


def print_summary(summary: dict[str, Any], code: int, elapsed_s: float, busy_pct: float) -> None:
    failing = "; ".join(summary["failing"]) or "none"
    print(
        f"\nsummary: {summary['graded']} graded: {summary['ok']} ok, {summary['MISSED']} MISSED, "
        f"{summary['ERROR']} ERROR; {summary['skipped']} skipped, {summary['figure']} figures, "
        f"{summary['n/a']} n/a; took {elapsed_s:.0f} s, host CPUs {busy_pct:.0f} % busy; "
        f"exit {code}"
        + ("" if code != 1 else f"\nfailed: {failing}")
        + ("" if code != 2 else "\nnothing could be graded on this host")
    )


def host_facts(client: DockerClient) -> dict[str, Any]:
    """What a reader needs to interpret the figures later: the kernel the containers ran on,
    the engine, the cores, the commit of the code that measured."""
    info = client.info()

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    # The code that measured is the commit plus these (a worktree may hold uncommitted work).
    where = ("--", "benchmarks", "harness", "faults")
    changed = git("diff", "--name-only", "HEAD", *where).splitlines()
    changed += git("ls-files", "--others", "--exclude-standard", *where).splitlines()
    return {
        "kernel": info.get("KernelVersion"),
        "os": info.get("OperatingSystem"),
        "cpus": info.get("NCPU"),
        "cgroup": info.get("CgroupVersion"),
        "docker": client.version().get("Version"),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "commit": commit or None,
        "uncommitted": changed,
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write(out: str, record: dict[str, Any]) -> None:
    """One JSON document per run: the rows and what is needed to read them later."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
