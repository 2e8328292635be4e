"""When each packet goes out, or whether it is dropped: pure, seeded, no I/O.

``delay`` is added to every packet from the moment the engine sees it. ``jitter`` spreads it
uniformly over ``[delay - jitter, delay + jitter]`` (netem's default distribution), clamped at 0;
``correlation`` (0..1) makes each draw lean on the previous one as netem's does:
``u = correlation * u_prev + (1 - correlation) * random()``.

``distribution`` shapes the spread as netem's tables do (iproute2 ``netem/*.c``): the kernel
draws the (correlated) uniform ``u``, looks up ``t`` in the table, the scaled inverse CDF of
the distribution, and delays by ``delay + jitter * t``; tables are 16-bit, so ``|t| <= 4``
(32767 / NETEM_DIST_SCALE). Here ``t`` is computed from the same ``u``, one draw per packet:

- ``uniform``: ``t = 2u - 1`` (netem without a table);
- ``normal``: ``t = Phi^-1(u)``, the standard normal quantile: jitter is the standard deviation
  (with no correlation, the same law as ``random.gauss(delay, jitter)``);
- ``pareto``: ``t = 4/3 * (X - 1.5)`` with ``X = (1 - u) ** (-1/3)``, i.e. exactly
  ``random.paretovariate(3)``, shifted by its mean 1.5 and scaled by 4/3 (netem's ``pareto.c``):
  mean ``delay``, never below ``delay - 2/3 jitter``, a long right tail (std ~1.15 jitter);
- ``paretonormal``: ``t = (Phi^-1(u) + 3 * pareto_t) / 4`` at the same ``u``, a quarter normal
  and three quarters pareto (``paretonormal.c``).

The drawn delay is clamped at 0. ``loss`` is an independent
probability per packet. With ``keep_order`` (the default) no packet is released before one that
arrived earlier, so jitter never reorders a flow (netem reorders; TCP would then see duplicate
ACKs and retransmit for nothing): the release time is ``max(drawn, previous release)``.

What one seed reproduces is the sequence of decisions: the n-th packet the engine decides on
gets the same fate (dropped or not, the same drawn delay) in every run with that seed.
``decisions()`` is that log, kept short (the decision numbers of the first drops, the first
drawn delays), so two runs can be compared. Which TCP segment is the n-th packet is up to
the traffic's timing (delayed ACKs, retransmissions, the interleaving of connections), so
the set of application messages hit is not promised.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from statistics import NormalDist

DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
TABLE_MAX = 32767 / 8192  # netem's tables: int16 entries, NETEM_DIST_SCALE 8192
_STANDARD = NormalDist()
_U_EDGE = 1e-12  # inv_cdf is undefined at 0 and 1; |t| is clamped to TABLE_MAX anyway
LOGGED = 200  # drops and drawn delays kept in the decision log (enough to tell seeds apart)


def _normal_t(u: float) -> float:
    z = _STANDARD.inv_cdf(min(max(u, _U_EDGE), 1.0 - _U_EDGE))
    return max(-TABLE_MAX, min(TABLE_MAX, z))


def _pareto_t(u: float) -> float:
    x = math.pow(max(1.0 - u, _U_EDGE), -1.0 / 3.0)  # random.paretovariate(3) for this u
    return min(TABLE_MAX, (4.0 / 3.0) * (x - 1.5))


def spread(distribution: str, u: float) -> float:
    """netem's table value ``t`` for the uniform ``u`` (0..1): the delay is ``delay + jitter*t``."""
    if distribution == "uniform":
        return 2.0 * u - 1.0
    if distribution == "normal":
        return _normal_t(u)
    if distribution == "pareto":
        return _pareto_t(u)
    if distribution == "paretonormal":
        return max(-TABLE_MAX, min(TABLE_MAX, (_normal_t(u) + 3.0 * _pareto_t(u)) / 4.0))
    raise ValueError(
        f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}"
    )


@dataclass
class Schedule:
    delay_s: float = 0.0
    jitter_s: float = 0.0
    correlation: float = 0.0
    loss: float = 0.0
    seed: int = 0
    keep_order: bool = True
    distribution: str = "uniform"
    _rng: random.Random = field(init=False, repr=False)
    _last_u: float = field(init=False, default=0.5, repr=False)
    # The latest release decided so far (keep_order holds later packets to it); public so a
    # loop that applies ``fixed()`` itself can hand it back.
    last_release: float = field(init=False, default=float("-inf"), repr=False)
    decided: int = field(init=False, default=0)  # decisions drawn from the RNG so far
    _drops: list[int] = field(init=False, default_factory=list, repr=False)
    _drawn_us: list[float] = field(init=False, default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._check(self.delay_s, self.jitter_s, self.correlation, self.loss, self.distribution)
        self._rng = random.Random(self.seed)

    @staticmethod
    def _check(
        delay_s: float, jitter_s: float, correlation: float, loss: float, distribution: str
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}")
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
        distribution: str | None = None,
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
            self.distribution if distribution is None else str(distribution),
        )
        self._check(*new)
        self.delay_s, self.jitter_s, self.correlation, self.loss, self.distribution = new

    def params(self) -> dict[str, float | int | bool | str]:
        return {
            "delay_s": self.delay_s,
            "jitter_s": self.jitter_s,
            "distribution": self.distribution,
            "correlation": self.correlation,
            "loss": self.loss,
            "seed": self.seed,
            "keep_order": self.keep_order,
        }

    def fixed(self) -> float | None:
        """The delay every packet gets while no decision draws from the RNG (no jitter, no
        loss), else None. ``decide`` is then ``release = arrival + delay``, held to
        ``last_release`` with ``keep_order``, and consumes no randomness: a packet loop may
        apply that itself without calling ``decide`` (the compiled loop does) and the seeded
        sequence stays the same."""
        return self.delay_s if self.jitter_s == 0 and self.loss == 0 else None

    def _jitter(self) -> float:
        if self.jitter_s == 0:
            return 0.0
        c = self.correlation
        u = c * self._last_u + (1.0 - c) * self._rng.random()
        self._last_u = u
        return self.jitter_s * spread(self.distribution, u)

    def decisions(self) -> dict[str, object]:
        """The decision log: how many decisions were made, the numbers (0, 1, ...) of the first
        ``LOGGED`` that dropped, and the first ``LOGGED`` drawn delays (µs, rounded to 0.1)."""
        return {"decided": self.decided, "drops": list(self._drops),
                "drawn_us": list(self._drawn_us)}  # fmt: skip

    def decide(self, arrival: float) -> float | None:
        """The release time of a packet seen at ``arrival`` (seconds), or None to drop it."""
        # Draw the loss first and always, so one seed gives one sequence whatever is dropped.
        number = self.decided
        self.decided += 1
        lost = self.loss > 0 and self._rng.random() < self.loss
        drawn = max(0.0, self.delay_s + self._jitter())
        release = arrival + drawn
        if len(self._drawn_us) < LOGGED:
            self._drawn_us.append(round(drawn * 1e6, 1))
        if lost:
            if len(self._drops) < LOGGED:
                self._drops.append(number)
            return None
        if self.keep_order:
            release = max(release, self.last_release)
        self.last_release = release
        return release
