"""Run-time changes and stacking, without Docker: slots, plans, the CLI's validation (exit 2
before anything is touched). The engine's own run-time changes are tested in
test_faults_engine.py, the control socket in test_control_protocol.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness import cli
from harness.errors import ConfigError, FaultError
from harness.faults import engine as nfqueue
from harness.faults import netem
from harness.faults.backend import Plan
from harness.faults.capabilities import BACKENDS
from harness.faults.impair import Applied, Held, describe, free_slot, impairment_of
from harness.faults.model import DISTRIBUTIONS, Impairment


def test_slots_use_their_own_table_and_queue_and_remove_only_themselves():
    imp = Impairment.parse(delay="5ms", direction="both")
    plan = nfqueue.plan(imp, queue=1)
    assert plan.apply[0][:4] == ["iptables", "-t", "mangle", "-A"]
    assert "--queue-num" in plan.apply[0] and plan.apply[0][-2] == "1"
    raw = nfqueue.plan(imp, queue=2)
    assert raw.apply[1][:5] == ["iptables", "-t", "raw", "-A", "PREROUTING"]
    assert all(argv[0] == "iptables" for argv in plan.remove)  # no rate: the qdisc is not its
    assert ["tc", "qdisc", "del", "dev", "eth0", "root"] in nfqueue.plan(
        Impairment.parse(rate="1mbit")
    ).remove
    with pytest.raises(ValueError, match="slot"):
        nfqueue.plan(imp, queue=3)


def test_update_plans_change_in_place():
    imp = Impairment.parse(delay="10ms", loss="1%", rate="1mbit")
    request_, commands = nfqueue.update(imp)
    assert request_ == {
        "delay_us": 10000,
        "jitter_us": 0,
        "correlation": 0.0,
        "loss": 0.01,
        "distribution": "uniform",
    }
    assert commands[0][:4] == ["tc", "qdisc", "change", "dev"] and "tbf" in commands[0]
    both = netem.update(Impairment.parse(delay="10ms", direction="both"))
    assert [argv[2] for argv in both] == ["change", "change"]
    assert [argv[4] for argv in both] == ["eth0", netem.IFB]


def _held(slot: int, backend: str = "nfqueue", **words: object) -> Held:
    return Held(f"t-fault{slot}", slot, backend, Impairment.parse(**words))  # type: ignore[arg-type]


def test_slot_allocation_and_conflicts():
    delay = Impairment.parse(delay="1ms")
    engine, kernel = BACKENDS["nfqueue"], BACKENDS["netem"]
    assert free_slot("t", [], delay, engine) == 0
    assert free_slot("t", [_held(0, delay="1ms")], delay, engine) == 1
    assert free_slot("t", [_held(1, delay="1ms")], delay, engine) == 0
    block = Held("t-fault0-block", 0, "iptables", None)
    assert free_slot("t", [block], delay, engine) == 0  # a block takes no slot
    full = [_held(i, delay="1ms") for i in range(3)]
    with pytest.raises(FaultError, match="3 faults"):
        free_slot("t", full, delay, engine)
    with pytest.raises(FaultError, match="one rate per target"):
        free_slot("t", [_held(0, rate="1mbit")], Impairment.parse(rate="1mbit"), engine)
    netem_held = [_held(0, "netem", delay="1ms")]
    with pytest.raises(FaultError, match="one qdisc per direction"):
        free_slot("t", netem_held, delay, kernel)
    ingress = Impairment.parse(delay="1ms", direction="ingress")
    assert free_slot("t", netem_held, ingress, kernel) == 1


def test_update_is_checked_by_the_backend_before_anything_changes():
    """A rate-only engine fault has no engine to take a delay; rate cannot come or go; the
    fixed words cannot change; netem changes everything in place."""
    rate_only = Impairment.parse(rate="1mbit")
    plan = nfqueue.plan(rate_only)
    applied = Applied(BACKENDS["nfqueue"], rate_only, ["server"])
    applied.sidecars = [_FakeSidecar(plan)]  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="no packet engine"):
        applied.check(delay="5ms")
    assert applied.check(rate="2mbit").rate == 2_000_000
    delayed = Impairment.parse(delay="5ms")
    with_engine = Applied(BACKENDS["nfqueue"], delayed, ["server"])
    with_engine.sidecars = [_FakeSidecar(nfqueue.plan(delayed))]  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="rate cannot be added"):
        with_engine.check(rate="1mbit")
    with pytest.raises(ConfigError, match="direction cannot change"):
        with_engine.check(direction="both")
    kernel = Applied(BACKENDS["netem"], delayed, ["server"])
    kernel.sidecars = [_FakeSidecar(netem.plan(delayed))]  # type: ignore[list-item]
    assert kernel.check(rate="1mbit", delay="7ms").delay == pytest.approx(0.007)


class _FakeSidecar:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delay=-5ms"], "delay must be >= 0"),
        (["--loss", "101%"], "loss must be within"),
        (["--delay", "5parsecs"], "unknown unit"),
        (["--jitter", "5ms", "--delay", "1ms"], "jitter (5 ms) must not exceed"),
        ([], "nothing to impair"),
    ],
)
def test_cli_bad_parameters_exit_2_before_docker_is_touched(capsys, args, message):
    assert cli.main(["impair", "server", *args, "--project", "nowhere"]) == 2
    assert message in capsys.readouterr().err


@settings(max_examples=200, deadline=None)
@given(
    delay_us=st.integers(0, 10_000_000),
    jitter_share=st.floats(0, 1),
    correlation=st.floats(0, 1),
    loss=st.just(0.0) | st.floats(1e-7, 1),  # words keep a millionth of a percent
    rate=st.none() | st.integers(8, 10**10),
    distribution=st.sampled_from(DISTRIBUTIONS),
    seed=st.integers(0, 2**31),
    keep_order=st.booleans(),
)
def test_a_fault_in_force_reads_back_from_its_description_and_words(
    delay_us, jitter_share, correlation, loss, rate, distribution, seed, keep_order
):
    """What the CLI's ``update`` attaches to: describe() -> impairment_of() -> words() -> parse()
    gives the same impairment (to the microsecond), so only the words given change."""
    delay = delay_us / 1e6
    jitter = round(delay * jitter_share, 6)
    assume(delay or loss or rate is not None)
    assume(distribution == "uniform" or jitter)
    original = Impairment(
        delay=delay,
        jitter=jitter,
        correlation=correlation,
        loss=loss,
        rate=rate,
        seed=seed,
        keep_order=keep_order,
        distribution=distribution,
    )
    described = describe("nfqueue", "nfqueue", original, ["server"])
    found = impairment_of(json.loads(json.dumps(described)))
    assert found == original
    again = Impairment.parse(**found.words())
    assert again.delay == pytest.approx(delay, abs=1e-9)
    assert again.jitter == pytest.approx(jitter, abs=1e-9)
    assert again.loss == pytest.approx(loss, abs=1e-8)
    assert again.correlation == pytest.approx(correlation, abs=1e-8)
    assert (again.rate, again.seed, again.keep_order) == (rate, seed, keep_order)
    assert again.distribution == distribution


def test_cli_update_says_what_is_missing_before_docker_is_touched(capsys):
    assert cli.main(["update", "server", "--project", "nowhere"]) == 2
    assert "nothing to change" in capsys.readouterr().err


def test_a_fault_whose_engine_released_late_says_it_drifted():
    class Gone:  # a removed sidecar: only what its engine counted last
        def __init__(self, stats: dict[str, object]) -> None:
            self.target_name, self.stats = "lab-server", stats

    on_time = {"late_us_p50": 3.0, "late_us_p99": 150.0, "late_us_max": 900.0, "released": 10}
    applied = Applied(BACKENDS["nfqueue"], Impairment.parse(delay="1ms"), ["server"])
    applied.sidecars = [Gone(on_time)]  # type: ignore[list-item]
    assert applied.drifted() == {}
    applied.sidecars = [Gone({**on_time, "late_us_p99": 1668.4})]  # type: ignore[list-item]
    (why,) = applied.drifted().values()
    assert "lab-server" in why and "p99 1668.4 us" in why and "drifted" in why
    applied.sidecars = [Gone({})]  # type: ignore[list-item]  # a kernel fault counts nothing
    assert applied.drifted() == {}
