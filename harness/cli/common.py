"""What every command of ``python -m harness`` shares: how it speaks and how it exits."""

from __future__ import annotations

import _thread
import signal
import sys
import time
from types import FrameType

PROJECT = "echolab"  # the Compose project of ``make up``
USAGE_ERROR = 2  # a command given what it cannot take: nothing was changed
REDELIVER_AFTER_S = 0.01  # long enough for the hook to have returned


def say(message: str) -> None:
    """A line to the user on stderr (stdout is for what a command gives: JSON, results)."""
    print(f"echolab: {message}", file=sys.stderr, flush=True)


def sigterm_is_interrupt() -> None:
    """SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so every ``finally`` runs; and
    neither is lost (``redeliver_dropped_interrupts``)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    redeliver_dropped_interrupts()


def redeliver_dropped_interrupts() -> None:
    """An interrupt whose handler ran inside a finalizer (the garbage collector closing a
    connection pool) is raised there, where Python prints "Exception ignored" with a traceback
    and drops it: the command would go on to its end. Python hands such an exception to
    ``sys.unraisablehook``; this one has another thread deliver the interrupt again to the main
    thread a moment later (delivered at once, it would be raised inside the hook and dropped
    as well), which takes it at its next step; should that step be in a finalizer too, the same
    happens again. It prints nothing for it."""
    previous = sys.unraisablehook

    def later() -> None:
        time.sleep(REDELIVER_AFTER_S)
        _thread.interrupt_main()

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _thread.start_new_thread(later, ())  # a bare thread: starting it waits for nothing
            return
        previous(unraisable)

    sys.unraisablehook = hook
