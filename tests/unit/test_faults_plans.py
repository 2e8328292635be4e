"""The backends' plans: argument vectors for tc and iptables, and the engine's command (pure)."""

from __future__ import annotations

import json

import pytest

from harness.errors import FaultUnsupported
from harness.faults import Impairment, netem
from harness.faults import engine as nfqueue
from harness.faults.capabilities import parse_report


def test_netem_egress_delay_jitter_loss_rate():
    imp = Impairment.parse(delay="20ms", jitter="2ms", correlation="25%", loss="1%", rate="1mbit")
    plan = netem.plan(imp)
    assert plan.backend == "netem"
    assert plan.apply == [
        [
            "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
            "delay", "20000us", "2000us", "25%", "loss", "1%", "rate", "1000000bit",
            "limit", "10000",
        ]
    ]  # fmt: skip
    assert ["tc", "qdisc", "del", "dev", "eth0", "root"] in plan.remove
    assert all(isinstance(arg, str) for argv in plan.apply + plan.remove for arg in argv)


def test_netem_distribution_follows_the_jitter():
    imp = Impairment.parse(delay="20ms", jitter="2ms", correlation="25%", distribution="normal")
    args = netem.netem_args(imp)
    assert args[:6] == ["delay", "20000us", "2000us", "25%", "distribution", "normal"]
    plan = netem.plan(imp)
    assert plan.apply[0][7:13] == args[:6]
    assert netem.update(imp)[0][7:13] == args[:6]
    assert "distribution" not in netem.netem_args(Impairment.parse(delay="20ms", jitter="2ms"))


def test_nfqueue_engine_and_update_carry_the_distribution():
    imp = Impairment.parse(delay="20ms", jitter="2ms", distribution="pareto")
    engine = nfqueue.plan(imp).engine
    assert engine[engine.index("--distribution") + 1] == "pareto"
    request, _ = nfqueue.update(imp)
    assert request["distribution"] == "pareto"


def test_netem_ingress_goes_through_ifb():
    plan = netem.plan(Impairment.parse(delay="5ms", direction="ingress"))
    assert plan.apply[0] == ["ip", "link", "add", "ifb0", "type", "ifb"]
    assert plan.apply[-1][:7] == ["tc", "qdisc", "replace", "dev", "ifb0", "root", "netem"]
    assert ["ip", "link", "del", "ifb0"] in plan.remove
    assert not any(argv[5:7] == ["root", "netem"] and "eth0" in argv for argv in plan.apply)


def test_netem_removes_only_its_own_directions():
    """An ingress fault stacks beside an egress one: neither's removal (nor the sidecar's
    clean-up before apply, which runs the same commands) may delete the other's qdisc."""
    egress = netem.plan(Impairment.parse(delay="5ms")).remove
    ingress = netem.plan(Impairment.parse(delay="5ms", direction="ingress")).remove
    both = netem.plan(Impairment.parse(delay="5ms", direction="both")).remove
    assert egress == [["tc", "qdisc", "del", "dev", "eth0", "root"]]
    assert ingress == [
        ["tc", "qdisc", "del", "dev", "eth0", "ingress"],
        ["ip", "link", "del", "ifb0"],
    ]
    assert both == egress + ingress


def test_netem_both_directions():
    plan = netem.plan(Impairment.parse(delay="5ms", direction="both"))
    devs = [argv[4] for argv in plan.apply if argv[:3] == ["tc", "qdisc", "replace"]]
    assert "eth0" in devs and "ifb0" in devs


def test_nfqueue_egress_rule_and_engine():
    imp = Impairment.parse(delay="20ms", jitter="2ms", loss="5%", seed=42)
    plan = nfqueue.plan(imp)
    assert plan.backend == "nfqueue"
    assert plan.apply == [
        [
            "iptables", "-A", "OUTPUT", "!", "-o", "lo", "-m", "comment", "--comment",
            "echolab-fault", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass",
        ]
    ]  # fmt: skip
    assert plan.engine == [
        "run", "--queue", "0", "--seed", "42",
        "--delay-us", "20000", "--jitter-us", "2000", "--correlation", "0.0",
        "--loss", "0.05",
    ]  # fmt: skip
    # removal covers both chains and the qdisc, whatever was applied (crash leftovers too)
    assert [argv[2] for argv in plan.remove if argv[0] == "iptables"] == ["OUTPUT", "INPUT"]
    assert all(argv[1] == "-D" for argv in plan.remove if argv[0] == "iptables")


def test_nfqueue_both_directions_and_reorder():
    plan = nfqueue.plan(Impairment.parse(delay="1ms", direction="both", keep_order=False))
    assert [argv[2] for argv in plan.apply] == ["OUTPUT", "INPUT"]
    assert plan.apply[1][3:6] == ["!", "-i", "lo"]
    assert plan.engine[-1] == "--reorder"


def test_rate_alone_is_kernel_tbf_with_an_idle_sidecar():
    plan = nfqueue.plan(Impairment.parse(rate="1mbit"))
    assert plan.mechanism == "tbf" and plan.engine is None and plan.command == ["idle"]
    assert plan.apply == [
        [
            "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
            "rate", "1000000bit", "burst", "16384", "latency", "500ms",
        ]
    ]  # fmt: skip


def test_rate_with_delay_is_both():
    plan = nfqueue.plan(Impairment.parse(delay="1ms", rate="100mbit"))
    assert plan.mechanism == "nfqueue+tbf"
    assert plan.apply[-1][plan.apply[-1].index("burst") + 1] == str(100_000_000 // 8 // 50)


PROBE_HERE = {
    "netem": {"ok": False, "detail": "Error: Specified qdisc kind is unknown."},
    "tbf": {"ok": True, "detail": "applied and removed on lo"},
    "nfqueue": {"ok": True, "detail": "a packet went through the queue and was accepted"},
    "kernel_config": {"CONFIG_NET_SCH_NETEM": "not set"},
}


def test_preflight_report_chooses_the_user_space_engine_without_netem():
    report = parse_report("noise\n" + json.dumps(PROBE_HERE))
    assert report.can() == {"latency": "nfqueue", "loss": "nfqueue", "bandwidth": "tbf"}
    imp = Impairment.parse(delay="1ms")
    assert report.backend_for(imp).name == "nfqueue"
    with pytest.raises(FaultUnsupported, match="qdisc kind is unknown"):
        report.backend_for(imp, "netem")
    with pytest.raises(ValueError, match="backend must be"):
        report.backend_for(imp, "toxiproxy")


def test_preflight_report_prefers_netem_and_refuses_what_cannot_be_done():
    with_netem = parse_report(json.dumps({**PROBE_HERE, "netem": {"ok": True, "detail": ""}}))
    assert with_netem.backend_for(Impairment.parse(delay="1ms")).name == "netem"
    nothing = parse_report(
        json.dumps({**PROBE_HERE, "nfqueue": {"ok": False, "detail": "no queue"}})
    )
    with pytest.raises(FaultUnsupported, match=r"NFQUEUE \(no queue\)"):
        nothing.backend_for(Impairment.parse(loss="1%"))
    assert nothing.backend_for(Impairment.parse(rate="1mbit")).name == "nfqueue"


def test_netem_keeps_order_under_jitter_unless_told_not_to():
    """netem's own queue reorders under jitter; a rate far above the link's keeps the order
    (each packet no earlier than the one before), as the user-space engine does."""
    kept = netem.netem_args(Impairment.parse(delay="20ms", jitter="5ms"))
    assert kept[kept.index("rate") + 1] == netem.KEEP_ORDER_RATE
    loose = netem.netem_args(Impairment.parse(delay="20ms", jitter="5ms", keep_order=False))
    assert "rate" not in loose
    assert "rate" not in netem.netem_args(Impairment.parse(delay="20ms"))  # no jitter: in order
    shaped = netem.netem_args(Impairment.parse(delay="20ms", jitter="5ms", rate="1mbit"))
    assert shaped.count("rate") == 1  # the user's rate orders packets already


def test_engine_scheduling_asks_for_a_real_time_budget_only_when_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.faults.sidecar import CPU_SHARES, RT_RUNTIME_ENV, engine_scheduling

    monkeypatch.delenv(RT_RUNTIME_ENV, raising=False)
    assert engine_scheduling() == {"cpu_shares": CPU_SHARES}
    monkeypatch.setenv(RT_RUNTIME_ENV, "400000")
    assert engine_scheduling() == {"cpu_shares": CPU_SHARES, "cpu_rt_runtime": 400000}
    for bad in ("fast", "2000000", "-1"):
        monkeypatch.setenv(RT_RUNTIME_ENV, bad)
        with pytest.raises(ValueError, match=RT_RUNTIME_ENV):
            engine_scheduling()
