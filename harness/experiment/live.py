"""The live display of an experiment (``rich``): runs done and left, messages exchanged, the
current run's p50/p99 so far, the faults in force, elapsed and estimated remaining time.

The current run's figures come from the clients' own JSON lines, tailed from their containers
once a second (at most ``TAILED`` containers a second, in turn, so a run of hundreds of
clients does not flood dockerd): they are a live sample, and the stored results are computed
from every record afterwards. Nothing shown here is stored; a failure to tail only shows.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Sequence
from types import TracebackType

import docker.errors
import numpy as np
from docker.models.containers import Container
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from harness.clients import ClientBatch
from harness.experiment.expand import Run
from harness.experiment.schedule import Scheduler
from harness.experiment.stats import RunStats, percentile

TAILED = 16
KEPT = 200_000  # round trips kept for the current run's percentiles


class Tail:
    """The exchanges client containers have printed so far (a thread, until ``stop``)."""

    def __init__(self, containers: Sequence[Container], interval: float = 1.0) -> None:
        self.containers = list(containers)
        self.interval = interval
        self.rtts: list[float] = []
        self.count = 0
        self._seen: set[tuple[str, int, int]] = set()
        self._since: dict[str, int] = {}
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="experiment-tail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            chosen = [
                self.containers[(self._next + i) % len(self.containers)]
                for i in range(min(TAILED, len(self.containers)))
            ]
            self._next += len(chosen)
            for container in chosen:
                with contextlib.suppress(docker.errors.DockerException, OSError):
                    self._read(container)

    def _read(self, container: Container) -> None:
        name = str(container.name)
        since = self._since.get(name, 0)
        now = int(time.time())
        text = container.logs(stdout=True, stderr=False, since=since).decode("utf-8", "replace")
        self._since[name] = max(now - 1, 0)  # a second of overlap; duplicates are skipped
        for line in text.splitlines():
            if '"exchange"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                key = (str(record["client"]), int(record["conn"]), int(record["seq"]))
                if key in self._seen:
                    continue
                self._seen.add(key)
                self.count += 1
                if len(self.rtts) < KEPT:
                    self.rtts.append(float(record["rtt_ms"]))


def _run_faults(run: Run) -> list[str]:
    """The run's own faults (held for all of it): its packet fault and its toxics."""
    shown = [f"{k} {run.settings[k]}" for k in ("delay", "jitter", "loss", "bandwidth")]
    found = [s for s, k in zip(shown, ("delay", "jitter", "loss", "bandwidth"), strict=True)
             if run.settings[k] not in ("0", "", 0)]  # fmt: skip
    if run.settings["toxics"] != "none":
        found.append(f"toxics {run.settings['toxics']}")
    return found


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class LiveDisplay:
    """Implements the runner's ``Display`` on a ``rich.live.Live``."""

    def __init__(
        self, name: str, runs: Sequence[Run], swept: Sequence[str], console: Console | None = None
    ) -> None:
        self.name, self.total, self.swept = name, len(runs), tuple(swept)
        self.done = 0
        self.messages = 0
        self.durations: list[float] = []
        self.failed: list[str] = []
        self.began = time.monotonic()
        self.current: Run | None = None
        self.run_began = 0.0
        self.tail: Tail | None = None
        self.scheduler: Scheduler | None = None
        self.console = console or Console(stderr=True)
        self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)

    def skip(self, already: int) -> None:
        """Runs found finished in the folder (``--resume``)."""
        self.done += already

    def __enter__(self) -> LiveDisplay:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.tail is not None:
            self.tail.stop()
        self._live.__exit__(exc_type, exc, tb)
        self.console.line()  # the last frame ends without one when not on a terminal

    def run_started(self, run: Run, batch: ClientBatch, scheduler: Scheduler) -> None:
        self.current, self.scheduler, self.run_began = run, scheduler, time.monotonic()
        self.tail = Tail(batch.containers)

    def run_finished(self, run: Run, stats: RunStats, seconds: float) -> None:
        if self.tail is not None:
            self.tail.stop()
        self.tail, self.current, self.scheduler = None, None, None
        self.done += 1
        self.messages += stats.replies
        self.durations.append(seconds)
        if not stats.ok:
            self.failed.append(run.id)

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self.began
        left = self.total - self.done
        mean = float(np.mean(self.durations)) if self.durations else None
        remaining = _duration(mean * left) if mean is not None else "?"
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("experiment", self.name)
        table.add_row("runs", f"{self.done} done, {left} left of {self.total}")
        tail = self.tail
        current_count = tail.count if tail is not None else 0
        table.add_row("messages", f"{self.messages + current_count:,}")
        if self.current is not None:
            rtts = list(tail.rtts) if tail is not None else []
            table.add_row(
                "current run",
                f"{self.current.id} {self.current.label(self.swept)} "
                f"({_duration(time.monotonic() - self.run_began)})",
            )
            table.add_row(
                "  so far", f"p50 {_ms(percentile(rtts, 50))}  p99 {_ms(percentile(rtts, 99))}"
            )
            in_force = _run_faults(self.current)
            in_force += self.scheduler.in_force() if self.scheduler is not None else []
            table.add_row("  faults in force", ", ".join(in_force) or "none")
        table.add_row("time", f"{_duration(elapsed)} elapsed, about {remaining} remaining")
        if self.failed:
            table.add_row("runs with violations", ", ".join(self.failed[-8:]))
        return Group(table)
