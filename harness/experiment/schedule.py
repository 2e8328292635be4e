"""Faults over a run's time, applied on a lab as declared, recorded as they really happened.

A ``Timeline`` notes each fault's ``applied`` and ``removed`` with the wall-clock time the
action began and ended (``t_s``/``done_s``, seconds after the clients were let go: an action
takes time, a Docker network disconnect some tens of milliseconds), what it applied, on
which backend, and on removal the engine's own counters (its fidelity). A ``Scheduler`` runs
the declared events in a thread; an event that fails is recorded with its error and the run
goes on (the failure is in the run's record, not hidden).

A scheduled impair is *staged* before the clients are let go (``impair.stage``: its sidecar
started, its engine ready, the traffic untouched), so at its time only the plan's commands
run: tens of milliseconds, not a container start, which on a loaded host took a second and
left a one-second fault with no time in force. One that cannot be staged (a backend that
refuses to stack it beside a fault staged earlier, no free slot) is applied from cold at its
time, as is every impair after a ``restart`` (the restarted server's network namespace is
new); its ``applied`` entry says which (``staged``).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from typing import Any

from harness.experiment.declare import Event
from harness.experiment.expand import event_words
from harness.faults import impair as impairs
from harness.faults.impair import Applied
from harness.faults.model import Impairment
from harness.lab import Lab
from harness.swarm.lab import SwarmLab

log = logging.getLogger(__name__)


class Timeline:
    """What happened to a run's network, in order; thread-safe."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.t0: float | None = None  # when the clients were let go (wall clock)

    def record(self, began: float, **entry: Any) -> dict[str, Any]:
        found = {"wall": began, "done_wall": time.time(), **entry}
        with self._lock:
            self._entries.append(found)
        return found

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, with ``t_s``/``done_s`` relative to ``t0`` (negative: before it)."""
        t0 = self.t0 if self.t0 is not None else 0.0
        with self._lock:
            listed = list(self._entries)
        return [
            {**e, "t_s": round(e["wall"] - t0, 4), "done_s": round(e["done_wall"] - t0, 4)}
            for e in sorted(listed, key=lambda e: float(e["wall"]))
        ]


class Held:
    """One fault the schedule put in force, until healed."""

    def __init__(self, fault: str, kind: str, target: str, stack: ExitStack) -> None:
        self.fault, self.kind, self.target, self.stack = fault, kind, target, stack
        self.applied: Applied | None = None


class Scheduler:
    """Applies ``events`` to ``lab`` at their times after ``start(t0)``."""

    def __init__(
        self,
        lab: Lab,
        events: tuple[Event, ...],
        *,
        seed: int,
        backend: str | None,
        timeline: Timeline,
    ) -> None:
        self.lab, self.events, self.seed, self.backend = lab, events, seed, backend
        self.timeline = timeline
        self.held: list[Held] = []
        self.removed: list[Held] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._staged: dict[str, Applied] = {}

    def stage(self) -> None:
        """Stage every scheduled impair that can be (see the module's docstring); the others
        are applied from cold at their time. A Swarm lab stages nothing: its node's agent
        starts a sidecar and applies its fault in one request."""
        if isinstance(self.lab, SwarmLab):
            return
        for number, event in enumerate(self.events):
            if event.action == "restart":  # a restarted server has a new network namespace:
                break  # a sidecar staged in the old one would impair nothing
            if event.action != "impair":
                continue
            words = event_words(event, self.seed)
            try:
                self._staged[f"s{number}"] = impairs.stage(
                    self.lab, event.target, Impairment.parse(**words), backend=self.backend
                )
            except Exception as error:
                log.info("s%d not staged, applied from cold at its time: %s", number, error)

    def start(self, t0: float) -> None:
        if not self.events:
            return
        self._thread = threading.Thread(
            target=self._run, args=(t0,), name="experiment-schedule", daemon=True
        )
        self._thread.start()

    def in_force(self) -> list[str]:
        """The faults in force now, one short line each (for the live display)."""
        with self._lock:
            return [f"{h.kind} {h.target}" for h in self.held]

    def _run(self, t0: float) -> None:
        for number, event in enumerate(self.events):
            if self._stop.wait(max(0.0, t0 + event.at - time.time())):
                self._skipped(number)
                return
            self.apply(event, f"s{number}")

    def _skipped(self, first: int) -> None:
        """The events the run ended before (the clients were done): recorded as such, so a
        timeline never reads as if they had been applied or forgotten."""
        for number in range(first, len(self.events)):
            event = self.events[number]
            self.timeline.record(
                time.time(), fault=f"s{number}", action=event.action, target=event.target,
                planned_s=event.at, source="schedule", event="skipped",
                reason="the clients had finished before it was reached",
            )  # fmt: skip

    def apply(self, event: Event, fault: str) -> None:
        began = time.time()
        common = {"fault": fault, "action": event.action, "target": event.target,
                  "planned_s": event.at, "source": "schedule"}  # fmt: skip
        try:
            if event.action == "impair":
                stack = ExitStack()
                held = Held(fault, "impair", event.target, stack)
                staged = self._staged.pop(fault, None)
                if staged is not None:
                    stack.callback(staged.remove)
                    staged.engage()
                    applied = staged
                else:
                    applied = stack.enter_context(
                        self.lab.impair(
                            event.target, backend=self.backend, **event_words(event, self.seed)
                        )
                    )
                held.applied = applied
                self._hold(held)
                self.timeline.record(
                    began, **common, event="applied", params=dict(event.params),
                    backend=applied.backend.name, mechanism=applied.mechanism,
                    staged=staged is not None,
                )  # fmt: skip
            elif event.action == "partition":
                cut = self.lab.partition(event.target)
                stack = ExitStack()
                self._hold(Held(fault, "partition", event.target, stack))
                self.timeline.record(began, **common, event="applied", containers=cut)
            elif event.action == "heal":
                self.heal(event.target, began)
            else:  # restart
                self.lab.restart_server()
                self.timeline.record(began, **common, event="applied")
        except Exception as error:
            log.warning("scheduled %s on %s failed: %s", event.action, event.target, error)
            self.timeline.record(began, **common, event="failed", error=str(error))

    def _hold(self, held: Held) -> None:
        with self._lock:
            self.held.append(held)

    def heal(self, target: str, began: float | None = None) -> None:
        """Remove what the schedule put on ``target`` (all of it for ``"all"``); a partition's
        heal reconnects every container off the network (Docker's heal is lab-wide)."""
        with self._lock:
            chosen = [h for h in self.held if target in ("all", h.target)]
            self.held = [h for h in self.held if h not in chosen]
        for held in chosen:
            start = began if began is not None else time.time()
            entry: dict[str, Any] = {"fault": held.fault, "action": "heal", "target": held.target,
                                     "source": "schedule", "event": "removed"}  # fmt: skip
            try:
                if held.kind == "partition":
                    entry["containers"] = self.lab.heal()
                held.stack.close()
                if held.applied is not None:
                    entry["engine"] = held.applied.engine_stats()
            except Exception as error:
                entry.update(event="failed", error=str(error))
            self.timeline.record(start, **entry)
            self.removed.append(held)
            began = None

    def stop(self) -> None:
        """Stop applying events, then remove whatever is still in force (recorded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        self.heal("all")
        for fault in list(self._staged):  # staged, never reached
            self._staged.pop(fault).remove()
