"""Entry point: ``python -m echo_client``, interactive by default, batch with --count.

Exit codes are the interface for scripts and the harness: 0 all good, 1 replies wrong or
missing (or the server hung up on a person), 2 bad settings, 3 no connection to the server.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from . import interactive
from .batch import ensure_files, run_batch
from .config import ConfigError, parse_config
from .records import ConnectionSummary, Exchange, Problem


class RecordWriter:
    """JSON lines, written in blocks: one write per record would cost a system call each
    (the image runs with PYTHONUNBUFFERED), yet a long run still shows progress every second.
    """

    def __init__(
        self,
        write: Callable[[str], object],
        flush: Callable[[], object],
        max_bytes: int = 1 << 16,
        max_delay: float = 1.0,
    ) -> None:
        self._write, self._flush = write, flush
        self._lines: list[str] = []
        self._size = 0
        self._max_bytes, self._max_delay = max_bytes, max_delay
        self._last = time.monotonic()

    def __call__(self, record: Exchange | Problem | ConnectionSummary) -> None:
        self.line(record.to_json())

    def line(self, line: str) -> None:
        self._lines.append(line + "\n")
        self._size += len(line) + 1
        if self._size >= self._max_bytes or time.monotonic() - self._last >= self._max_delay:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._write("".join(self._lines))
            self._lines.clear()
            self._size = 0
        self._flush()
        self._last = time.monotonic()


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    try:
        config = parse_config(
            sys.argv[1:] if argv is None else argv, os.environ if env is None else env
        )
        ensure_files(config.connections)
    except ConfigError as error:
        print(f"echo-client: {error}", file=sys.stderr)
        return 2
    try:
        if not config.batch:
            return interactive.main(config)
        writer = RecordWriter(sys.stdout.write, sys.stdout.flush)
        try:
            outcome, human = asyncio.run(run_batch(config, writer))
            writer.line(outcome.summary.to_json())
        finally:
            writer.flush()
        print(human, file=sys.stderr)
        return outcome.exit_code
    except KeyboardInterrupt:
        print("echo-client: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
