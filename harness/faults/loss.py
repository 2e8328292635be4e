"""Loss: each packet of a direction dropped with a probability (independently)."""

from __future__ import annotations

from harness.faults.model import Fault


def netem_args(fault: Fault) -> list[str]:
    return ["loss", f"{fault.parameters['probability'] * 100:g}%"]


def engine_args(fault: Fault) -> list[str]:
    return ["--loss", repr(float(fault.parameters["probability"]))]
