"""The listening socket, the registry of live connections, and graceful shutdown.

The registry exists for two reasons: the connection limit (refuse with a reply rather than
let the kernel backlog silently absorb clients) and draining (on SIGTERM every connection
must be told to finish, and the process must not exit before they have, or before the
deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from .connection import EchoConnection
from .logs import BurstLog
from .protocol import StampCache

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import ServerConfig
    from .logs import EventLog


class EchoServer:
    """Owns the listener and every connection; start() then stop() once."""

    def __init__(self, config: ServerConfig, log: EventLog) -> None:
        self.config = config
        self.log = log
        self.host = config.host
        self.port = config.port
        self._stamp = StampCache()  # shared: one ctime() per second for the whole server
        # Refusals and client errors come in floods: one line, then one summary a second.
        self.bursts = BurstLog(log, self._call_later)
        self._active: set[EchoConnection] = set()
        self._refused: set[EchoConnection] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._server: asyncio.Server | None = None
        self._stopping = False

    @property
    def connections(self) -> int:
        return len(self._active)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make_connection,
            self.config.host,
            self.config.port,
            # asyncio's default of 100 drops connections that a load test opens in a burst.
            backlog=self.config.backlog,
            reuse_address=True,
            # --workers N: every worker binds the same port; the kernel balances accepts.
            reuse_port=True if self.config.workers > 1 else None,
        )
        # Port 0 asks the kernel for a free port; the log is how anyone learns which one.
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self.log.event(
            "listening",
            host=self.host,
            port=self.port,
            framing=self.config.framing,
            max_line=self.config.max_line,
            max_connections=self.config.max_connections,
            backlog=self.config.backlog,
            idle_timeout=self.config.idle_timeout,
            max_pending=self.config.max_pending,
            loop=type(loop).__module__.split(".")[0],
        )

    @staticmethod
    def _call_later(delay: float, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(delay, callback)

    def _make_connection(self) -> EchoConnection:
        return EchoConnection(self, self.config, self._stamp, self.log, self.bursts)

    def admit(self, conn: EchoConnection) -> bool:
        self._empty.clear()
        if self._stopping or len(self._active) >= self.config.max_connections:
            self._refused.add(conn)
            self.bursts.event(
                "refused",
                peer=conn.peer,
                reason="server stopping" if self._stopping else "too many connections",
                active=len(self._active),
                limit=self.config.max_connections,
            )
            return False
        self._active.add(conn)
        return True

    def release(self, conn: EchoConnection) -> None:
        self._active.discard(conn)
        self._refused.discard(conn)
        if not self._active and not self._refused:
            self._empty.set()

    async def stop(self, reason: str = "stop requested") -> None:
        """Stop accepting, let every connection answer and flush, abort at the deadline."""
        if self._stopping:
            return
        self._stopping = True
        self.log.event(
            "draining",
            reason=reason,
            connections=len(self._active),
            timeout=self.config.shutdown_timeout,
        )
        if self._server is not None:
            self._server.close()
        for conn in list(self._active | self._refused):
            conn.drain()
        aborted = 0
        try:
            await asyncio.wait_for(self._empty.wait(), self.config.shutdown_timeout)
        except TimeoutError:
            remaining = list(self._active | self._refused)
            aborted = len(remaining)
            for conn in remaining:
                conn.abort()
            # abort() reports connection_lost on the next loop iteration.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), 1.0)
        self.bursts.flush()  # every refusal and error counted before "stopped"
        self.log.event("stopped", aborted=aborted)


async def serve(config: ServerConfig, log: EventLog) -> None:
    """Run until SIGTERM or SIGINT, then drain; returning normally means exit status 0.

    Signal handlers are installed on the loop because Python as a container's PID 1 has no
    default SIGTERM action: without a handler `docker stop` would wait and then SIGKILL.
    """
    server = EchoServer(config, log)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            pass
    # A --workers child starts with these blocked (see workers.py); a no-op otherwise.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, installed)
    try:
        await stop.wait()
    finally:
        # Handlers stay installed while draining: a second SIGTERM must not kill the drain.
        try:
            await server.stop(received[0] if received else "cancelled")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
