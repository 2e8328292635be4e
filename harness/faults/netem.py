"""Backend 1, kernel netem, as argument vectors (pure; never shell strings).

Egress: a ``netem`` root qdisc on the target's interface. Ingress: netem shapes egress only, so
incoming packets are redirected to an ``ifb`` device (``ingress`` qdisc + u32 match-all +
``mirred``) and shaped on its egress. ``limit 10000``: netem's default queue of 1000 packets
drops under load. The development machine's kernel has no sch_netem: these plans are proved in
a virtual machine with Debian's kernel (``tests/vm``, ``make vm-test``). netem draws from the
kernel's generator: ``seed`` has no effect on this backend.
"""

from __future__ import annotations

from harness.faults import bandwidth, latency, loss
from harness.faults.backend import Argv, Change, Plan, overlap, rate_conflict
from harness.faults.model import Impairment

LIMIT = "10000"
IFB = "ifb0"
# netem sorts its queue by each packet's send time, so jitter reorders packets. With a ``rate``,
# netem schedules each packet no earlier than the one before it (sch_netem.c: the delay is
# counted from the last packet's send time), which keeps the order as the user-space engine
# does. A rate far above any veth's is the in-kernel way to ask for that alone (it adds 1500
# bytes / 100 Gbit/s = 0.12 us per packet). Proved in a netem VM: tests/vm.
KEEP_ORDER_RATE = "100gbit"


def netem_args(impairment: Impairment) -> list[str]:
    args: list[str] = []
    for fault in impairment.faults():
        module = {"latency": latency, "loss": loss, "bandwidth": bandwidth}[fault.kind]
        args += module.netem_args(fault)
    if impairment.keep_order and impairment.jitter and impairment.rate is None:
        args += ["rate", KEEP_ORDER_RATE]
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
    # Only this fault's own directions: an ingress fault stacks beside another fault's egress
    # qdisc, and its removal (or the sidecar's clean-up before apply) must leave that one be.
    remove: list[Argv] = []
    if impairment.direction in ("egress", "both"):
        remove.append(["tc", "qdisc", "del", "dev", dev, "root"])
    if impairment.direction in ("ingress", "both"):
        remove += [["tc", "qdisc", "del", "dev", dev, "ingress"], ["ip", "link", "del", IFB]]
    return Plan(backend="netem", mechanism="netem", apply=apply, remove=remove)


def update(impairment: Impairment, dev: str = "eth0") -> list[Argv]:
    """``tc qdisc change``: new netem parameters in place, its queue kept (no re-created qdisc)."""
    args = netem_args(impairment)
    commands: list[Argv] = []
    if impairment.direction in ("egress", "both"):
        commands.append(["tc", "qdisc", "change", "dev", dev, "root", "netem", *args])
    if impairment.direction in ("ingress", "both"):
        commands.append(["tc", "qdisc", "change", "dev", IFB, "root", "netem", *args])
    return commands


class Netem:
    """The kernel's netem: every parameter changes in place (``tc qdisc change``)."""

    name = "netem"

    def plan(self, impairment: Impairment, dev: str, slot: int) -> Plan:
        return plan(impairment, dev)

    def change(self, plan: Plan, old: Impairment, new: Impairment, dev: str) -> Change:
        return Change(commands=update(new, dev))

    def conflict(self, held_backend: str, held: Impairment, new: Impairment) -> str | None:
        if held_backend == self.name and overlap(held, new):
            return (
                f"it already has a netem fault on {held.direction}: netem has one qdisc per "
                "direction; change it with update()"
            )
        return rate_conflict(held, new)
