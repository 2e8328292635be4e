"""The engine: NFQUEUE in, verdicts out at the time ``Schedule`` decided.

Two packet loops share the schedule, the counters and the control socket. The default moves
packets in C (``compiled``, ``fastloop/fastloop.c``). Measured (``make fidelity``'s load row,
~5,000 packets/s through a 1 ms delay), the Python loop cost ~95 us of CPU per packet, most of
it its spin of non-blocking reads before each deadline, then a Python callback, object and
verdict syscall per packet; the compiled loop costs ~30-40 us, of which user space is ~10-15 %.
Its own counters (``calls``, ``send_us``, ``thread``) say where the rest goes: 20-26 us per
packet inside the verdict sends, where the kernel carries each accepted packet on (output path,
bridge, conntrack, the receiver's TCP: all charged to whoever gives the verdict, as this kernel
has no IRQ time accounting), and about one sleep and wake-up per packet in a loop that does not
spin. Python still decides every packet that draws from the RNG (``on_batch``), so one seed
gives the same decisions in both; a plain delay the C loop applies itself (``Schedule.fixed``).
The Python loop (``--loop python``) is the reference.

The Python loop is one thread, no hand-off: ``select`` on the queue's netlink socket until
shortly before the next deadline (the *spin*), then poll the socket without blocking until the
deadline has come, so a packet leaves within a few microseconds of its deadline instead of the
0.1-0.5 ms a thread woken by a timer adds. The process's timer slack is set to 1 ns
(``PR_SET_TIMERSLACK``) so ``select`` itself wakes on time, and the spin is learned from how
late ``select`` really wakes on this host (``spin.py``): polling costs a core while it lasts,
and with packets 100 us apart some deadline is nearly always near, so a fixed 200 us spin cost
2/3 of a core at 7,500 packets/s. Held packets are released (not dropped) when the engine stops,
and the iptables rule uses ``--queue-bypass``, so traffic is never black-holed by a dead engine.

Parameters change at run time through the sidecars' control socket (``echolab_control``),
polled in the same ``select``: held packets keep their release times, the rules stay as they
are. Where the kernel stamps a packet (``get_timestamp()``), the engine records how long it
waited in the queue before the engine read it (``recv_lag_us``) and, with ``kernel_clock``,
counts the delay from that stamp rather than from the read.
"""

from __future__ import annotations

import heapq
import json
import select
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any, Protocol

from echolab_control import PATH, note_of, unknown

from echolab_fault_engine import compiled
from echolab_fault_engine.nfq import Packet, Queue, stamp_of
from echolab_fault_engine.schedule import Schedule
from echolab_fault_engine.spin import SELECT_SLACK, Spin
from echolab_fault_engine.stats import KEPT, Stats
from echolab_fault_engine.tuning import (
    RT_PRIORITY,
    SLICE_NS,
    set_realtime,
    set_slice,
    set_timer_slack,
    thread_cost,
)

# select() lets the kernel fire its timer up to 0.1 % of the timeout late (fs/select.c,
# select_estimate_accuracy: the process's timer slack is only a floor). Spin.wait shortens each
# timeout by that slack; waits are cut to this anyway.
MAX_WAIT_S = 0.05
IDLE_WAIT_S = 1.0  # nothing held: wake now and then anyway (the control socket wakes us too)


OPS = ("set", "note", "status")


class Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the loop from wherever it waits."""


class Served(Protocol):
    """The control socket as the loop sees it: something to ``select`` on and to serve."""

    def fileno(self) -> int: ...

    def serve(self) -> None: ...


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
        self.held: list[tuple[float, int, float, Packet]] = []  # (release, order, arrival, pkt)
        self.stats = Stats()
        self.note: dict[str, Any] = {}
        self._order = 0
        self.compiled: compiled.Loop | None = None  # the packet loop, when it is the C one
        self._counted: dict[str, Any] = {}  # what only the C loop counts
        self.scheduling: dict[str, Any] = {}  # what the kernel granted the loop's thread

    def on_packet(self, packet: Packet) -> None:
        now = self.clock()
        self.stats.seen += 1
        arrival = now
        stamp = stamp_of(packet)
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
            self._hand_back()
            us = {k: request.get(k) for k in ("delay_us", "jitter_us")}
            self.schedule.update(
                delay_s=None if us["delay_us"] is None else us["delay_us"] / 1e6,
                jitter_s=None if us["jitter_us"] is None else us["jitter_us"] / 1e6,
                correlation=request.get("correlation"),
                loss=request.get("loss"),
                distribution=request.get("distribution"),
            )
            self._hand_over()
        elif op == "note":
            self.note = note_of(request)
        elif op != "status":
            raise unknown(op, OPS)
        return {"params": self.schedule.params(), "note": self.note, **self.summary()}

    def summary(self) -> dict[str, Any]:
        if self.compiled is not None:
            self.absorb(self.compiled.drain())
        return {
            **self.stats.summary(),
            "spin_us": round(self.spin.s * 1e6, 1),
            **self._counted,
            "decisions": self.schedule.decisions(),
            "thread": {**self.scheduling, **thread_cost()},
        }

    def absorb(self, drained: dict[str, Any]) -> None:
        """The compiled loop's counters, and the samples it took since the last drain, into
        ``stats``: one summary whichever loop moved the packets."""
        stats = self.stats
        stats.seen, stats.dropped = drained["seen"], drained["dropped"]
        stats.released, stats.stamped = drained["released"], drained["stamped"]
        for name, data in drained["samples"].items():
            getattr(stats, name).frombytes(data)
        self._counted = {
            "loop": "compiled",
            "queue_overflows": drained["enobufs"],
            "verdict_errors": drained["verdict_errors"],
            "calls": drained.get("calls", {}),
        }

    def _hand_back(self) -> None:
        """The compiled loop's latest release, into the schedule (it may have decided alone)."""
        if self.compiled is not None:
            last = self.compiled.last_release()
            self.schedule.last_release = max(self.schedule.last_release, last)

    def _hand_over(self) -> None:
        """Tell the compiled loop whether it may decide alone (``Schedule.fixed``), from where."""
        if self.compiled is not None:
            self.compiled.set_fixed(self.schedule.fixed(), self.schedule.last_release)

    def run_compiled(self, loop: compiled.Loop, control: Served | None = None) -> None:
        """The packet loop in C (``compiled``): Python decides each batch of packets read,
        learns the spin from the timer's wake-ups and answers the control socket."""
        self.compiled = loop
        self._hand_over()
        decide, spin = self.schedule.decide, self.spin

        def on_batch(arrivals: list[float]) -> list[float | None]:
            return [decide(arrival) for arrival in arrivals]

        def on_wakes(lates: list[float]) -> float:
            for late in lates:
                spin.record(late)
            return spin.s

        if control is None:
            loop.run(on_batch, on_wakes)
        else:
            loop.run(on_batch, on_wakes, control.fileno(), control.serve)

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

    def loop(self, queue: Queue, fd: int, control: Served | None = None) -> None:
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
    control_path: str = PATH,
    loop: str = "compiled",
    realtime: bool = True,
) -> int:
    from echolab_control import Control

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    slack = set_timer_slack(1)
    short_slice = set_slice()
    refused = set_realtime() if realtime else "not asked"
    engine = Engine(schedule, spin_s=spin_s, adaptive_spin=adaptive_spin, kernel_clock=kernel_clock)
    engine.scheduling = {
        "timer_slack_1ns": slack,
        "slice_us": SLICE_NS / 1000 if short_slice else None,
        "realtime": {"priority": RT_PRIORITY} if refused is None else {"refused": refused},
    }
    control = Control(engine.control, control_path)
    try:
        moving, unbind = _bind(engine, loop, queue_num, max_len, control)
    except BaseException:
        control.close()
        raise
    try:
        say(
            {
                "event": "ready",
                "queue": queue_num,
                "loop": loop,
                **engine.scheduling,
                "control": control.path,
                **vars_of(schedule),
            }
        )
        moving()
    except Stop:
        pass
    finally:
        unbind()
        control.close()
        say(engine.summary())
    return 0


def _bind(
    engine: Engine, loop: str, queue_num: int, max_len: int, control: Served
) -> tuple[Callable[[], None], Callable[[], None]]:
    """Bind the queue with the chosen loop: (run the loop, release what it holds and unbind)."""
    if loop == "compiled":
        fast = compiled.bind(
            queue_num,
            max_len=max_len,
            keep_order=engine.schedule.keep_order,
            kernel_clock=engine.kernel_clock,
            spin_s=engine.spin.s,
        )
        return partial(engine.run_compiled, fast, control), fast.close
    from echolab_fault_engine.nfq import bind

    queue = bind(queue_num, engine.on_packet, max_len=max_len)

    def unbind() -> None:
        engine.release_all()
        queue.unbind()

    return partial(engine.loop, queue, queue.get_fd(), control), unbind


def vars_of(schedule: Schedule) -> dict[str, Any]:
    return {
        k: v for k, v in vars(schedule).items() if not k.startswith("_") and k != "last_release"
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python3 -m echolab_fault_engine")
