"""Latency: ``delay`` (+- ``jitter``, with ``correlation``) added to each packet of a direction."""

from __future__ import annotations

from harness.faults.spec import Fault


def _us(seconds: float) -> int:
    return round(seconds * 1e6)


def netem_args(fault: Fault) -> list[str]:
    """``delay 20000us 2000us 25%``: tc's own words, in microseconds so nothing is rounded."""
    p = fault.parameters
    args = ["delay", f"{_us(p['delay'])}us"]
    if p.get("jitter"):
        args.append(f"{_us(p['jitter'])}us")
        if p.get("correlation"):
            args.append(f"{p['correlation'] * 100:g}%")
    return args


def engine_args(fault: Fault) -> list[str]:
    p = fault.parameters
    return [
        "--delay-us", str(_us(p["delay"])),
        "--jitter-us", str(_us(p.get("jitter", 0.0))),
        "--correlation", repr(float(p.get("correlation", 0.0))),
    ]  # fmt: skip
