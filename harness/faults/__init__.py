"""Network faults for the lab, in layers (each module one job; none imports one above it):

- pure description: ``model`` (the unit vocabulary, ``Impairment``), ``toxic`` (``Toxic``),
  ``backend`` (``Plan``, the ``Backend`` protocol), one module per fault kind (``latency``,
  ``loss``, ``bandwidth``) and per backend (``netem``, ``engine``: NFQUEUE + tbf), ``block``'s
  rules;
- what the host can do: ``capabilities`` (a real probe, cached);
- Docker-facing: ``sidecar`` (the engine image in a target's namespace), ``target`` (which
  containers a name means);
- the faults: ``impair`` (packet faults, in force, updated, listed), ``block``, ``partition``,
  ``proxy`` (Toxiproxy's toxics).

``harness.Lab`` puts them together (``lab.impair``, ``lab.block``, ``lab.partition``,
``lab.proxy``, ``lab.faults``).
"""

from harness.faults.backend import Backend, Plan
from harness.faults.capabilities import BACKENDS, Report, preflight
from harness.faults.impair import Applied, in_force
from harness.faults.model import (
    Direction,
    Distribution,
    Impairment,
    parse_direction,
    parse_duration,
    parse_percent,
    parse_rate,
)
from harness.faults.proxy import Proxy
from harness.faults.toxic import Toxic

__all__ = [
    "BACKENDS",
    "Applied",
    "Backend",
    "Direction",
    "Distribution",
    "Impairment",
    "Plan",
    "Proxy",
    "Report",
    "Toxic",
    "in_force",
    "parse_direction",
    "parse_duration",
    "parse_percent",
    "parse_rate",
    "preflight",
]
