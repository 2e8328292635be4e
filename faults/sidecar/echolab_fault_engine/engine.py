"""The packet loop: NFQUEUE in, verdicts out at the time ``Schedule`` decided.

One thread, no hand-off: ``select`` on the queue's netlink socket until shortly before the next
deadline (``spin_s``), then poll the socket without blocking until the deadline has come, so a
packet leaves within a few microseconds of its deadline instead of the 0.1-0.5 ms a thread woken
by a timer adds. The process's timer slack is set to 1 ns (``PR_SET_TIMERSLACK``) so ``select``
itself wakes on time. Held packets are released (not dropped) when the engine stops, and the
iptables rule uses ``--queue-bypass``, so traffic is never black-holed by a dead engine.
"""

from __future__ import annotations

import ctypes
import heapq
import json
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from echolab_fault_engine.schedule import Schedule

PR_SET_TIMERSLACK = 29


class Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the loop from wherever it waits."""


def set_timer_slack(nanoseconds: int = 1) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass
class Stats:
    seen: int = 0
    dropped: int = 0
    released: int = 0
    late_us: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        late = sorted(self.late_us)

        def pct(q: float) -> float | None:
            return round(late[min(len(late) - 1, int(q * len(late)))], 1) if late else None

        return {
            "event": "stats",
            "seen": self.seen,
            "dropped": self.dropped,
            "released": self.released,
            "late_us_p50": pct(0.5),
            "late_us_p99": pct(0.99),
            "late_us_max": round(late[-1], 1) if late else None,
        }


class Engine:
    def __init__(
        self,
        schedule: Schedule,
        *,
        spin_s: float = 0.0002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schedule = schedule
        self.spin_s = spin_s
        self.clock = clock
        self.held: list[tuple[float, int, Any]] = []
        self.stats = Stats()
        self._order = 0

    def on_packet(self, packet: Any) -> None:
        now = self.clock()
        self.stats.seen += 1
        release = self.schedule.decide(now)
        if release is None:
            self.stats.dropped += 1
            packet.drop()
            return
        self._order += 1
        heapq.heappush(self.held, (release, self._order, packet))

    def release_due(self) -> None:
        held = self.held
        while held and held[0][0] <= (now := self.clock()):
            deadline, _, packet = heapq.heappop(held)
            packet.accept()
            self.stats.released += 1
            if len(self.stats.late_us) < 1_000_000:
                self.stats.late_us.append((now - deadline) * 1e6)

    def release_all(self) -> None:
        while self.held:
            heapq.heappop(self.held)[2].accept()
            self.stats.released += 1

    def loop(self, queue: Any, fd: int) -> None:
        while True:
            self.release_due()
            wait = self.held[0][0] - self.clock() - self.spin_s if self.held else 1.0
            if wait > 0:
                readable, _, _ = select.select([fd], [], [], wait)
                if readable:
                    queue.run(block=False)
            else:
                queue.run(block=False)  # spin: take new packets while the deadline nears


def say(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def run(schedule: Schedule, queue_num: int, max_len: int = 10000, spin_s: float = 0.0002) -> int:
    from netfilterqueue import COPY_META, NetfilterQueue

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    slack = set_timer_slack(1)
    engine = Engine(schedule, spin_s=spin_s)
    queue = NetfilterQueue()
    queue.bind(queue_num, engine.on_packet, max_len=max_len, mode=COPY_META)
    try:
        say({"event": "ready", "queue": queue_num, "timer_slack_1ns": slack, **vars_of(schedule)})
        engine.loop(queue, queue.get_fd())
    except Stop:
        pass
    finally:
        engine.release_all()
        queue.unbind()
        say(engine.stats.summary())
    return 0


def vars_of(schedule: Schedule) -> dict[str, Any]:
    return {k: v for k, v in vars(schedule).items() if not k.startswith("_")}


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python3 -m echolab_fault_engine")
