"""``python -m echo_server``: parse settings, pick the fastest loop available, serve."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .config import ConfigError, ServerConfig, build_parser, parse_config
from .logs import EventLog
from .server import serve

if TYPE_CHECKING:
    from .workers import WorkerContext


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the benchmark compares against it), never a requirement."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(config: ServerConfig, context: WorkerContext | None = None) -> int:
    """Serve until signalled; with --workers N > 1 the parent only supervises N of these.

    ``context`` is set in a worker (worker=<index>) and tags every event it logs.
    """
    if config.workers > 1 and context is None:
        from .workers import supervise

        return supervise(config, run)
    log = EventLog(config.log_format, config.log_level, context=context)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        try:
            runner.run(serve(config, log))
        except OSError as exc:  # cannot bind: port taken, address not local, permission
            log.event("error", reason=f"cannot listen on {config.host}:{config.port}: {exc}")
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
