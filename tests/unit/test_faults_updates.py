"""Run-time changes and stacking, without Docker: the engine's control, slots, plans, the CLI's
validation (exit 2 before anything is touched)."""

from __future__ import annotations

import json
import select
import threading
from types import SimpleNamespace

import pytest
from echolab_fault_engine.control import Control, request
from echolab_fault_engine.engine import Engine
from echolab_fault_engine.schedule import Schedule
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness import cli
from harness.faults import FaultError, Impairment, netem, nfqueue
from harness.faults.api import Applied, _slot_for, impairment_of
from harness.faults.sidecar import DESCRIPTION, SLOT
from harness.faults.spec import DISTRIBUTIONS


def test_schedule_update_keeps_order_and_validates_all_or_nothing():
    s = Schedule(delay_s=0.1)
    first = s.decide(0.0)
    s.update(delay_s=0.01)
    assert s.decide(0.001) == pytest.approx(first)  # never before a held, earlier packet
    assert s.decide(0.5) == pytest.approx(0.51)
    with pytest.raises(ValueError):
        s.update(delay_s=0.2, loss=2.0)
    assert s.delay_s == 0.01 and s.loss == 0.0


class Held:
    def __init__(self, log: list[int], n: int) -> None:
        self.log, self.n = log, n

    def accept(self) -> None:
        self.log.append(self.n)


def test_engine_control_set_keeps_held_packets_and_their_times():
    now = [0.0]
    engine = Engine(Schedule(delay_s=0.05), clock=lambda: now[0])
    log: list[int] = []
    engine.on_packet(Held(log, 0))
    answer = engine.control({"op": "set", "delay_us": 1000, "loss": 0.0})
    assert answer["params"]["delay_s"] == pytest.approx(0.001) and answer["held"] == 1
    now[0] = 0.01
    engine.on_packet(Held(log, 1))  # would be due at 0.011, but waits behind packet 0
    now[0] = 0.02
    engine.release_due()
    assert log == []
    now[0] = 0.05
    engine.release_due()
    assert log == [0, 1]
    assert engine.control({"op": "note", "note": {"x": 1}})["note"] == {"x": 1}
    with pytest.raises(ValueError, match="unknown op"):
        engine.control({"op": "explode"})


def test_control_socket_round_trip(tmp_path):
    path = str(tmp_path / "engine.sock")
    control = Control(lambda req: {"echo": req["v"]}, path)
    try:
        answers: list[dict] = []
        thread = threading.Thread(target=lambda: answers.append(request({"v": 7}, path)))
        thread.start()
        assert select.select([control], [], [], 5)[0]
        control.serve()
        thread.join(5)
        assert answers == [{"ok": True, "echo": 7}]
        bad = threading.Thread(target=lambda: answers.append(request({"w": 1}, path)))
        bad.start()
        select.select([control], [], [], 5)
        control.serve()
        bad.join(5)
        assert answers[-1]["ok"] is False
    finally:
        control.close()


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


def _held(slot: int, **described: object) -> SimpleNamespace:
    return SimpleNamespace(
        name=f"t-fault{slot}", labels={SLOT: str(slot), DESCRIPTION: json.dumps(described)}
    )


def test_slot_allocation_and_conflicts():
    target = SimpleNamespace(name="t")
    delay = Impairment.parse(delay="1ms")
    assert _slot_for(target, [], delay, "nfqueue") == 0
    assert _slot_for(target, [_held(0, direction="egress")], delay, "nfqueue") == 1
    assert _slot_for(target, [_held(1, direction="egress")], delay, "nfqueue") == 0
    full = [_held(i, direction="egress") for i in range(3)]
    with pytest.raises(FaultError, match="3 faults"):
        _slot_for(target, full, delay, "nfqueue")
    with pytest.raises(FaultError, match="one rate per target"):
        _slot_for(target, [_held(0, rate_bit_s=1e6)], Impairment.parse(rate="1mbit"), "nfqueue")
    netem_held = [_held(0, direction="egress", backend="netem")]
    with pytest.raises(FaultError, match="one qdisc per direction"):
        _slot_for(target, netem_held, delay, "netem")
    ingress = Impairment.parse(delay="1ms", direction="ingress")
    assert _slot_for(target, netem_held, ingress, "netem") == 1


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
    described = Applied("nfqueue", original, ["server"], None).describe()
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
