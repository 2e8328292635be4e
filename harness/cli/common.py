"""What every command of ``python -m harness`` shares: how it speaks and how it exits."""

from __future__ import annotations

import signal
import sys
from types import FrameType

PROJECT = "echolab"  # the Compose project of ``make up``
USAGE_ERROR = 2  # a command given what it cannot take: nothing was changed


def say(message: str) -> None:
    """A line to the user on stderr (stdout is for what a command gives: JSON, results)."""
    print(f"echolab: {message}", file=sys.stderr, flush=True)


def sigterm_is_interrupt() -> None:
    """SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so every ``finally`` runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
