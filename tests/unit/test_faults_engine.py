"""The sidecar engine's pure parts: the seeded schedule and the release loop's bookkeeping."""

from __future__ import annotations

import itertools
import socket
import statistics
from array import array

import pytest
from echolab_fault_engine.engine import Engine, Stop
from echolab_fault_engine.idle import Idle
from echolab_fault_engine.schedule import Schedule, spread
from echolab_fault_engine.spin import Spin


def test_fixed_delay():
    s = Schedule(delay_s=0.02)
    assert [s.decide(t) for t in (1.0, 1.001)] == [pytest.approx(1.02), pytest.approx(1.021)]


def test_jitter_is_bounded_seeded_and_centred():
    draws = [Schedule(delay_s=0.02, jitter_s=0.002, seed=1, keep_order=False)]
    s = draws[0]
    delays = [s.decide(float(i)) - i for i in range(5000)]
    assert all(0.018 - 1e-9 <= d <= 0.022 + 1e-9 for d in delays)
    assert statistics.median(delays) == pytest.approx(0.02, abs=2e-4)
    again = Schedule(delay_s=0.02, jitter_s=0.002, seed=1, keep_order=False)
    assert [again.decide(float(i)) - i for i in range(5000)] == delays
    other = Schedule(delay_s=0.02, jitter_s=0.002, seed=2, keep_order=False)
    assert [other.decide(float(i)) - i for i in range(50)] != delays[:50]


def test_keep_order_never_releases_before_an_earlier_packet():
    s = Schedule(delay_s=0.01, jitter_s=0.01, seed=3)
    releases = [s.decide(i * 0.0001) for i in range(2000)]
    assert releases == sorted(releases)


def test_correlation_smooths_jitter():
    def steps(c: float) -> float:
        s = Schedule(delay_s=0.01, jitter_s=0.01, correlation=c, seed=4, keep_order=False)
        d = [s.decide(float(i)) - i for i in range(3000)]
        return statistics.mean(abs(a - b) for a, b in itertools.pairwise(d))

    assert steps(0.9) < steps(0.0) / 3


def test_loss_rate_and_determinism():
    s = Schedule(delay_s=0.0, loss=0.05, seed=5)
    decided = [s.decide(float(i)) for i in range(20000)]
    assert sum(d is None for d in decided) / len(decided) == pytest.approx(0.05, abs=0.006)
    again = Schedule(delay_s=0.0, loss=0.05, seed=5)
    assert [again.decide(float(i)) is None for i in range(20000)] == [d is None for d in decided]


def test_the_decision_log_names_the_drops_and_draws_of_a_seed():
    """The log is what two runs compare: the same seed logs the same drops and draws, whatever
    the arrival times; another seed logs others."""
    a = Schedule(delay_s=0.01, jitter_s=0.002, loss=0.05, seed=5)
    b = Schedule(delay_s=0.01, jitter_s=0.002, loss=0.05, seed=5)
    c = Schedule(delay_s=0.01, jitter_s=0.002, loss=0.05, seed=6)
    decided = [a.decide(i * 0.001) for i in range(3000)]
    for i in range(3000):
        b.decide(i * 0.37)
        c.decide(i * 0.001)
    log = a.decisions()
    assert log["decided"] == 3000
    assert log["drops"] == [i for i, d in enumerate(decided) if d is None][:200]
    assert len(log["drawn_us"]) == 200 and all(8000 <= d <= 12000 for d in log["drawn_us"])
    assert b.decisions() == log
    assert c.decisions()["drops"] != log["drops"]
    assert c.decisions()["drawn_us"] != log["drawn_us"]


@pytest.mark.parametrize(
    "kwargs", [{"delay_s": -1}, {"loss": 1.5}, {"correlation": 2.0}, {"jitter_s": -0.1}]
)
def test_schedule_refuses_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        Schedule(**kwargs)


class FakePacket:
    def __init__(self, log: list[tuple[str, int]], n: int) -> None:
        self.log, self.n = log, n

    def accept(self) -> None:
        self.log.append(("accept", self.n))

    def drop(self) -> None:
        self.log.append(("drop", self.n))


def test_engine_holds_until_the_deadline_then_releases_in_order():
    now = [0.0]
    engine = Engine(Schedule(delay_s=0.01), clock=lambda: now[0])
    log: list[tuple[str, int]] = []
    for n in range(3):
        now[0] = n * 0.001
        engine.on_packet(FakePacket(log, n))
    now[0] = 0.0105
    engine.release_due()
    assert log == [("accept", 0)]
    now[0] = 0.05
    engine.release_due()
    assert log == [("accept", 0), ("accept", 1), ("accept", 2)]
    assert engine.stats.summary()["released"] == 3


def test_engine_drops_lost_packets_and_releases_everything_when_stopped():
    engine = Engine(Schedule(delay_s=10.0, loss=0.5, seed=6), clock=lambda: 0.0)
    log: list[tuple[str, int]] = []
    for n in range(100):
        engine.on_packet(FakePacket(log, n))
    dropped = sum(1 for verdict, _ in log if verdict == "drop")
    assert 20 < dropped < 80 and engine.stats.dropped == dropped
    engine.release_all()
    assert len(log) == 100 and engine.held == []


def test_engine_logs_the_delay_it_drew_and_the_time_it_held_each_packet():
    now = [0.0]
    engine = Engine(Schedule(delay_s=0.01), clock=lambda: now[0])
    log: list[tuple[str, int]] = []
    for n in range(4):
        now[0] = n * 0.001
        engine.on_packet(FakePacket(log, n))
    now[0] = 0.0132  # packets 0..3 were due at 10..13 ms: 3.2, 2.2, 1.2, 0.2 ms late
    engine.release_due()
    stats = engine.stats
    assert stats.drawn_us == pytest.approx([10_000.0] * 4)
    assert stats.held_us == pytest.approx([13_200.0, 12_200.0, 11_200.0, 10_200.0])
    summary = stats.summary()
    assert summary["drawn_us_mean"] == pytest.approx(10_000.0)
    assert summary["drawn_us_std"] == 0.0
    assert summary["held_us_p50"] == pytest.approx(12_200.0)
    assert summary["held_us_mean"] == pytest.approx(11_700.0)
    assert summary["held_us_std"] == pytest.approx(1291.0, abs=0.1)


def test_engine_summary_without_packets_has_no_figures():
    summary = Engine(Schedule()).stats.summary()
    assert summary["held_us_p50"] is None and summary["held_us_std"] is None
    assert summary["drawn_us_mean"] is None


def test_engine_never_sleeps_long_enough_for_select_slack_to_pass_its_spin():
    from echolab_fault_engine.engine import IDLE_WAIT_S, MAX_WAIT_S

    now = [0.0]
    engine = Engine(Schedule(delay_s=0.5), spin_s=0.0002, clock=lambda: now[0])
    assert engine.next_wait() == IDLE_WAIT_S
    engine.on_packet(FakePacket([], 0))
    assert engine.next_wait() == MAX_WAIT_S
    for at in (0.46, 0.49, 0.4997):
        now[0] = at
        wait = engine.next_wait()
        # select's slack is 0.1 % of its timeout: even if the kernel takes all of it, the
        # engine wakes the spin before the deadline, and no earlier
        assert at + wait * 1.001 + engine.spin.s == pytest.approx(0.5, abs=1e-12)
    now[0] = 0.4999
    assert engine.next_wait() <= 0  # within the spin: poll, do not sleep


def test_loop_polls_through_the_spin_and_releases_at_the_deadline():
    now = [0.0]

    def clock() -> float:  # every read takes a microsecond
        now[0] += 1e-6
        return now[0]

    log: list[tuple[str, int]] = []

    class Queue:
        polls = 0

        def run(self, block: bool) -> None:
            assert block is False
            self.polls += 1
            if log:  # released, and the loop went back to select: done
                raise Stop

    engine = Engine(Schedule(delay_s=0.0001), spin_s=0.0002, clock=clock)
    engine.on_packet(FakePacket(log, 0))  # due in 100 us, within the 200 us spin: no sleep
    queue = Queue()
    here, there = socket.socketpair()
    with here, there:
        there.send(b"x")  # readable: the select after the release returns at once
        with pytest.raises(Stop):
            engine.loop(queue, here.fileno())
    assert log == [("accept", 0)]
    assert 0.0 <= engine.stats.late_us[0] <= 3.0  # released within a round of its deadline
    assert 40 < queue.polls < 110  # polled (about one read per clock read) until then


def test_spin_learns_a_high_quantile_of_how_late_select_wakes():
    spin = Spin(0.0002, quantile=0.98, margin_s=5e-6, window=100, every=10, warmup=20)
    assert spin.s == 0.0002  # until it knows better: the longest
    for n in range(19):
        spin.record(30e-6 if n % 10 else 1e-6)
    assert spin.s == 0.0002  # no estimate before the warm-up
    spin.record(30e-6)
    assert spin.s == pytest.approx(35e-6)  # 98th percentile (30 us) + margin
    for _ in range(100):
        spin.record(20e-6)
    assert spin.s == pytest.approx(25e-6)  # the window forgot the old samples
    for n in range(100):  # 5 % of wakes 150 us late: the spin covers them
        spin.record(150e-6 if n % 20 == 0 else 20e-6)
    assert spin.s == pytest.approx(155e-6)
    for _ in range(100):
        spin.record(1e-3)  # a busy host: capped at the longest
    assert spin.s == 0.0002
    for _ in range(100):
        spin.record(-2e-6)  # woke before the slack ran out: at least the shortest
    assert spin.s == spin.shortest_s


def test_spin_waits_leave_room_for_the_select_slack_and_can_be_fixed():
    spin = Spin(0.0002, adaptive=False)
    for _ in range(1000):
        spin.record(1e-6)
    assert spin.s == 0.0002  # fixed: the old behaviour
    assert spin.wait(0.0102) * 1.001 == pytest.approx(0.01)
    assert spin.wait(0.0001) < 0
    assert Spin(0.0).wait(0.0) == 0.0  # no spin: sleep right up to the deadline
    with pytest.raises(ValueError):
        Spin(0.0002, quantile=0.0)


def test_engine_feeds_select_wake_ups_to_the_spin_and_reports_them():
    engine = Engine(Schedule(delay_s=0.001), clock=lambda: 0.0)
    for _ in range(64):
        engine.woke(0.01, 0.01 * 0.001 + 40e-6)  # 40 us late beyond the 10 us slack
    summary = engine.summary()
    assert summary["wakes"] == 64
    assert summary["wake_late_us_p50"] == pytest.approx(40.0)
    assert summary["spin_us"] == pytest.approx(55.0)  # the 99th percentile + 15 us
    fixed = Engine(Schedule(delay_s=0.001), adaptive_spin=False, clock=lambda: 0.0)
    for _ in range(64):
        fixed.woke(0.01, 50e-6)
    assert fixed.summary()["spin_us"] == 200.0 and fixed.summary()["wakes"] == 64


def _delays(distribution: str, delay: float = 0.05, jitter: float = 0.005, n: int = 20000):
    s = Schedule(
        delay_s=delay, jitter_s=jitter, seed=11, keep_order=False, distribution=distribution
    )
    return [s.decide(float(i)) - i for i in range(n)]


def test_normal_jitter_is_the_standard_deviation():
    delays = _delays("normal")
    assert statistics.mean(delays) == pytest.approx(0.05, abs=0.03 * 0.005)
    assert statistics.stdev(delays) == pytest.approx(0.005, rel=0.03)
    assert _delays("normal", n=100) == delays[:100]  # seeded


@pytest.mark.parametrize("distribution", ["pareto", "paretonormal"])
def test_pareto_is_right_skewed_and_never_negative(distribution):
    delays = _delays(distribution, delay=0.005, jitter=0.005)
    assert min(delays) >= 0
    mean, median = statistics.mean(delays), statistics.median(delays)
    assert mean > median
    assert max(delays) - median > 2 * (median - min(delays))
    third = statistics.mean((d - mean) ** 3 for d in delays)
    assert third > 0
    assert mean == pytest.approx(0.005, abs=0.1 * 0.005)  # centred on delay (cap: -3 %)


def test_pareto_follows_netems_table():
    # pareto.c: t = 4/3 * (u ** (-1/3) - 1.5) for the table's quantile (1 - u), capped at 4
    assert spread("pareto", 0.0) == pytest.approx(-2 / 3)
    assert spread("pareto", 1 - 1 / 8) == pytest.approx(4 / 3 * (2 - 1.5))
    assert spread("pareto", 1.0 - 1e-15) == pytest.approx(32767 / 8192)
    assert spread("normal", 0.5) == pytest.approx(0.0)
    assert spread("normal", 0.0) == pytest.approx(-32767 / 8192)
    assert spread("uniform", 0.75) == pytest.approx(0.5)
    assert spread("paretonormal", 0.5) == pytest.approx(3 * spread("pareto", 0.5) / 4)


def test_normal_delay_is_clamped_at_zero():
    s = Schedule(delay_s=0.001, jitter_s=0.01, seed=2, keep_order=False, distribution="normal")
    assert min(s.decide(float(i)) - i for i in range(2000)) >= 0


def test_distribution_changes_at_run_time_and_bad_ones_are_refused():
    s = Schedule(delay_s=0.01, jitter_s=0.001)
    s.update(distribution="pareto")
    assert s.params()["distribution"] == "pareto"
    with pytest.raises(ValueError, match="distribution"):
        s.update(distribution="exponential", delay_s=0.5)
    assert s.params()["distribution"] == "pareto" and s.delay_s == 0.01  # all or none
    with pytest.raises(ValueError, match="distribution"):
        Schedule(distribution="gamma")
    engine = Engine(Schedule(delay_s=0.01, jitter_s=0.001))
    answer = engine.control({"op": "set", "distribution": "normal", "jitter_us": 2000})
    assert answer["params"]["distribution"] == "normal"


# -- run-time changes (the control socket's handler, without the socket) -----------------------


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
    assert engine.control({"op": "status"})["note"] == {"x": 1}  # kept for every status
    with pytest.raises(ValueError, match="unknown op 'explode'"):
        engine.control({"op": "explode"})
    with pytest.raises(ValueError, match="note"):
        engine.control({"op": "note", "note": [1, 2]})


def test_idle_engine_keeps_the_note_and_refuses_set():
    idle = Idle()
    assert idle.control({"op": "status"}) == {"engine": "idle", "note": {}}
    assert idle.control({"op": "note", "note": {"kind": "netem"}})["note"] == {"kind": "netem"}
    assert idle.control({"op": "status"})["note"] == {"kind": "netem"}
    with pytest.raises(ValueError, match="unknown op 'set'"):
        idle.control({"op": "set", "delay_us": 1})


# -- the compiled loop's Python side (the loop itself runs in tests/e2e/test_engine_loop.py) -----


class FakeCompiled:
    """What ``echolab_fastloop.Loop`` does with its callbacks, without a queue: decides a batch,
    reports wake-ups, serves the control socket, then stops as SIGTERM would."""

    def __init__(self, arrivals: list[float], lates: list[float]) -> None:
        self.arrivals, self.lates = arrivals, lates
        self.decided: list[float | None] = []
        self.spins: list[float] = []
        self.fixed: list[tuple[float | None, float]] = []
        self.last = float("-inf")

    def set_fixed(self, delay_s: float | None, last_release: float) -> None:
        self.fixed.append((delay_s, last_release))

    def last_release(self) -> float:
        return self.last

    def run(self, on_batch, on_wakes, control_fd=-1, serve=None) -> None:
        self.decided = list(on_batch(self.arrivals))
        self.spins.append(on_wakes(self.lates))
        if serve is not None:
            serve()
        raise Stop

    def drain(self) -> dict[str, object]:
        late = array("d", [5.0, 15.0, 25.0]).tobytes()
        return {
            "seen": 4, "dropped": 1, "released": 3, "stamped": 0, "held": 0,
            "verdict_errors": 0, "enobufs": 2, "spin_s": 0.0,
            "samples": {"late_us": late, "drawn_us": b"", "held_us": b"",
                        "recv_lag_us": b"", "wake_late_us": b""},
        }  # fmt: skip


def test_compiled_loop_decides_with_the_schedule_and_learns_the_spin():
    engine = Engine(Schedule(delay_s=0.01, loss=0.3, seed=5))
    reference = Schedule(delay_s=0.01, loss=0.3, seed=5)
    arrivals = [i * 0.001 for i in range(200)]
    fake = FakeCompiled(arrivals, [30e-6] * 64)
    served: list[bool] = []

    class Control:
        def fileno(self) -> int:
            return 99

        def serve(self) -> None:
            served.append(True)

    with pytest.raises(Stop):
        engine.run_compiled(fake, Control())
    # the same seed, the same decisions, packet for packet, as the Python loop would take
    assert fake.decided == [reference.decide(a) for a in arrivals]
    assert any(d is None for d in fake.decided)
    assert fake.spins == [pytest.approx(45e-6)]  # 99th percentile (30 us) + 15 us
    assert served == [True]


def test_compiled_loop_counters_and_samples_reach_the_summary():
    engine = Engine(Schedule(delay_s=0.01))
    engine.compiled = FakeCompiled([], [])
    summary = engine.summary()
    assert (summary["seen"], summary["dropped"], summary["released"]) == (4, 1, 3)
    assert summary["late_us_p50"] == 15.0 and summary["late_us_max"] == 25.0
    assert summary["loop"] == "compiled" and summary["queue_overflows"] == 2
    assert len(engine.stats.late_us) == 3
    engine.summary()  # each status appends what the loop hands over (only new samples)
    assert len(engine.stats.late_us) == 6


def test_compiled_loop_decides_alone_only_while_the_schedule_draws_nothing():
    assert Schedule(delay_s=0.01).fixed() == 0.01
    assert Schedule(delay_s=0.01, loss=0.1).fixed() is None
    assert Schedule(delay_s=0.01, jitter_s=0.001).fixed() is None
    engine = Engine(Schedule(delay_s=0.05))
    fake = FakeCompiled([], [])
    with pytest.raises(Stop):
        engine.run_compiled(fake)
    assert fake.fixed == [(0.05, float("-inf"))]  # the loop applies 50 ms itself
    fake.last = 7.05  # it released up to there meanwhile
    engine.control({"op": "set", "jitter_us": 1000})
    assert fake.fixed[-1] == (None, 7.05)  # jitter draws: Python decides again, from 7.05
    assert engine.schedule.decide(6.9) == 7.05  # drawn ~6.95: held to the loop's last
    engine.control({"op": "set", "jitter_us": 0, "delay_us": 1000})
    assert fake.fixed[-1] == (0.001, 7.05)


def test_set_realtime_says_whether_the_kernel_granted_sched_fifo() -> None:
    """In a child process (the test runner must not become real-time): ``set_realtime``'s
    answer agrees with the policy the kernel then reports, granted or not."""
    import os
    import subprocess
    import sys

    script = (
        "import os; from echolab_fault_engine.tuning import RT_PRIORITY, set_realtime; "
        "r = set_realtime(); print(r is None, os.sched_getscheduler(0) == os.SCHED_FIFO, "
        "os.sched_getparam(0).sched_priority == RT_PRIORITY, r)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    granted, fifo, priority, reason = out.stdout.split(maxsplit=3)
    assert granted == fifo, out.stdout
    assert priority == granted or granted == "False", out.stdout
    assert granted == "True" or reason.strip() not in ("", "None"), out.stdout
