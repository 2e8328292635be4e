"""``report.html``: one self-contained file (figures inlined as base64 SVG, no script, no
network) that a reader opens anywhere: the verdict grid first (which runs held ordering,
format and completeness, which broke and how), then the round-trip CDFs, the percentiles
against each swept key with repetitions as spread, each run's timeline with its faults shaded
and violations marked, the fidelity table and the summary table, the provenance last.

Elements carry ``data-run`` / ``data-check`` attributes, so a test compares what the page says
with the results folder without reading pictures.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.experiment import figures
from harness.experiment.probe import (
    PROBE_BOUND_MS,
    PROBE_BOUND_SHARE,
    baseline_runs,
    expected_ms,
    fault_free,
    probe_rows,
)
from harness.experiment.search import PARAMETERS
from harness.experiment.store import REPORT, Results
from harness.experiment.view import RunView, run_view, sweep

MAX_TIMELINES = 60
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f4f4f4}
td.ok{background:#dff5df}td.bad{background:#f8d0d0;font-weight:bold}td.na{color:#999}
td.l,th.l{text-align:left}img{max-width:100%}figure{margin:1em 0}
.meta{color:#555;font-size:12px}details pre{font-size:11px;overflow:auto}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _img(svg: bytes, alt: str, kind: str, run: str = "") -> str:
    data = base64.b64encode(svg).decode("ascii")
    where = f' data-run="{_e(run)}"' if run else ""
    return (
        f'<figure class="plot" data-plot="{_e(kind)}"{where}>'
        f'<img alt="{_e(alt)}" src="data:image/svg+xml;base64,{data}"></figure>'
    )


def _number(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def verdict_grid(views: Sequence[RunView]) -> str:
    checks = list(dict.fromkeys(v.check for view in views for v in view.verdicts))
    head = "".join(f"<th>{_e(c)}</th>" for c in checks)
    rows = []
    for view in views:
        cells = {v.check: v for v in view.verdicts}
        tds = []
        for check in checks:
            v = cells.get(check)
            if v is None:
                tds.append(
                    f'<td class="na" data-run="{_e(view.id)}" data-check="{_e(check)}">-</td>'
                )
                continue
            cls = "ok" if v.ok else "bad"
            mark = ("held" if v.ok else f"broke: {v.detail}") if check != "fidelity" else (
                "within bound" if v.ok else "DRIFTED"
            )  # fmt: skip
            tds.append(
                f'<td class="{cls}" data-run="{_e(view.id)}" data-check="{_e(check)}" '
                f'title="{_e(v.detail)}">{_e(mark)}</td>'
            )
        verdict = "ok" if view.ok else "violations"
        rows.append(
            f'<tr data-run="{_e(view.id)}" data-verdict="{verdict}"><td class="l">{_e(view.id)}'
            f'</td><td class="l">{_e(view.label)}</td>{"".join(tds)}</tr>'
        )
    return (
        f'<table class="verdicts"><tr><th class="l">run</th><th class="l">settings</th>{head}'
        f"</tr>{''.join(rows)}</table>"
    )


SUMMARY_COLUMNS = (
    ("replies", 0), ("expected", 0), ("lost", 0), ("duplicated", 0), ("out_of_order", 0),
    ("malformed", 0), ("reconnects", 0), ("p50_ms", 3), ("p90_ms", 3), ("p99_ms", 3),
    ("max_ms", 3), ("throughput_msg_s", 1),
)  # fmt: skip


def summary_table(views: Sequence[RunView]) -> str:
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in SUMMARY_COLUMNS)
    rows = [
        f'<tr data-run="{_e(v.id)}"><td class="l">{_e(v.id)}</td><td class="l">{_e(v.label)}</td>'
        f"<td class='l'>{_e(v.backend or '-')}</td>"
        + "".join(f"<td>{_number(v.stats.get(name), d)}</td>" for name, d in SUMMARY_COLUMNS)
        + "</tr>"
        for v in views
    ]
    return (
        '<table class="summary"><tr><th class="l">run</th><th class="l">settings</th>'
        f'<th class="l">backend</th>{head}</tr>{"".join(rows)}</table>'
    )


FIDELITY_COLUMNS = ("fault", "target", "backend", "delay_ms", "expected_ms", "probe_ms",
                    "loss", "packets", "held_ms_p50", "late_us_p50", "late_us_p99", "late_us_max",
                    "loss_observed")  # fmt: skip


def fidelity_table(views: Sequence[RunView]) -> str:
    rows = []
    for view in views:
        for row in view.fidelity.get("faults", []):
            ok = row.get("ok")
            cls, word = ("na", "not measured") if ok is None else (
                ("ok", "within bound") if ok else ("bad", "DRIFTED")
            )  # fmt: skip
            cells = "".join(f"<td>{_number(row.get(c), 3)}</td>" for c in FIDELITY_COLUMNS)
            reasons = [str(row["why"])] if row.get("why") else []
            if row.get("probe_ok") is False:
                reasons.append(f"probe off by more than {row['probe_bound_ms']:g} ms")
            why = f" ({_e('; '.join(reasons))})" if reasons else ""
            if row.get("probe"):
                cells += f'<td class="l">{_e(row["probe"])}</td>'
            else:
                cells += "<td>-</td>"
            rows.append(
                f'<tr data-run="{_e(view.id)}"><td class="l">{_e(view.id)}</td>{cells}'
                f'<td class="{cls}">{word}{why}</td></tr>'
            )
    if not rows:
        return "<p>No packet fault in these runs: nothing to hold to a bound.</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in (*FIDELITY_COLUMNS, "probe: how"))
    return (
        "<p>Configured against observed, per packet fault: <code>expected_ms</code>, the round"
        " trip's growth configured (the delay, twice for both directions); <code>probe_ms</code>"
        ", the growth the clients' own round trips showed (an observer apart from the engine;"
        " how, in the last column); <code>late_us</code>, how late the engine released packets"
        " by its own count. DRIFTED: lateness p99 beyond the bound, or the probe off by more"
        f" than max({PROBE_BOUND_MS:g} ms, {PROBE_BOUND_SHARE:.0%} of expected).</p>"
        f'<table class="fidelity"><tr><th class="l">run</th>{head}<th>verdict</th></tr>'
        f"{''.join(rows)}</table>"
    )


def timeline_table(view: RunView, entries: Iterable[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{_number(e.get('t_s'), 3)}</td><td>{_number(e.get('done_s'), 3)}</td>"
        f"<td class='l'>{_e(e.get('fault'))}</td><td class='l'>{_e(e.get('event'))}</td>"
        f"<td class='l'>{_e(e.get('action'))} {_e(e.get('target'))}</td>"
        f"<td class='l'>{_e(json.dumps(e.get('params') or e.get('toxics') or ''))}"
        f"{(' error: ' + _e(e['error'])) if e.get('error') else ''}</td></tr>"
        for e in entries
    )
    return (
        f'<details data-run="{_e(view.id)}"><summary>fault timeline of {_e(view.id)}</summary>'
        "<table><tr><th>began (s)</th><th>done (s)</th><th>fault</th><th>event</th>"
        f"<th>what</th><th>parameters</th></tr>{rows}</table></details>"
    )


def with_baselines(
    results: Results, records: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The records, with the probe of each delay fault that has none yet: a grid fault, in
    force throughout its run, measured against the fault-free runs alike (and a folder
    written before the probe existed, measured as the runner would)."""
    waiting = [
        r for r, record in records.items()
        if any(expected_ms(f) > 0 and "probe_ms" not in f
               for f in record.get("fidelity", {}).get("faults", []))
    ]  # fmt: skip
    if not waiting:
        return records
    quiet = [(rec["settings"], results.exchanges(r)) for r, rec in records.items()
             if fault_free(rec["settings"])]  # fmt: skip
    found = dict(records)
    for run_id in waiting:
        record = records[run_id]
        base = baseline_runs(record["settings"], quiet)
        if record.get("t0_wall") is None:
            continue
        timeline, t0 = record.get("timeline", []), float(record["t0_wall"])
        fidelity = probe_rows(record["fidelity"], timeline, results.exchanges(run_id), t0, base)
        found[run_id] = {**record, "fidelity": fidelity}
    return found


def render(results: Results) -> str:
    """The whole page for a results folder."""
    manifest = results.manifest
    records = with_baselines(results, {r: results.run_record(r) for r in results.done()})
    views = [run_view(records[r], results.exchanges(r)) for r in records]
    order = _grid_order(manifest)
    parts = [
        f"<h1>{_e(manifest['name'])}</h1>",
        f'<p class="meta">{len(views)} of {len(manifest["expanded"])} run(s) finished; seed '
        f"{_e(manifest['seed'])}, order {_e(manifest['order'])}, created {_e(manifest['created'])}"
        f"; echolab {_e(_version(manifest['provenance']))}</p>",
        "<h2>Verdicts</h2>",
        verdict_grid(views),
        "<h2>Round trips</h2>",
        _img(figures.cdf(views), "round-trip CDF per run", "cdf"),
    ]
    for key in manifest.get("swept", []):
        parts.append(f"<h3>against {_e(key)}</h3>")
        parts.append(_img(figures.sweep(key, sweep(views, key), order[key]), key, "sweep"))
    parts.append("<h2>Timelines</h2>")
    for view in views[:MAX_TIMELINES]:
        parts.append(_img(figures.timeline(view), f"timeline of {view.id}", "timeline", view.id))
        parts.append(timeline_table(view, records[view.id].get("timeline", [])))
    if len(views) > MAX_TIMELINES:
        parts.append(f"<p>{len(views) - MAX_TIMELINES} more runs' timelines left out.</p>")
    parts += [
        "<h2>Fault fidelity</h2>",
        fidelity_table(views),
        "<h2>Summary</h2>",
        summary_table(views),
        "<h2>Manifest</h2>",
        "<details><summary>as declared</summary><pre>" + _e(results.declared) + "</pre></details>",
        "<details><summary>provenance</summary><pre>"
        + _e(json.dumps(manifest["provenance"], indent=2))
        + "</pre></details>",
    ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(manifest['name'])}: echolab experiment</title><style>{STYLE}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def _grid_order(manifest: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Each swept key's values in the order the runs were declared."""
    order: dict[str, list[Any]] = {}
    for run in sorted(manifest["expanded"], key=lambda r: (r["point"], r["repetition"])):
        for key in manifest.get("swept", []):
            values = order.setdefault(key, [])
            if run["settings"][key] not in values:
                values.append(run["settings"][key])
    if manifest.get("search"):  # probed in bisection order: shown in the parameter's order
        key = manifest["search"]["parameter"]
        parse = PARAMETERS[key][0]
        order[key] = sorted(order.get(key, []), key=lambda v: parse(v, key))
    return order


def _version(provenance: Mapping[str, Any]) -> str:
    echolab = provenance.get("echolab") or {}
    if not isinstance(echolab, Mapping):
        return str(echolab)
    dirty = " with uncommitted changes" if echolab.get("dirty") else ""
    return f"{str(echolab.get('commit'))[:12]}{dirty}"


def export_figures(results: Results, out: Path, fmt: str = "png") -> list[Path]:
    """The report's figures as files in ``out`` (``cdf``, ``sweep-<key>`` per swept key,
    ``timeline-<run>`` per run, as many as the report draws), for pages that show images."""
    manifest = results.manifest
    records = with_baselines(results, {r: results.run_record(r) for r in results.done()})
    views = [run_view(records[r], results.exchanges(r)) for r in records]
    order = _grid_order(manifest)
    drawn = {"cdf": figures.cdf(views, fmt)}
    for key in manifest.get("swept", []):
        drawn[f"sweep-{key}"] = figures.sweep(key, sweep(views, key), order[key], fmt)
    for view in views[:MAX_TIMELINES]:
        drawn[f"timeline-{view.id}"] = figures.timeline(view, fmt)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in drawn.items():
        path = out / f"{name}.{fmt}"
        path.write_bytes(data)
        written.append(path)
    return written


def write_report(results: Results) -> Path:
    path = results.root / REPORT
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(results))
    tmp.replace(path)
    return path
