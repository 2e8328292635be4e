"""Who owns a resource, and when it is an orphan: the sweep's rule on labels and the sessions whose
lease runs (pure); a process's session id (no Docker: the lease itself is tests/e2e's)."""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import labels, session, sweep

LIVE = {"a1b2c3d4e5f6"}


def owned(owner: str | None, **extra: str) -> dict[str, str]:
    found = {labels.PROJECT: labels.PROJECT_VALUE, labels.LAB: "test-1234", **extra}
    if owner is not None:
        found[labels.SESSION] = owner
    return found


def test_a_resource_of_a_live_session_is_not_an_orphan() -> None:
    assert not labels.is_orphan(owned("a1b2c3d4e5f6"), LIVE)


def test_a_resource_of_a_session_with_no_running_lease_is_an_orphan() -> None:
    assert labels.is_orphan(owned("0f0f0f0f0f0f"), LIVE)
    assert labels.is_orphan(owned("a1b2c3d4e5f6"), set())  # its lease has stopped


def test_the_users_resources_are_never_orphans() -> None:
    assert not labels.is_orphan(owned(labels.USER), set())
    assert not labels.is_orphan(owned(labels.USER), LIVE)


@pytest.mark.parametrize("found", [owned(None), owned(""), {}], ids=["no-label", "empty", "bare"])
def test_a_resource_with_no_session_is_not_ours_to_judge(found: dict[str, str]) -> None:
    assert not labels.is_orphan(found, set())


def test_an_old_owner_pid_label_is_not_read_as_a_session() -> None:
    """Resources labelled before sessions (owner pid) are left to make clean."""
    assert not labels.is_orphan({"org.echolab.owner-pid": "4242"}, set())


def test_lab_labels_name_the_session() -> None:
    found = labels.lab_labels("test-1234", "server", "a1b2c3d4e5f6")
    assert found[labels.SESSION] == "a1b2c3d4e5f6" and found[labels.ROLE] == "server"


def _lease(state: str, age: float) -> dict[str, object]:
    return {
        "State": state,
        "Created": int(time.time() - age),
        "Labels": {labels.ROLE: labels.LEASE, labels.SESSION: "0f0f0f0f0f0f"},
    }


@pytest.mark.parametrize(
    ("state", "age", "ended"),
    [
        ("exited", 5, True),
        ("dead", 5, True),
        ("running", 3600, False),
        ("created", 1, False),  # a process acquiring its lease: created, attached, not started
        ("created", sweep.LEASE_START_GRACE + 60, True),  # its process died before starting it
    ],
)
def test_a_lease_is_swept_only_once_it_cannot_run(state: str, age: float, ended: bool) -> None:
    assert sweep._lease_ended(_lease(state, age)) is ended


def test_a_process_has_one_session_id_whichever_thread_asks() -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: session.current_id(), range(64)))
    assert len(ids) == 1
    (found,) = ids
    assert re.fullmatch(r"[0-9a-f]{12}", found)
    assert session.lease_name(found) == f"echolab-lease-{found}"


def test_a_forked_child_has_its_own_session() -> None:
    parent = session.current_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its id, exit without running the parent's teardown
        try:
            os.write(write, session.current_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{12}", child) and child != parent
    assert session.current_id() == parent
