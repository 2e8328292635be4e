"""Latency: ``delay`` (+- ``jitter``, with ``correlation`` and a ``distribution``) added to each
packet of a direction."""

from __future__ import annotations

from harness.faults.model import Fault


def _us(seconds: float) -> int:
    return round(seconds * 1e6)


def netem_args(fault: Fault) -> list[str]:
    """``delay 20000us 2000us 25% distribution normal``: tc's own words, in microseconds so
    nothing is rounded. ``uniform`` is netem's default and has no table: no ``distribution``."""
    p = fault.parameters
    args = ["delay", f"{_us(float(p['delay']))}us"]
    if p.get("jitter"):
        args.append(f"{_us(float(p['jitter']))}us")
        if p.get("correlation"):
            args.append(f"{float(p['correlation']) * 100:g}%")
        if p.get("distribution", "uniform") != "uniform":
            args += ["distribution", str(p["distribution"])]
    return args


def engine_args(fault: Fault) -> list[str]:
    p = fault.parameters
    args = [
        "--delay-us", str(_us(float(p["delay"]))),
        "--jitter-us", str(_us(float(p.get("jitter", 0.0)))),
        "--correlation", repr(float(p.get("correlation", 0.0))),
    ]  # fmt: skip
    if p.get("distribution", "uniform") != "uniform":
        args += ["--distribution", str(p["distribution"])]
    return args
