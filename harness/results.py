"""A client container's output read back into data: its exchanges, its verdict, its summary.

The client writes JSON lines (``echo_client.records``); this module only gathers them per
client, so experiments and reports compute from records, never from printed text.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from echo_client.records import Exchange, Problem, Summary, parse_records

from harness import checks
from harness.spec import Workload


@dataclass
class ClientResult:
    client: str
    container: str
    exit_code: int
    exchanges: list[Exchange]
    summary: Summary | None
    reported: list[Problem]
    stdout: str
    stderr: str
    unparsed: list[str] = field(default_factory=list)

    def rtts_ms(self) -> list[float]:
        return [e.rtt_ms for e in self.exchanges]

    def one_line(self) -> str:
        rtts = self.rtts_ms()
        median = f"{statistics.median(rtts):.3f} ms" if rtts else "n/a"
        reconnects = self.summary.reconnects if self.summary else "?"
        return (
            f"{self.client}: exit {self.exit_code}, {len(self.exchanges)} replies, "
            f"median rtt {median}, {reconnects} reconnect(s), {len(self.reported)} problem(s)"
        )

    def records(self) -> list[dict[str, object]]:
        return [asdict(e) for e in self.exchanges]


def read_client_output(
    client: str, container: str, exit_code: int, stdout: str, stderr: str
) -> ClientResult:
    parsed = parse_records(stdout.splitlines())
    return ClientResult(
        client=client,
        container=container,
        exit_code=exit_code,
        exchanges=list(parsed.exchanges),
        summary=parsed.summary,
        reported=list(parsed.problems),
        stdout=stdout,
        stderr=stderr,
        unparsed=list(parsed.unparsed),
    )


@dataclass
class RunResult:
    """What a batch of clients did, as data: per-client records, plus timings of the run."""

    lab: str
    workload: Workload
    clients: list[ClientResult]
    start_s: float
    elapsed_s: float
    extra: dict[str, object] = field(default_factory=dict)

    def problems(self) -> list[checks.Problem]:
        return checks.check_run(self.clients, self.workload.count)

    def records(self) -> list[dict[str, object]]:
        """Every exchange of every client, as plain dicts (for JSON-lines results files)."""
        return [record for client in self.clients for record in client.records()]

    def assert_ok(self) -> None:
        problems = self.problems()
        if problems:
            shown = "\n".join(f"  {p}" for p in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise AssertionError(f"{len(problems)} problem(s) in lab {self.lab}:\n{shown}{more}")
