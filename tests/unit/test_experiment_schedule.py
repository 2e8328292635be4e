"""Which scheduled impairs are staged before the clients go (``Scheduler.stage``), without Docker:
``impair.stage`` is replaced by a recorder."""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.errors import FaultError
from harness.experiment import schedule
from harness.experiment.declare import Event
from harness.experiment.schedule import Scheduler, Timeline


def _staged(
    monkeypatch: pytest.MonkeyPatch, events: tuple[Event, ...], refuse: int = -1
) -> list[str]:
    asked: list[str] = []

    def stage(lab: Any, target: str, impairment: Any, *, backend: str | None) -> object:
        asked.append(target)
        if len(asked) - 1 == refuse:
            raise FaultError("no free slot")
        return object()

    monkeypatch.setattr(schedule.impairs, "stage", stage)
    scheduler = Scheduler(object(), events, seed=1, backend=None, timeline=Timeline())  # type: ignore[arg-type]
    scheduler.stage()
    return sorted(scheduler._staged)


def test_every_impair_before_a_restart_is_staged_none_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delay = (("delay", "20ms"),)
    events = (
        Event(0.5, "impair", "server", delay),
        Event(1.0, "partition", "c0"),
        Event(1.5, "impair", "c1", delay),
        Event(2.0, "restart", "server"),
        Event(3.0, "impair", "server", delay),
    )
    assert _staged(monkeypatch, events) == ["s0", "s2"]


def test_an_impair_that_cannot_be_staged_is_left_for_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delay = (("delay", "20ms"),)
    events = (Event(0.5, "impair", "server", delay), Event(1.0, "impair", "server", delay))
    assert _staged(monkeypatch, events, refuse=0) == ["s1"]


class _Restarts:
    """A lab whose only call is a restart (counted)."""

    def __init__(self) -> None:
        self.restarts = 0

    def restart_server(self) -> None:
        self.restarts += 1


def test_events_the_run_ended_before_are_recorded_as_skipped() -> None:
    lab = _Restarts()
    timeline = Timeline()
    events = (Event(0.0, "restart", "server"), Event(30.0, "restart", "server"))
    scheduler = Scheduler(lab, events, seed=1, backend=None, timeline=timeline)  # type: ignore[arg-type]
    scheduler.start(time.time())
    deadline = time.monotonic() + 10
    while not timeline.entries() and time.monotonic() < deadline:
        time.sleep(0.01)
    scheduler.stop()
    found = [(e["fault"], e["event"]) for e in timeline.entries()]
    assert found == [("s0", "applied"), ("s1", "skipped")]
    assert lab.restarts == 1
    assert timeline.entries()[1]["planned_s"] == 30.0
