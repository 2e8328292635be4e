"""The user-space engine backend (``nfqueue``): iptables NFQUEUE rules and the engine's command,
with the kernel's ``tbf`` for rate (pure).

The rules match every IPv4 packet leaving (``OUTPUT ! -o lo``) and/or entering (``INPUT ! -i
lo``) the target's namespace, loopback excluded (the server's health check runs on it). They
carry a comment so a person can tell them apart, and ``--queue-bypass``: with no engine bound
to the queue, packets pass unimpaired instead of being dropped. Rate is the kernel's ``tbf``.

Stacking: a packet accepted by an NFQUEUE verdict leaves its table's chain, so two rules in one
chain would never both see it. Each fault on a target takes a *slot*: its own queue number and
its own table (slot 0 ``filter``, 1 ``mangle``, 2 ``raw``), traversed one after the other by the
kernel, so up to three user-space faults stack on one target in any order, each removable alone.
Parameters change at run time through the engine's control socket (``update``): the rules stay.
"""

from __future__ import annotations

from harness.errors import ConfigError
from harness.faults import bandwidth, latency, loss
from harness.faults.backend import Argv, Change, Plan, rate_conflict
from harness.faults.model import Impairment

COMMENT = "echolab-fault"
QUEUE = 0
# Slot -> (table, {direction: (chain, interface flag)}); raw has no INPUT: PREROUTING is its twin.
SLOTS: tuple[tuple[str, dict[str, tuple[str, str]]], ...] = (
    ("filter", {"egress": ("OUTPUT", "-o"), "ingress": ("INPUT", "-i")}),
    ("mangle", {"egress": ("OUTPUT", "-o"), "ingress": ("INPUT", "-i")}),
    ("raw", {"egress": ("OUTPUT", "-o"), "ingress": ("PREROUTING", "-i")}),
)
MAX_SLOTS = len(SLOTS)


def _slot(queue: int) -> tuple[str, dict[str, tuple[str, str]]]:
    if not 0 <= queue < MAX_SLOTS:
        raise ConfigError(f"slot must be within 0..{MAX_SLOTS - 1}, got {queue}")
    return SLOTS[queue]


def rule(direction: str, queue: int = QUEUE) -> list[str]:
    """The rule after ``iptables [-t TABLE] -A``/``-D`` (slot ``queue``'s chain and queue)."""
    _, chains = _slot(queue)
    chain, flag = chains[direction]
    comment = COMMENT if queue == 0 else f"{COMMENT}-{queue}"
    return [
        chain, "!", flag, "lo", "-m", "comment", "--comment", comment,
        "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass",
    ]  # fmt: skip


def iptables(action: str, direction: str, queue: int = QUEUE) -> list[str]:
    """``iptables [-t TABLE] -A|-D <rule>`` for slot ``queue`` (filter needs no ``-t``)."""
    table, _ = _slot(queue)
    return [
        "iptables",
        *([] if table == "filter" else ["-t", table]),
        action,
        *rule(direction, queue),
    ]


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
        apply += [iptables("-A", d, queue) for d in directions(impairment.direction)]
    for fault in impairment.faults():
        if fault.kind == "bandwidth":
            apply.append(bandwidth.tbf_apply(fault, dev))
    # Removal covers both chains of the slot whatever was applied, so it also clears what an
    # earlier, crashed sidecar left in that slot; the qdisc only if this fault set it (another
    # fault on the same target may own it).
    remove = [iptables("-D", d, queue) for d in ("egress", "ingress")]
    if impairment.rate is not None:
        remove.append(bandwidth.tbf_remove(dev))
    return Plan(
        backend="nfqueue",
        mechanism="nfqueue+tbf" if impairment.rate is not None and in_user_space else
        ("tbf" if not in_user_space else "nfqueue"),
        engine=engine_command(impairment, queue) if in_user_space else None,
        apply=apply,
        remove=remove,
    )  # fmt: skip


def update(impairment: Impairment, dev: str = "eth0") -> tuple[dict[str, float | str], list[Argv]]:
    """What changes a fault to ``impairment`` in place: the engine's ``set`` request (for a
    running engine), and ``tc qdisc change`` for the rate (tbf keeps its queue)."""
    request: dict[str, float | str] = {
        "delay_us": round(impairment.delay * 1e6),
        "jitter_us": round(impairment.jitter * 1e6),
        "correlation": impairment.correlation,
        "loss": impairment.loss,
        "distribution": impairment.distribution,
    }
    commands: list[Argv] = []
    for fault in impairment.faults():
        if fault.kind == "bandwidth":
            commands.append(["tc", "qdisc", "change", *bandwidth.tbf_apply(fault, dev)[3:]])
    return request, commands


class Engine:
    """The user-space engine: a fault keeps its kinds for its life (delay, jitter and loss can
    change, to 0 too, if its engine runs; rate if it set tbf): another kind is another fault,
    stacked in another slot."""

    name = "nfqueue"

    def plan(self, impairment: Impairment, dev: str, slot: int) -> Plan:
        return plan(impairment, dev, queue=slot)

    def change(self, plan: Plan, old: Impairment, new: Impairment, dev: str) -> Change:
        if (new.delay or new.jitter or new.loss) and plan.engine is None:
            raise ConfigError(
                "this fault has no packet engine (rate only): add delay or loss with another "
                "impair() on the same target"
            )
        if (new.rate is None) != (old.rate is None):
            raise ConfigError("rate cannot be added or removed by update: impair again")
        request, commands = update(new, dev)
        return Change(engine=request if plan.engine is not None else None, commands=commands)

    def conflict(self, held_backend: str, held: Impairment, new: Impairment) -> str | None:
        return rate_conflict(held, new)
