"""Network faults for the lab: delay, jitter, loss, rate, applied inside a target's namespace.

One module per fault kind (``latency``, ``loss``, ``bandwidth``), each translating its fault for
a backend; the backends' plans (``netem``, ``nfqueue``) are pure argument vectors; ``sidecar``
is the one place that executes them; ``preflight`` says what this host can do; ``api.impair``
puts it together for a ``Lab``.
"""

from harness.faults.api import Applied, apply, impair, resolve_targets
from harness.faults.preflight import FaultUnsupported, Report, preflight
from harness.faults.sidecar import FaultError
from harness.faults.spec import (
    Fault,
    Impairment,
    parse_direction,
    parse_duration,
    parse_percent,
    parse_rate,
)

__all__ = [
    "Applied",
    "Fault",
    "FaultError",
    "FaultUnsupported",
    "Impairment",
    "Report",
    "apply",
    "impair",
    "parse_direction",
    "parse_duration",
    "parse_percent",
    "parse_rate",
    "preflight",
    "resolve_targets",
]
