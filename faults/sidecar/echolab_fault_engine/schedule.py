"""When each packet goes out, or whether it is dropped: pure, seeded, no I/O.

``delay`` is added to every packet from the moment the engine sees it. ``jitter`` spreads it
uniformly over ``[delay - jitter, delay + jitter]`` (netem's default distribution), clamped at 0;
``correlation`` (0..1) makes each draw lean on the previous one as netem's does:
``u = correlation * u_prev + (1 - correlation) * random()``. ``loss`` is an independent
probability per packet. With ``keep_order`` (the default) no packet is released before one that
arrived earlier, so jitter never reorders a flow (netem reorders; TCP would then see duplicate
ACKs and retransmit for nothing): the release time is ``max(drawn, previous release)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Schedule:
    delay_s: float = 0.0
    jitter_s: float = 0.0
    correlation: float = 0.0
    loss: float = 0.0
    seed: int = 0
    keep_order: bool = True
    _rng: random.Random = field(init=False, repr=False)
    _last_u: float = field(init=False, default=0.5, repr=False)
    _last_release: float = field(init=False, default=float("-inf"), repr=False)

    def __post_init__(self) -> None:
        self._check(self.delay_s, self.jitter_s, self.correlation, self.loss)
        self._rng = random.Random(self.seed)

    @staticmethod
    def _check(delay_s: float, jitter_s: float, correlation: float, loss: float) -> None:
        if delay_s < 0 or jitter_s < 0:
            raise ValueError("delay and jitter must be >= 0")
        if not 0.0 <= correlation <= 1.0:
            raise ValueError("correlation must be within 0..1")
        if not 0.0 <= loss <= 1.0:
            raise ValueError("loss must be within 0..1")

    def update(
        self,
        *,
        delay_s: float | None = None,
        jitter_s: float | None = None,
        correlation: float | None = None,
        loss: float | None = None,
    ) -> None:
        """New parameters for the packets seen from now on (validated together, all or none).

        The RNG and the last release time carry over: one seed still gives one sequence, and
        with ``keep_order`` a shorter delay never lets a new packet overtake a held one.
        """
        new = (
            self.delay_s if delay_s is None else float(delay_s),
            self.jitter_s if jitter_s is None else float(jitter_s),
            self.correlation if correlation is None else float(correlation),
            self.loss if loss is None else float(loss),
        )
        self._check(*new)
        self.delay_s, self.jitter_s, self.correlation, self.loss = new

    def params(self) -> dict[str, float | int | bool]:
        return {
            "delay_s": self.delay_s,
            "jitter_s": self.jitter_s,
            "correlation": self.correlation,
            "loss": self.loss,
            "seed": self.seed,
            "keep_order": self.keep_order,
        }

    def _jitter(self) -> float:
        if self.jitter_s == 0:
            return 0.0
        c = self.correlation
        u = c * self._last_u + (1.0 - c) * self._rng.random()
        self._last_u = u
        return self.jitter_s * (2.0 * u - 1.0)

    def decide(self, arrival: float) -> float | None:
        """The release time of a packet seen at ``arrival`` (seconds), or None to drop it."""
        # Draw the loss first and always, so one seed gives one sequence whatever is dropped.
        lost = self.loss > 0 and self._rng.random() < self.loss
        release = arrival + max(0.0, self.delay_s + self._jitter())
        if lost:
            return None
        if self.keep_order:
            release = max(release, self._last_release)
        self._last_release = release
        return release
