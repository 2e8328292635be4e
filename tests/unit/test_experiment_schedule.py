"""Which scheduled impairs are staged before the clients go (``Scheduler.stage``), without Docker:
``impair.stage`` is replaced by a recorder."""

from __future__ import annotations

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
