"""A batch run: ``--connections`` K connections from one process, on one asyncio event loop.

asyncio, not threads: a connection spends its life waiting on its socket, and one loop carries
thousands of them in one thread at a few KB each, where threads would cost two per connection
(sender and receiver), each a stack and a pid under the container's pids limit, and a GIL
hand-off for every reply. The connections share only the schedule's origin (so ``--rate``
spreads them evenly), the deadline (``--timeout`` is the whole run's) and stdout; each checks
its own replies, so one that fails spoils nothing of the others' records.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from collections.abc import Sequence

from .config import ClientConfig, ConfigError
from .records import ConnectionSummary, Summary, listed
from .session import CONNECTS_IN_FLIGHT, ConnectionRun, Emit, Outcome

RESERVED_FILES = 64
"""Descriptors besides the connections: stdio, the loop's selector and self-pipe, the sockets
of resolver threads looking up the server's name, and a reconnect's socket beside the old."""


def files_needed(connections: int) -> int:
    return connections + RESERVED_FILES


def raised_limit(needed: int, soft: int, hard: int) -> int | None:
    """The soft RLIMIT_NOFILE to set for ``needed`` descriptors: None if ``soft`` is enough;
    ConfigError if even ``hard`` is not (only the container's or the shell's limit can help)."""
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"--connections needs {needed} open files, and this process may open {hard} at most "
            f"(raise it: ulimit -n, or docker run --ulimit nofile={needed})"
        )
    return needed


def ensure_files(connections: int) -> None:
    """Raise the soft descriptor limit if the connections need it (the hard one allows it):
    failing here, with the number, beats EMFILE on connection 1,021 minutes into a run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = raised_limit(files_needed(connections), soft, hard)
    if new is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def combine(config: ClientConfig, outcomes: Sequence[Outcome], elapsed_s: float) -> Outcome:
    """The client's verdict from its connections' (pure). With one connection it is that
    connection's own; with several, counts add up, problems and the fatal message name their
    connection, and any fatal one makes the run fatal (exit 3)."""
    several = len(outcomes) > 1
    verdicts = [o.summary for o in outcomes]

    def named(index: int, text: str) -> str:
        return f"connection {index}: {text}" if several else text

    # each verdict lists its problems already (capped, "... and N more"): one is kept as it is
    problems = [named(i, p) for i, v in enumerate(verdicts) for p in v.problems]
    shown = listed(problems) if several else tuple(problems)
    fatal = [named(i, o.fatal) for i, o in enumerate(outcomes) if o.fatal is not None]
    summary = Summary(
        client=config.client_id, count=sum(v.count for v in verdicts),
        replied=sum(v.replied for v in verdicts), ok=all(v.ok for v in verdicts),
        reconnects=sum(v.reconnects for v in verdicts), elapsed_s=elapsed_s,
        problems=shown, framing=config.framing, connections=len(outcomes),
    )  # fmt: skip
    if len(fatal) > 1:
        fatal = [f"{fatal[0]} (and {len(fatal) - 1} more connection(s) like it)"]
    return Outcome(summary, fatal[0] if fatal else None)


def human_line(summary: Summary, rtts: Sequence[float]) -> str:
    """The stderr one-liner: enough to tell at a glance whether to look at stdout."""
    p50 = f"p50 {statistics.median(rtts):.2f} ms" if rtts else "no rtt"
    verdict = "ok" if summary.ok else f"NOT ok ({len(summary.problems)} problem(s) listed)"
    over = f" over {summary.connections} connections" if summary.connections > 1 else ""
    return (
        f"client {summary.client}: {summary.replied}/{summary.count} replies {verdict}{over} "
        f"in {summary.elapsed_s:.2f} s, {p50}, {summary.reconnects} reconnects"
    )


async def run_batch(config: ClientConfig, emit: Emit) -> tuple[Outcome, str]:
    """Run every connection to the end; returns the outcome and the stderr line."""
    connecting = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    runs = [ConnectionRun(config, emit, k, connecting) for k in range(config.connections)]
    start = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + config.timeout

    async def one(run: ConnectionRun) -> Outcome:
        outcome = await run.run(start, deadline)
        if len(runs) > 1 and isinstance(outcome.summary, ConnectionSummary):
            emit(outcome.summary)
        return outcome

    outcomes = await asyncio.gather(*map(one, runs))
    outcome = combine(config, outcomes, time.perf_counter() - start)
    assert isinstance(outcome.summary, Summary)
    rtts = [rtt for run in runs for rtt in run.rtts]
    line = human_line(outcome.summary, rtts)
    if outcome.fatal is not None:
        line = f"echo-client: {outcome.fatal}" + (f"\n{line}" if len(runs) > 1 else "")
    return outcome, line
