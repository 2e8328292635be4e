"""A Ctrl-C that lands inside a finalizer is not lost: the command line raises it again.

Each case is a child process that sends itself SIGINT from inside ``__del__`` (where Python
runs the handler, prints "Exception ignored" and drops the KeyboardInterrupt), then goes on
working for a bounded time. Without the hook the interrupt is lost, which is what makes the
case able to fail.
"""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r"""
import os, signal, sys, time
if sys.argv[1] == "hooked":
    from harness.cli.common import redeliver_dropped_interrupts
    redeliver_dropped_interrupts()

class Pool:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here, inside the finalizer
            pass

try:
    Pool()  # dropped at once: __del__ runs now
    end = time.monotonic() + 2
    while time.monotonic() < end:
        time.sleep(0.01)
    print("ran to its end")
except KeyboardInterrupt:
    print("interrupted")
"""


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=30
    )


def test_an_interrupt_dropped_in_a_finalizer_is_raised_again_and_prints_nothing() -> None:
    done = _run("hooked")
    assert done.stdout.strip() == "interrupted", done
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_without_the_hook_python_drops_it() -> None:
    done = _run("plain")
    assert done.stdout.strip() == "ran to its end", done
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr, done.stderr
