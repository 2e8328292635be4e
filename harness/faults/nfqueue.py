"""Backend 2, the user-space engine: iptables NFQUEUE rules and the engine's command (pure).

The rules match every IPv4 packet leaving (``OUTPUT ! -o lo``) and/or entering (``INPUT ! -i
lo``) the target's namespace, loopback excluded (the server's health check runs on it). They
carry a comment so a person can tell them apart, and ``--queue-bypass``: with no engine bound
to the queue, packets pass unimpaired instead of being dropped. Rate is the kernel's ``tbf``.
"""

from __future__ import annotations

from harness.faults import bandwidth, latency, loss
from harness.faults.plan import Argv, Plan
from harness.faults.spec import Impairment

COMMENT = "echolab-fault"
QUEUE = 0
_CHAINS = {"egress": ("OUTPUT", "-o"), "ingress": ("INPUT", "-i")}


def rule(direction: str, queue: int = QUEUE) -> list[str]:
    chain, flag = _CHAINS[direction]
    return [
        chain, "!", flag, "lo", "-m", "comment", "--comment", COMMENT,
        "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass",
    ]  # fmt: skip


def directions(direction: str) -> tuple[str, ...]:
    return ("egress", "ingress") if direction == "both" else (direction,)


def engine_command(impairment: Impairment, queue: int = QUEUE) -> Argv:
    argv = ["run", "--queue", str(queue), "--seed", str(impairment.seed)]
    for fault in impairment.faults():
        if fault.kind == "latency":
            argv += latency.engine_args(fault)
        elif fault.kind == "loss":
            argv += loss.engine_args(fault)
    if not impairment.keep_order:
        argv.append("--reorder")
    return argv


def plan(impairment: Impairment, dev: str = "eth0", queue: int = QUEUE) -> Plan:
    in_user_space = bool(impairment.delay or impairment.jitter or impairment.loss)
    apply: list[Argv] = []
    if in_user_space:
        apply += [["iptables", "-A", *rule(d, queue)] for d in directions(impairment.direction)]
    for fault in impairment.faults():
        if fault.kind == "bandwidth":
            apply.append(bandwidth.tbf_apply(fault, dev))
    # Removal covers both chains and the qdisc whatever was applied, so it also clears what an
    # earlier, crashed sidecar left behind.
    remove = [["iptables", "-D", *rule(d, queue)] for d in ("egress", "ingress")]
    remove.append(bandwidth.tbf_remove(dev))
    return Plan(
        backend="nfqueue+tbf" if impairment.rate is not None and in_user_space else
        ("tbf" if not in_user_space else "nfqueue"),
        engine=engine_command(impairment, queue) if in_user_space else ["idle"],
        apply=apply,
        remove=remove,
    )  # fmt: skip
