"""The live display's content, rendered without a terminal (no Docker: no run in progress)."""

from __future__ import annotations

import io

from rich.console import Console

from harness.experiment.declare import parse
from harness.experiment.expand import expand
from harness.experiment.live import LiveDisplay
from harness.experiment.stats import RunStats


def _stats(ok: bool) -> RunStats:
    return RunStats(
        replies=150, expected=150, lost=0 if ok else 2, duplicated=0, out_of_order=0,
        malformed=0, failed_clients=0, reconnects=0, p50_ms=0.4, p90_ms=0.6, p99_ms=0.9,
        max_ms=1.2, throughput_msg_s=70.0,
    )  # fmt: skip


def test_runs_done_left_messages_and_time_remaining() -> None:
    experiment = parse('[experiment]\nname = "live"\nrepetitions = 4\n[grid]\nclients = [1, 2]\n')
    runs = expand(experiment)
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    display = LiveDisplay("live", runs, experiment.swept, console=console)
    display.skip(2)
    display.run_finished(runs[2], _stats(True), 10.0)
    display.run_finished(runs[3], _stats(False), 20.0)
    console.print(display)
    text = out.getvalue()
    assert "4 done, 4 left of 8" in text
    assert "300" in text  # messages of the runs finished now
    assert "about 1:00 remaining" in text  # 4 left x 15 s mean
    assert f"runs with violations  {runs[3].id}" in text
