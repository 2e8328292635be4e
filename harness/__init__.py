"""echolab's harness: describe a lab (``LabSpec``), build it (``Lab``), run clients, check replies.

Results are data (``RunResult`` of ``ClientResult`` records), so experiments and reports
compute from them instead of parsing printed text.
"""

from harness.checks import Problem, check_client, check_run
from harness.clients import ClientBatch, ClientRun
from harness.errors import LabError
from harness.lab import Lab
from harness.results import ClientResult, RunResult
from harness.spec import LabSpec, ServerSpec, Workload
from harness.waiting import WaitTimeout, wait_for

__all__ = [
    "ClientBatch",
    "ClientResult",
    "ClientRun",
    "Lab",
    "LabError",
    "LabSpec",
    "Problem",
    "RunResult",
    "ServerSpec",
    "WaitTimeout",
    "Workload",
    "check_client",
    "check_run",
    "wait_for",
]
