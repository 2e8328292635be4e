"""A failed run says why: the violations first, then each failed client's last words."""

from __future__ import annotations

import pytest

from harness.errors import CheckFailed
from harness.results import RunResult, read_client_output
from harness.spec import Workload


def test_a_failed_run_names_the_clients_that_stopped_and_why() -> None:
    stopped = read_client_output(
        "c1", "x-c1", 3, "", "connecting\nserver:8899 refused after 12 attempts in 30.0 s\n"
    )
    fine = read_client_output("c0", "x-c0", 0, "", "")
    result = RunResult("lab1", Workload(count=2), [fine, stopped], 0.0, 1.0)
    with pytest.raises(CheckFailed) as raised:
        result.assert_ok()
    text = str(raised.value)
    assert "in lab lab1" in text
    assert "c1 exited 3: server:8899 refused after 12 attempts in 30.0 s" in text
    assert "c0 exited" not in text
