"""A client container's output read back into data: its exchanges, its verdict, its summary.

The client writes JSON lines (``echo_client.records``); this module only gathers them per
client, and per connection of a client (``ClientResult.connections``), so experiments and
reports compute from records, never from printed text.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from echo_client.records import ConnectionSummary, Exchange, Problem, Summary, parse_records

from harness import checks
from harness.errors import CheckFailed
from harness.spec import Workload


@dataclass
class ConnectionResult:
    """One connection of one client: its records, and the client's verdict on it (``None`` if
    the client wrote none, e.g. it crashed). The harness's own checks are ``RunResult``'s."""

    client: str
    connection: int
    exchanges: list[Exchange]
    reported: list[Problem]
    verdict: ConnectionSummary | Summary | None

    @property
    def ok(self) -> bool:
        """The client's verdict on this connection (every reply came, well-formed, in order)."""
        return self.verdict is not None and self.verdict.ok

    @property
    def reconnects(self) -> int | None:
        return None if self.verdict is None else self.verdict.reconnects

    def rtts_ms(self) -> list[float]:
        return [e.rtt_ms for e in self.exchanges]

    def span(self) -> tuple[float, float] | None:
        """Wall-clock time from its first request sent to its last reply, if any came."""
        if not self.exchanges:
            return None
        return min(e.sent for e in self.exchanges), max(e.received for e in self.exchanges)


@dataclass
class ClientResult:
    """One client container: all its records, and the same split per connection."""

    client: str
    container: str
    exit_code: int
    exchanges: list[Exchange]
    summary: Summary | None
    reported: list[Problem]
    stdout: str
    stderr: str
    unparsed: list[str] = field(default_factory=list)
    connections: list[ConnectionResult] = field(default_factory=list)
    node: str | None = None  # the Swarm node that ran it (None: the harness's own engine)

    def connection(self, index: int) -> ConnectionResult:
        return self.connections[index]

    def rtts_ms(self) -> list[float]:
        return [e.rtt_ms for e in self.exchanges]

    def one_line(self) -> str:
        rtts = self.rtts_ms()
        median = f"{statistics.median(rtts):.3f} ms" if rtts else "n/a"
        reconnects = self.summary.reconnects if self.summary else "?"
        over = f" on {len(self.connections)} connections" if len(self.connections) > 1 else ""
        where = f" on node {self.node}" if self.node else ""
        return (
            f"{self.client}{where}: exit {self.exit_code}, {len(self.exchanges)} replies{over}, "
            f"median rtt {median}, {reconnects} reconnect(s), {len(self.reported)} problem(s)"
        )

    def records(self) -> list[dict[str, object]]:
        return [asdict(e) for e in self.exchanges]


def read_client_output(
    client: str,
    container: str,
    exit_code: int,
    stdout: str,
    stderr: str,
    node: str | None = None,
) -> ClientResult:
    parsed = parse_records(stdout.splitlines())
    exchanges, reported = list(parsed.exchanges), list(parsed.problems)
    return ClientResult(
        client=client,
        container=container,
        exit_code=exit_code,
        exchanges=exchanges,
        summary=parsed.summary,
        reported=reported,
        stdout=stdout,
        stderr=stderr,
        unparsed=list(parsed.unparsed),
        connections=split_connections(
            client, exchanges, reported, parsed.connections, parsed.summary
        ),
        node=node,
    )


def split_connections(
    client: str,
    exchanges: list[Exchange],
    reported: list[Problem],
    verdicts: list[ConnectionSummary],
    summary: Summary | None,
) -> list[ConnectionResult]:
    """Per connection, in index order: as many as the summary says, or as the records show.
    A one-connection client writes no connection verdict: its summary is that verdict."""
    known = [summary.connections] if summary is not None else []
    indices = [e.connection for e in exchanges] + [p.connection for p in reported]
    known += [index + 1 for index in (*indices, *(v.connection for v in verdicts)) if index >= 0]
    count = max(known, default=1)
    own: dict[int, ConnectionSummary | Summary] = {v.connection: v for v in verdicts}
    if count == 1 and summary is not None and not verdicts:
        own[0] = summary
    split = [ConnectionResult(client, index, [], [], own.get(index)) for index in range(count)]
    for exchange in exchanges:  # a negative index (not our client's) is left to the checks
        if exchange.connection >= 0:
            split[exchange.connection].exchanges.append(exchange)
    for problem in reported:
        if problem.connection >= 0:
            split[problem.connection].reported.append(problem)
    return split


def peak_concurrency(connections: Iterable[ConnectionResult]) -> int:
    """How many connections were carrying traffic at the same moment, at most (from each
    one's first request to its last reply: a lower bound on those open at once)."""
    events: list[tuple[float, int]] = []
    for connection in connections:
        span = connection.span()
        if span is not None:
            events += [(span[0], 1), (span[1], -1)]
    level = peak = 0
    for _, step in sorted(events):  # at a tie, an end (-1) before a start
        level += step
        peak = max(peak, level)
    return peak


@dataclass
class RunResult:
    """What a batch of clients did, as data: per-client records, plus timings of the run."""

    lab: str
    workload: Workload
    clients: list[ClientResult]
    start_s: float
    elapsed_s: float
    extra: dict[str, object] = field(default_factory=dict)

    def problems(self) -> list[checks.Violation]:
        return checks.check_run(self.clients, self.workload.count, self.workload.connections)

    def connections(self) -> list[ConnectionResult]:
        """Every connection of every client, client by client, in index order."""
        return [connection for client in self.clients for connection in client.connections]

    def peak_concurrency(self) -> int:
        """Connections carrying traffic at once, at most (see ``peak_concurrency``)."""
        return peak_concurrency(self.connections())

    def records(self) -> list[dict[str, object]]:
        """Every exchange of every client, as plain dicts (for JSON-lines results files)."""
        return [record for client in self.clients for record in client.records()]

    def assert_ok(self) -> None:
        """Raise ``CheckFailed`` listing the first 20 violations, if there are any."""
        problems = self.problems()
        if problems:
            shown = "\n".join(f"  {p}" for p in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            # Why a client stopped is in its last words, not in the replies it lacks.
            ended = [
                f"  {c.client} exited {c.exit_code}: {(c.stderr.strip().splitlines() or [''])[-1]}"
                for c in self.clients
                if c.exit_code != 0
            ][:5]
            said = "\nclients that failed:\n" + "\n".join(ended) if ended else ""
            raise CheckFailed(f"{len(problems)} problem(s) in lab {self.lab}:\n{shown}{more}{said}")
