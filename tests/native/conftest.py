"""The real server as a subprocess on 127.0.0.1, for tests with real sockets and no Docker.

``start_server(*extra_args, env=None)`` starts ``python -m echo_server --host 127.0.0.1
--port 0 --log-format json ...``, waits for its "listening" event to learn the port, and
always stops the process at teardown. The client's tests reuse it: keep its name and shape.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness import paths

ROOT = paths.ROOT
START_TIMEOUT = 10.0


@dataclass
class RunningServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    _lines: list[str] = field(default_factory=list, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _eof: bool = field(default=False, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON event printed so far (non-JSON lines come back as {"raw": line})."""
        with self._changed:
            lines = list(self._lines)
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"raw": line})
        return events

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    def wait_for_event(self, name: str, timeout: float = 5.0, count: int = 1) -> dict[str, Any]:
        """Block until ``count`` events named ``name`` were logged; return the last one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.events_locked(name)
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(
                        f"waited {timeout} s for {count} {name!r} event(s); "
                        f"exit code {self.process.poll()}; log so far:\n" + "\n".join(self._lines)
                    )
                self._changed.wait(min(remaining, 0.1))

    def events_locked(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self._lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Signal the server and wait for it; returns the exit code, kills on timeout."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise AssertionError(f"server did not exit within {timeout} s of {sig}") from None
        return self.process.returncode

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()


def server_env(env: dict[str, str] | None) -> dict[str, str]:
    """The caller's environment minus ECHO_* (so a developer's shell cannot skew a test)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env or {})
    return base


def launch(*extra_args: str, env: dict[str, str] | None = None) -> RunningServer:
    argv = [
        sys.executable, "-m", "echo_server",
        "--host", "127.0.0.1", "--port", "0", "--log-format", "json",
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=server_env(env),
        cwd=ROOT,
    )
    server = RunningServer(host="127.0.0.1", port=0, process=process)
    threading.Thread(target=server._pump, name="server-stdout", daemon=True).start()
    try:
        listening = server.wait_for_event("listening", timeout=START_TIMEOUT)
    except AssertionError:
        process.kill()
        process.wait(5)
        raise
    server.port = int(listening["port"])
    return server


@pytest.fixture
def echo_env() -> Callable[[dict[str, str] | None], dict[str, str]]:
    """For running other echo_server entry points (healthcheck) as subprocesses."""
    return server_env


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Factory fixture: each call starts one server; all are terminated at teardown."""
    started: list[RunningServer] = []

    def factory(*extra_args: str, env: dict[str, str] | None = None) -> RunningServer:
        server = launch(*extra_args, env=env)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
                try:
                    server.process.wait(5)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait(5)
