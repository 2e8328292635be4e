"""Labels on everything the project creates, so that cleanup finds it by label, never by name.

``owner-pid`` marks resources that a process (a test run, a harness lab) owns: when that process
is gone, its leftovers may be swept. ``0`` means "owned by the user" (``make up``): swept only by
an explicit ``make clean``.
"""

from __future__ import annotations

import os

PROJECT = "org.echolab.project"
PROJECT_VALUE = "echolab"
ROLE = "org.echolab.role"
LAB = "org.echolab.lab"
OWNER_PID = "org.echolab.owner-pid"


def lab_labels(lab_id: str, role: str, owner_pid: int | None = None) -> dict[str, str]:
    return {
        PROJECT: PROJECT_VALUE,
        LAB: lab_id,
        ROLE: role,
        OWNER_PID: str(os.getpid() if owner_pid is None else owner_pid),
    }


def project_filter(**extra: str) -> dict[str, list[str]]:
    """A Docker API filter matching the project's resources, narrowed by ``extra`` labels."""
    labels = [f"{PROJECT}={PROJECT_VALUE}", *(f"{key}={value}" for key, value in extra.items())]
    return {"label": labels}


def owner_is_gone(labels: dict[str, str]) -> bool:
    """True when the resource's owner process has exited (so its leftovers may be swept)."""
    try:
        pid = int(labels.get(OWNER_PID, "0"))
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
