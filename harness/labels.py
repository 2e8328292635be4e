"""Labels on everything the project creates, so that cleanup finds it by label, never by name.

``session`` marks resources that a harness process (a test run, a lab) owns: its session id,
whose *lease* (a container that runs while the process lives, ``harness.session``) says whether
the owner lives, wherever it runs (another PID namespace, another host). When no lease of that
session runs, its leftovers are orphans and may be swept (``is_orphan``). ``user`` means "owned
by the user" (``make up``, faults applied from the command line): swept only by ``make clean``.

A fault sidecar's labels say only what it *is* (its target, slot, kind, backend) and how to undo
it (``fault-remove``), which never change; the parameters in force are kept by the sidecar
itself (its control ``note``), the one place every reader asks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

PROJECT = "org.echolab.project"
PROJECT_VALUE = "echolab"
ROLE = "org.echolab.role"
LAB = "org.echolab.lab"
SESSION = "org.echolab.session"  # the owner's session id, or USER
USER = "user"  # owned by the user: never an orphan, removed by make clean only
LEASE = "lease"  # the role of a session's lease container
CLIENT = "org.echolab.client"  # a client container's id in its lab ("c0")
ALIASES = "org.echolab.aliases"  # the DNS alias a container has on the lab network
# A fault sidecar's identity and undo commands.
FAULT_TARGET = "org.echolab.fault-target"
FAULT_SLOT = "org.echolab.fault-slot"
FAULT_KIND = "org.echolab.fault-kind"  # "impair" or "block"
FAULT_BACKEND = "org.echolab.fault-backend"
FAULT_REMOVE = "org.echolab.fault-remove"


def lab_labels(lab_id: str, role: str, session: str) -> dict[str, str]:
    """A lab's resource, owned by ``session`` (whose lease must run first: see
    ``harness.session.owning``)."""
    return {PROJECT: PROJECT_VALUE, LAB: lab_id, ROLE: role, SESSION: session}


# A Docker API filter, typed as the SDK's ``containers.list`` takes it.
Filters = dict[str, str | list[str] | bool]


def project_filter(**extra: str) -> Filters:
    """A Docker API filter matching the project's resources, narrowed by ``extra`` labels."""
    labels = [f"{PROJECT}={PROJECT_VALUE}", *(f"{key}={value}" for key, value in extra.items())]
    return {"label": labels}


def is_orphan(found: Mapping[str, str], live: Collection[str]) -> bool:
    """True when a resource with labels ``found`` may be swept: it belongs to a session (not
    the user's) none of whose leases runs (``live``: the sessions of the running leases, listed
    after the resource). No session label: not ours to judge (only ``make clean`` removes it).
    """
    owner = found.get(SESSION, "")
    return owner not in ("", USER) and owner not in live
