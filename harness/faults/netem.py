"""Backend 1, kernel netem, as argument vectors (pure; never shell strings).

Egress: a ``netem`` root qdisc on the target's interface. Ingress: netem shapes egress only, so
incoming packets are redirected to an ``ifb`` device (``ingress`` qdisc + u32 match-all +
``mirred``) and shaped on its egress. ``limit 10000``: netem's default queue of 1000 packets
drops under load. Not exercised on the development machine (its kernel has no sch_netem).
"""

from __future__ import annotations

from harness.faults import bandwidth, latency, loss
from harness.faults.plan import Argv, Plan
from harness.faults.spec import Impairment

LIMIT = "10000"
IFB = "ifb0"


def netem_args(impairment: Impairment) -> list[str]:
    args: list[str] = []
    for fault in impairment.faults():
        module = {"latency": latency, "loss": loss, "bandwidth": bandwidth}[fault.kind]
        args += module.netem_args(fault)
    return [*args, "limit", LIMIT]


def plan(impairment: Impairment, dev: str = "eth0") -> Plan:
    args = netem_args(impairment)
    apply: list[Argv] = []
    if impairment.direction in ("egress", "both"):
        apply.append(["tc", "qdisc", "replace", "dev", dev, "root", "netem", *args])
    if impairment.direction in ("ingress", "both"):
        apply += [
            ["ip", "link", "add", IFB, "type", "ifb"],
            ["ip", "link", "set", IFB, "up"],
            ["tc", "qdisc", "replace", "dev", dev, "handle", "ffff:", "ingress"],
            [
                "tc", "filter", "replace", "dev", dev, "parent", "ffff:", "protocol", "all",
                "u32", "match", "u32", "0", "0",
                "action", "mirred", "egress", "redirect", "dev", IFB,
            ],
            ["tc", "qdisc", "replace", "dev", IFB, "root", "netem", *args],
        ]  # fmt: skip
    remove = [
        ["tc", "qdisc", "del", "dev", dev, "root"],
        ["tc", "qdisc", "del", "dev", dev, "ingress"],
        ["ip", "link", "del", IFB],
    ]
    return Plan(backend="netem", engine=["idle"], apply=apply, remove=remove)


def update(impairment: Impairment, dev: str = "eth0") -> list[Argv]:
    """``tc qdisc change``: new netem parameters in place, its queue kept (no re-created qdisc)."""
    args = netem_args(impairment)
    commands: list[Argv] = []
    if impairment.direction in ("egress", "both"):
        commands.append(["tc", "qdisc", "change", "dev", dev, "root", "netem", *args])
    if impairment.direction in ("ingress", "both"):
        commands.append(["tc", "qdisc", "change", "dev", IFB, "root", "netem", *args])
    return commands
