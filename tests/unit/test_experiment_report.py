"""The results folder and the report from known records (no Docker): what the page says
matches what the folder holds, fault periods come from the timeline, violations are marked."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from echo_client.records import Exchange

from harness.experiment.declare import parse
from harness.experiment.expand import expand
from harness.experiment.report import export_figures, write_report
from harness.experiment.store import Results
from harness.experiment.view import marks, periods, run_view

DECLARED = """
[experiment]
name = "known"
order = "declared"
[run]
clients = 2
messages = 4
[grid]
schedule = ["none", "cut"]
[schedules]
cut = [{at = "1s", action = "partition", target = "c0"}, {at = "2s", action = "heal"}]
"""
T0 = 1_000_000.0


def _exchanges(run_id: str, rtt: float, skip: int | None = None) -> list[Exchange]:
    found = []
    for client in ("c0", "c1"):
        for seq in range(4):
            if client == "c0" and seq == skip:
                continue
            sent = T0 + seq * 0.8
            conn = 1 if client == "c0" and skip is not None and seq > skip else 0
            found.append(Exchange(client, conn, seq, sent, sent + rtt / 1e3, rtt, "r", "r"))
    return found


def _record(run_id: str, settings: dict[str, object], broken: bool) -> dict[str, object]:
    import numpy as np

    from harness.experiment.stats import run_stats

    exchanges = _exchanges(run_id, 5.0 if broken else 1.0, 2 if broken else None)
    violations = [{"client": "c0", "seq": 2, "check": "missing", "expected": "one reply",
                   "got": "none"}] if broken else []  # fmt: skip
    from harness.checks import Violation

    stats = run_stats(
        np.array([e.rtt_ms for e in exchanges]), np.array([e.sent for e in exchanges]),
        np.array([e.received for e in exchanges]), [Violation(**v) for v in violations],
        expected=8, reconnects=1 if broken else 0,
    )  # fmt: skip
    timeline = [
        {"fault": "s0", "event": "applied", "action": "partition", "target": "c0",
         "t_s": 1.0, "done_s": 1.05},
        {"fault": "s0", "event": "removed", "action": "heal", "target": "c0",
         "t_s": 2.0, "done_s": 2.1},
    ] if broken else []  # fmt: skip
    return {
        "id": run_id, "label": f"schedule={settings['schedule']} #0", "settings": settings,
        "status": "ok" if stats.ok else "violations", "backend": None, "t0_wall": T0,
        "timeline": timeline, "fidelity": {"bound_us": 1000.0, "ok": None, "faults": []},
        "stats": stats.as_dict(), "violations": violations, "_exchanges": exchanges,
    }  # fmt: skip


def _folder(tmp_path: Path) -> Results:
    experiment = parse(DECLARED)
    runs = expand(experiment)
    manifest = {
        "name": "known", "seed": 0, "order": "declared", "created": "now",
        "swept": list(experiment.swept), "expanded": [r.as_dict() for r in runs],
        "provenance": {"echolab": {"commit": "abc"}},
    }  # fmt: skip
    results = Results.create(tmp_path / "out", DECLARED, manifest)
    for run in runs:
        record = _record(run.id, dict(run.settings), run.settings["schedule"] == "cut")
        results.write_run(run.id, record.pop("_exchanges"), record)  # type: ignore[arg-type]
    return results


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.plots: list[dict[str, str | None]] = []
        self.images: list[str] = []
        self.verdicts: dict[str, str] = {}
        self.cells: dict[tuple[str, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "figure":
            self.plots.append(found)
        if tag == "img":
            self.images.append(str(found["src"]))
        if tag == "tr" and "data-verdict" in found:
            self.verdicts[str(found["data-run"])] = str(found["data-verdict"])
        if tag == "td" and "data-check" in found:
            self.cells[(str(found["data-run"]), str(found["data-check"]))] = str(found["class"])


def test_folder_holds_runs_summary_and_manifest(tmp_path: Path) -> None:
    results = _folder(tmp_path)
    assert results.done() == ["000-r0", "001-r0"]
    assert results.manifest["runs"]["001-r0"]["status"] == "violations"
    columns = results.exchanges("001-r0")
    assert len(columns) == 7
    assert sorted(set(columns.client)) == ["c0", "c1"]
    summary = (results.root / "summary.csv").read_text().splitlines()
    assert len(summary) == 3
    assert summary[0].startswith("run,clients,connections,messages")
    assert ",replies," in summary[0]


def test_view_periods_and_marks_come_from_the_records(tmp_path: Path) -> None:
    results = _folder(tmp_path)
    record = results.run_record("001-r0")
    found = periods(record["timeline"], end=10.0)
    assert [(p.fault, p.start, p.sure_start, p.sure_end, p.end, p.removed) for p in found] == [
        ("s0", 1.0, 1.05, 2.0, 2.1, True)
    ]
    assert found[0].label == "partition c0"
    marked = marks(record, results.exchanges("001-r0"), T0)
    kinds = sorted((m.client, m.kind) for m in marked)
    assert kinds == [("c0", "lost"), ("c0", "reconnect")]
    reconnect = next(m for m in marked if m.kind == "reconnect")
    assert reconnect.t == pytest.approx(2.4)  # the first reply on the new connection, seq 3
    unremoved = periods(record["timeline"][:1], end=10.0)
    assert unremoved[0].end == unremoved[0].sure_end == 10.0
    assert not unremoved[0].removed


def test_report_is_one_file_whose_plots_and_verdicts_match_the_results(tmp_path: Path) -> None:
    results = _folder(tmp_path)
    path = write_report(results)
    text = path.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "")  # nothing fetched
    assert "<script" not in text
    page = Page()
    page.feed(text)
    kinds = [p["data-plot"] for p in page.plots]
    assert kinds.count("cdf") == 1
    assert kinds.count("sweep") == 1  # schedule is swept
    assert sorted(p.get("data-run") or "" for p in page.plots if p["data-plot"] == "timeline") == [
        "000-r0",
        "001-r0",
    ]
    for src in page.images:
        svg = base64.b64decode(src.removeprefix("data:image/svg+xml;base64,")).decode()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        assert len(re.findall(r"<path", svg)) > 10  # something is drawn
    for run_id in results.done():
        assert page.verdicts[run_id] == (
            "ok" if results.run_record(run_id)["status"] == "ok" else "violations"
        )
    assert page.cells[("001-r0", "complete")] == "bad"
    assert page.cells[("001-r0", "order")] == "ok"
    assert page.cells[("000-r0", "complete")] == "ok"
    assert "partition c0" in base64.b64decode(
        next(
            src for p, src in zip(page.plots, page.images, strict=True)
            if p.get("data-run") == "001-r0"
        ).removeprefix("data:image/svg+xml;base64,")
    ).decode()  # fmt: skip
    run_view(results.run_record("000-r0"), results.exchanges("000-r0"))  # a clean run renders


def test_drifted_faults_are_a_verdict_on_the_faults_not_on_the_run() -> None:
    from harness.experiment.view import verdicts

    stats = {"out_of_order": 0, "malformed": 0, "lost": 0, "duplicated": 0, "failed_clients": 0}
    drifted = {"ok": False, "bound_us": 1000.0, "faults": [{"late_us_p99": 4200.0}]}
    cells = {v.check: v for v in verdicts(stats, drifted)}
    assert not cells["fidelity"].ok
    assert "4200 us" in cells["fidelity"].detail
    assert all(v.ok for check, v in cells.items() if check != "fidelity")
    assert "fidelity" not in {v.check for v in verdicts(stats, {"ok": None, "faults": []})}


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_figures_exported_as_files_one_per_plot_of_the_report(tmp_path: Path, fmt: str) -> None:
    results = _folder(tmp_path)
    written = export_figures(results, tmp_path / "figures", fmt)
    assert sorted(p.name for p in written) == sorted(
        f"{name}.{fmt}" for name in ("cdf", "sweep-schedule", "timeline-000-r0", "timeline-001-r0")
    )
    for path in written:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") if fmt == "png" else b"<svg" in data
        assert 5_000 < len(data) < 200_000, (path.name, len(data))
    with pytest.raises(ValueError, match="png"):
        export_figures(results, tmp_path / "bad", "gif")
