"""How long before a deadline the packet loop stops sleeping in ``select`` and polls: learned.

The loop sleeps in ``select`` until ``spin`` before the next deadline, then polls the queue
without blocking until the deadline (``engine.py``). Polling burns a core for as long as it
lasts, and at thousands of packets a second some deadline is nearly always near: the spin's
length *is* the engine's CPU cost. It only has to cover how late ``select`` wakes, which is:

- the kernel's timer slack for ``select``: 0.1 % of the timeout (``fs/select.c``,
  ``select_estimate_accuracy``; the process's slack, 1 ns here, is only a floor). This one is
  known in advance, so ``wait`` shortens the timeout by it rather than spinning through it;
- the wake-up latency: the timer interrupt, the CPU leaving its idle state, the scheduler
  running the engine. This one belongs to the host and its load. Measured on a 2-core VM, idle:
  ~22 us (p98 ~30 us) after waits under 1 ms, ~45 us (p98 ~60 us) after 3-10 ms; with the
  CPUs busy, a tail of 100-250 us.

So the loop reports how late each ``select`` that ran to its timeout woke (``record``), beyond
the timeout and its slack; every ``every`` samples the spin becomes a high ``quantile`` of the
last ``window`` ones plus ``margin_s``, within ``[shortest_s, longest_s]``. Until ``warmup``
samples have come, and with ``adaptive=False``, it is ``longest_s`` (the old fixed spin).
A wake later than the spin makes that packet late by the difference. Replaying wake-ups
recorded in the sidecar (10,000 packets/s, and one packet in flight at 1 and 10 ms) through
this estimator: at 0.99 + 15 us the spin averaged 80-140 us instead of 200, and 0.25-0.6 % of
the wakes came more than 20 us late, against 0.13-0.4 % with the fixed 200 us spin (wakes
later than 200 us, which no spin short of that covers); 0.98 + 5 us spun ~50 us but under load
missed by more than 20 us 0.7-0.8 % of the time. A host whose tail grows gets a longer spin
within ``every`` wakes.
"""

from __future__ import annotations

from array import array

SELECT_SLACK = 0.001  # of the timeout: the kernel may fire select's timer this much late


class Spin:
    """The spin now (``s``, seconds), learned from ``record``; ``wait`` turns it into a timeout."""

    def __init__(
        self,
        longest_s: float = 0.0002,
        *,
        adaptive: bool = True,
        shortest_s: float = 0.00002,
        quantile: float = 0.99,
        margin_s: float = 0.000015,
        window: int = 256,
        every: int = 32,
        warmup: int = 64,
    ) -> None:
        if longest_s < 0 or shortest_s < 0:
            raise ValueError("spin: a spin is >= 0")
        if not 0.0 < quantile <= 1.0:
            raise ValueError("spin: the quantile must be within (0, 1]")
        if window < 1 or every < 1:
            raise ValueError("spin: window and every are >= 1")
        self.longest_s = longest_s
        self.shortest_s = min(shortest_s, longest_s)  # --spin-us 0: never poll
        self.adaptive = adaptive
        self.quantile = quantile
        self.margin_s = margin_s
        self.every = every
        self.warmup = max(warmup, 1)
        self.s = longest_s  # the spin now
        self._late = array("d", [0.0]) * window  # a ring: the last ``window`` samples
        self._count = 0

    def wait(self, ahead_s: float) -> float:
        """The ``select`` timeout for a deadline ``ahead_s`` away: even if the kernel uses its
        whole slack, it wakes ``s`` before the deadline (<= 0: poll now)."""
        return (ahead_s - self.s) / (1.0 + SELECT_SLACK)

    def record(self, late_s: float) -> None:
        """One ``select`` ran to its timeout and woke ``late_s`` after timeout + slack."""
        if not self.adaptive:
            return
        late = self._late
        late[self._count % len(late)] = late_s
        self._count += 1
        if self._count >= self.warmup and self._count % self.every == 0:
            kept = sorted(late[: min(self._count, len(late))])
            high = kept[min(len(kept) - 1, int(self.quantile * len(kept)))]
            self.s = min(self.longest_s, max(self.shortest_s, high + self.margin_s))
