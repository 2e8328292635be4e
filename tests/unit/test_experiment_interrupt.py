"""A Ctrl-C the batch must not lose: ``run_all`` asks ``interrupted()`` before each run, so an
interrupt Python dropped (raised inside a finalizer) still stops the batch there."""

from __future__ import annotations

from typing import Any

import pytest

from harness.experiment import runner
from harness.experiment.declare import parse
from harness.experiment.expand import expand

BATCH = '[experiment]\nname = "two"\n\n[grid]\nclients = [1, 2]\n'


class _Results:
    def done(self) -> list[str]:
        return []


def test_a_remembered_interrupt_stops_the_batch_before_its_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    experiment = parse(BATCH)
    ran: list[str] = []

    def execute(experiment: Any, run: Any, display: Any, nodes: Any = None) -> dict[str, Any]:
        ran.append(run.id)
        raise AssertionError("no run may start once interrupted")

    monkeypatch.setattr(runner, "execute", execute)
    with pytest.raises(KeyboardInterrupt):
        runner.run_all(experiment, expand(experiment), _Results(), None, lambda: True)  # type: ignore[arg-type]
    assert ran == []
