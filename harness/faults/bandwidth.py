"""Bandwidth: egress limited to a rate by the kernel's token bucket (``tbf``), or netem's ``rate``.

tbf's ``burst`` must hold at least one timer tick of traffic and one MTU; 16 KiB or 1/50 s of the
rate, whichever is larger. ``latency 500ms`` bounds the queue (packets beyond it are dropped).
"""

from __future__ import annotations

from harness.faults.model import Fault

MIN_BURST_BYTES = 16 * 1024
QUEUE_LATENCY = "500ms"


def burst_bytes(rate_bits: int) -> int:
    return max(MIN_BURST_BYTES, rate_bits // 8 // 50)


def netem_args(fault: Fault) -> list[str]:
    return ["rate", f"{int(fault.parameters['rate'])}bit"]


def tbf_apply(fault: Fault, dev: str) -> list[str]:
    rate = int(fault.parameters["rate"])
    return [
        "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
        "rate", f"{rate}bit", "burst", str(burst_bytes(rate)), "latency", QUEUE_LATENCY,
    ]  # fmt: skip


def tbf_remove(dev: str) -> list[str]:
    return ["tc", "qdisc", "del", "dev", dev, "root"]
