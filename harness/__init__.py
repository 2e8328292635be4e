"""echolab's harness: describe a lab (``LabSpec``), build it (``Lab``), run clients, inject
faults, check replies.

Everything a user's experiment needs is importable from here. Results are data (``RunResult``
of ``ClientResult`` records), so experiments and reports compute from them instead of parsing
printed text. Every error the harness raises is an ``EcholabError``.

Layers, each importing only those below it (checked by ``make lint``):
``cli``, ``pytest_plugin`` > ``experiment`` > ``lab`` > ``compose_lab``, ``swarm`` > ``clients``
> ``faults`` > ``images``, ``sidecars``, ``sweep``, ``compose``, ``session`` > ``results``,
``checks``, ``spec``, ``waiting``, ``labels`` > ``errors``, ``paths``.
"""

from harness.checks import Violation, check_client, check_run
from harness.clients import ClientBatch, ClientRun
from harness.compose_lab import ComposeLab
from harness.errors import (
    CheckFailed,
    ConfigError,
    EcholabError,
    FaultError,
    FaultUnsupported,
    ImageError,
    LabError,
    ProxyError,
    SetupError,
    WaitTimeout,
)
from harness.faults import Applied, Impairment, Proxy, Toxic
from harness.lab import Lab
from harness.results import ClientResult, ConnectionResult, RunResult
from harness.spec import LabSpec, ServerSpec, Workload
from harness.swarm.lab import SwarmLab
from harness.waiting import wait_for

__all__ = [
    "Applied",
    "CheckFailed",
    "ClientBatch",
    "ClientResult",
    "ClientRun",
    "ComposeLab",
    "ConfigError",
    "ConnectionResult",
    "EcholabError",
    "FaultError",
    "FaultUnsupported",
    "ImageError",
    "Impairment",
    "Lab",
    "LabError",
    "LabSpec",
    "Proxy",
    "ProxyError",
    "RunResult",
    "ServerSpec",
    "SetupError",
    "SwarmLab",
    "Toxic",
    "Violation",
    "WaitTimeout",
    "Workload",
    "check_client",
    "check_run",
    "wait_for",
]
