"""The packet loop: NFQUEUE in, verdicts out at the time ``Schedule`` decided.

One thread, no hand-off: ``select`` on the queue's netlink socket until shortly before the next
deadline (the *spin*), then poll the socket without blocking until the deadline has come, so a
packet leaves within a few microseconds of its deadline instead of the 0.1-0.5 ms a thread woken
by a timer adds. The process's timer slack is set to 1 ns (``PR_SET_TIMERSLACK``) so ``select``
itself wakes on time, and the spin is learned from how late ``select`` really wakes on this
host (``spin.py``): polling costs a core while it lasts, and with packets 100 us apart some
deadline is nearly always near, so a fixed 200 us spin cost 2/3 of a core at 7,500 packets/s.
Held packets are released (not dropped) when the engine stops, and the iptables rule uses
``--queue-bypass``, so traffic is never black-holed by a dead engine.

Parameters change at run time through the control socket (``control.py``), polled in the same
``select``: held packets keep their release times, the rules stay as they are. Where the kernel
stamps a packet (``get_timestamp()``), the engine records how long it waited in the queue before
the engine read it (``recv_lag_us``) and, with ``kernel_clock``, counts the delay from that stamp
rather than from the read.
"""

from __future__ import annotations

import ctypes
import heapq
import json
import select
import signal
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from echolab_fault_engine.schedule import Schedule
from echolab_fault_engine.spin import SELECT_SLACK, Spin

PR_SET_TIMERSLACK = 29
# select() lets the kernel fire its timer up to 0.1 % of the timeout late (fs/select.c,
# select_estimate_accuracy: the process's timer slack is only a floor), so a 500 ms wait woke
# ~0.4 ms late. Spin.wait shortens each timeout by that slack; waits are cut to this anyway.
MAX_WAIT_S = 0.05
IDLE_WAIT_S = 1.0  # nothing held: wake now and then anyway (the control socket wakes us too)


class Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the loop from wherever it waits."""


def set_timer_slack(nanoseconds: int = 1) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return round(mean, 1), None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return round(mean, 1), round(var**0.5, 1)


KEPT = 1_000_000  # per-packet samples kept for the summary: 8 MB per series at most


def _samples() -> array[float]:
    """A series of samples: C doubles, 8 bytes each. A list of floats takes ~40 (a pointer, a
    float object, the list's spare room): three series of a million, 120 MB, would not fit the
    sidecar's 128 MB, which a 10,000 packets/s fault reaches in under two minutes."""
    return array("d")


@dataclass
class Stats:
    seen: int = 0
    dropped: int = 0
    released: int = 0
    stamped: int = 0
    late_us: array[float] = field(default_factory=_samples)
    recv_lag_us: array[float] = field(default_factory=_samples)
    # Per released packet: the delay the schedule drew (``drawn``) and the time the engine
    # actually held it, from reading it off the queue to its verdict (``held``): the engine's
    # own log of the delay it applied, to compare with what a client observes.
    drawn_us: array[float] = field(default_factory=_samples)
    held_us: array[float] = field(default_factory=_samples)
    # Per select that ran to its timeout: how late it woke beyond timeout + slack (what the
    # spin has to cover, see spin.py).
    wake_late_us: array[float] = field(default_factory=_samples)

    def summary(self) -> dict[str, Any]:
        drawn, held = _mean_std(self.drawn_us), _mean_std(self.held_us)
        return {
            "event": "stats",
            "seen": self.seen,
            "dropped": self.dropped,
            "released": self.released,
            "held": self.seen - self.dropped - self.released,
            "late_us_p50": _pct(self.late_us, 0.5),
            "late_us_p99": _pct(self.late_us, 0.99),
            "late_us_max": round(max(self.late_us), 1) if self.late_us else None,
            "stamped": self.stamped,
            "recv_lag_us_p50": _pct(self.recv_lag_us, 0.5),
            "recv_lag_us_p99": _pct(self.recv_lag_us, 0.99),
            "drawn_us_mean": drawn[0],
            "drawn_us_std": drawn[1],
            "held_us_p50": _pct(self.held_us, 0.5),
            "held_us_p90": _pct(self.held_us, 0.9),
            "held_us_mean": held[0],
            "held_us_std": held[1],
            "wakes": len(self.wake_late_us),
            "wake_late_us_p50": _pct(self.wake_late_us, 0.5),
            "wake_late_us_p99": _pct(self.wake_late_us, 0.99),
        }


class Engine:
    def __init__(
        self,
        schedule: Schedule,
        *,
        spin_s: float = 0.0002,
        adaptive_spin: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        kernel_clock: bool = False,
    ) -> None:
        self.schedule = schedule
        self.spin = Spin(spin_s, adaptive=adaptive_spin)  # spin_s: the longest spin
        self.clock = clock
        self.wall = wall
        self.kernel_clock = kernel_clock
        self.held: list[tuple[float, int, float, Any]] = []  # (release, order, arrival, pkt)
        self.stats = Stats()
        self.note: dict[str, Any] = {}
        self._order = 0

    def on_packet(self, packet: Any) -> None:
        now = self.clock()
        self.stats.seen += 1
        arrival = now
        stamp = packet.get_timestamp() if hasattr(packet, "get_timestamp") else 0.0
        if stamp > 0:
            lag = self.wall() - stamp
            self.stats.stamped += 1
            if len(self.stats.recv_lag_us) < 1_000_000:
                self.stats.recv_lag_us.append(lag * 1e6)
            if self.kernel_clock and 0 <= lag < 0.01:  # a sane stamp: count from it
                arrival = now - lag
        release = self.schedule.decide(arrival)
        if release is None:
            self.stats.dropped += 1
            packet.drop()
            return
        self._order += 1
        heapq.heappush(self.held, (release, self._order, now, packet))

    def release_due(self) -> None:
        held, stats = self.held, self.stats
        while held and held[0][0] <= (now := self.clock()):
            deadline, _, read_at, packet = heapq.heappop(held)
            packet.accept()
            stats.released += 1
            if len(stats.late_us) < KEPT:
                stats.late_us.append((now - deadline) * 1e6)
                stats.drawn_us.append((deadline - read_at) * 1e6)
                stats.held_us.append((now - read_at) * 1e6)

    def release_all(self) -> None:
        while self.held:
            heapq.heappop(self.held)[3].accept()
            self.stats.released += 1

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control request: ``set`` new parameters, ``note`` a description, ``status``."""
        op = request.get("op")
        if op == "set":
            us = {k: request.get(k) for k in ("delay_us", "jitter_us")}
            self.schedule.update(
                delay_s=None if us["delay_us"] is None else us["delay_us"] / 1e6,
                jitter_s=None if us["jitter_us"] is None else us["jitter_us"] / 1e6,
                correlation=request.get("correlation"),
                loss=request.get("loss"),
                distribution=request.get("distribution"),
            )
        elif op == "note":
            self.note = dict(request["note"])
        elif op != "status":
            raise ValueError(f"unknown op {op!r}")
        return {"params": self.schedule.params(), "note": self.note, **self.summary()}

    def summary(self) -> dict[str, Any]:
        return {**self.stats.summary(), "spin_us": round(self.spin.s * 1e6, 1)}

    def next_wait(self) -> float:
        """How long ``select`` may sleep: until the spin before the next deadline, its slack
        included, at most ``MAX_WAIT_S`` (<= 0: spin)."""
        if not self.held:
            return IDLE_WAIT_S
        return min(MAX_WAIT_S, self.spin.wait(self.held[0][0] - self.clock()))

    def woke(self, wait: float, late_s: float) -> None:
        """A ``select`` of ``wait`` s ran to its timeout and returned ``late_s`` after it:
        a sample of this host's wake-up latency, for the spin (``spin.py``)."""
        late = late_s - wait * SELECT_SLACK
        self.spin.record(late)
        if len(self.stats.wake_late_us) < KEPT:
            self.stats.wake_late_us.append(late * 1e6)

    def loop(self, queue: Any, fd: int, control: Any = None) -> None:
        """Release what is due, sleep in ``select`` until the spin before the next deadline,
        then poll until it: one clock read and one non-blocking read of the queue a round, so
        a packet leaves within a few tenths of a microsecond of its deadline. The heap's head
        is read every round: a packet read meanwhile may be due sooner (``--reorder``)."""
        watched = [fd] if control is None else [fd, control.fileno()]
        clock, held = self.clock, self.held
        while True:
            self.release_due()
            wait = self.next_wait()
            if wait > 0:
                slept = clock()
                readable, _, _ = select.select(watched, [], [], wait)
                if not readable:
                    if held:  # a wait for a deadline, not the idle one
                        self.woke(wait, clock() - slept - wait)
                    continue
                if fd in readable:
                    queue.run(block=False)
                if control is not None and len(readable) > (fd in readable):
                    control.serve()
            else:  # the spin: take new packets while the deadline nears
                while clock() < held[0][0]:
                    queue.run(block=False)


def say(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def run(
    schedule: Schedule,
    queue_num: int,
    max_len: int = 10000,
    spin_s: float = 0.0002,
    kernel_clock: bool = False,
    adaptive_spin: bool = True,
) -> int:
    from netfilterqueue import COPY_META, NetfilterQueue

    from echolab_fault_engine.control import Control

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    slack = set_timer_slack(1)
    engine = Engine(schedule, spin_s=spin_s, adaptive_spin=adaptive_spin, kernel_clock=kernel_clock)
    control = Control(engine.control)
    queue = NetfilterQueue()
    queue.bind(queue_num, engine.on_packet, max_len=max_len, mode=COPY_META)
    try:
        say({"event": "ready", "queue": queue_num, "timer_slack_1ns": slack, **vars_of(schedule)})
        engine.loop(queue, queue.get_fd(), control)
    except Stop:
        pass
    finally:
        engine.release_all()
        queue.unbind()
        control.close()
        say(engine.summary())
    return 0


def vars_of(schedule: Schedule) -> dict[str, Any]:
    return {k: v for k, v in vars(schedule).items() if not k.startswith("_")}


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python3 -m echolab_fault_engine")
