"""One client connection: the protocol module's framer wired to an asyncio transport.

This is the I/O edge. Everything that decides what to answer lives in protocol.py; this
class only moves bytes, keeps time (idle timeout, drain), and applies backpressure.
asyncio.Protocol rather than streams: callbacks avoid a task and a StreamReader buffer per
connection, which is most of what separates asyncio from a C server on small requests.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

from .protocol import LineTooLong, StampCache, error_line, format_replies, make_framer

if TYPE_CHECKING:
    from .config import ServerConfig
    from .logs import BurstLog, EventLog

LINGER = 2.0
"""After an error reply the server half-closes and keeps reading (discarding) this long.

Closing a socket with unread input makes the kernel send RST, which can destroy the error
line before the client reads it (the "lingering close" that HTTP servers do). Draining the
input while the client reads keeps the reply deliverable without buffering what is read.
"""

DRAIN_QUIET = 0.05
"""On shutdown a connection is half-closed once it has been silent this long, so requests
already in the kernel's receive buffer are still read and answered first."""

DRAIN_MOST = 0.25
"""...but no longer than this after the signal: a client that sends without pause would
otherwise keep the server answering new requests until the shutdown deadline aborts it."""

DRAIN_LINGER = 0.1


class Owner(Protocol):
    """What a connection needs from the server: admission and removal, nothing else."""

    def admit(self, conn: EchoConnection) -> bool: ...

    def release(self, conn: EchoConnection) -> None: ...


def _peer_name(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    # uvloop asks the kernel only now: a client that reset before being accepted has none.
    return "?" if peer is None else str(peer)


class EchoConnection(asyncio.Protocol):
    """Answers each complete request with [ctime] + request, in order, with bounded memory."""

    def __init__(
        self,
        owner: Owner,
        config: ServerConfig,
        stamp: StampCache,
        log: EventLog,
        bursts: BurstLog,
    ) -> None:
        self._owner = owner
        self._config = config
        self._stamp = stamp
        self._log = log
        self._bursts = bursts  # client-caused errors: logged once, then summarised
        self._framer = make_framer(config.framing, config.max_line)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self.peer = "?"
        self.requests = 0
        self._open = False  # answering requests (not refused, not failed, not half-closed)
        self._draining = False
        self._drain_began = 0.0
        self._paused = False
        self._closed = False
        self._last_data = 0.0
        self._last_pending = 0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._linger_handle: asyncio.TimerHandle | None = None
        self._reason = "client closed"

    # asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.peer = _peer_name(transport)
        # Above max_pending unsent bytes asyncio calls pause_writing: stop reading then, so a
        # client that sends but never reads cannot grow the server's memory.
        self._transport.set_write_buffer_limits(high=self._config.max_pending)
        self._last_data = self._loop.time()
        if self._config.idle_timeout > 0:
            self._idle_handle = self._loop.call_later(self._config.idle_timeout, self._check_idle)
        if not self._owner.admit(self):
            self._reason = "refused"
            self._finish(error_line("too many connections"), LINGER)
            return
        self._open = True
        if self._log.enabled("debug"):
            self._log.event("connected", "debug", peer=self.peer)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if not self._open or transport is None:  # None only before connection_made
            return  # refused, failed or half-closed: discard, see LINGER
        self._last_data = self._loop.time()
        try:
            replies, count = self._framer.replies(data, self._stamp())
        except LineTooLong as exc:
            self.requests += len(exc.requests)
            self._fail(format_replies(exc.requests, self._stamp()), str(exc), limit=exc.limit)
            return
        if count:
            self.requests += count
            transport.write(replies)

    def eof_received(self) -> bool:
        if self._open:
            self._open = False
            self._note_partial()
        # False: the transport flushes every queued reply, then closes (half-close contract).
        return False

    def pause_writing(self) -> None:
        self._paused = True
        if self._open and self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._last_data = self._loop.time()  # the client is reading: not idle
        if self._open and self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._open = False
        for handle in (self._idle_handle, self._linger_handle):
            if handle is not None:
                handle.cancel()
        self._idle_handle = self._linger_handle = None
        self._owner.release(self)
        if self._log.enabled("debug"):
            reason = f"{type(exc).__name__}: {exc}" if exc is not None else self._reason
            self._log.event(
                "disconnected", "debug", peer=self.peer, requests=self.requests, reason=reason
            )

    # server-driven -----------------------------------------------------------------------

    def drain(self) -> None:
        """Shutdown: answer what has arrived, then half-close once the client goes quiet."""
        self._draining = True
        self._drain_began = self._loop.time()
        if self._open:
            self._loop.call_later(DRAIN_QUIET, self._check_quiet)

    def abort(self) -> None:
        """Shutdown deadline passed: drop whatever is still unsent."""
        if self._transport is not None and not self._closed:
            self._reason = "aborted at shutdown"
            self._transport.abort()

    # internals ---------------------------------------------------------------------------

    def _fail(self, payload: bytes, reason: str, **fields: object) -> None:
        self._reason = reason
        self._bursts.event("error", reason, peer=self.peer, **fields)
        self._finish(payload + error_line(reason), LINGER)

    def _finish(self, payload: bytes, linger: float) -> None:
        """Send the last bytes, half-close, then discard input until the client closes."""
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            return
        self._open = False
        if payload:
            transport.write(payload)
        if transport.can_write_eof():
            transport.write_eof()
        if self._paused:
            transport.resume_reading()  # reading now only discards, so it costs no memory
        self._linger_handle = self._loop.call_later(linger, self._linger_expired)

    def _linger_expired(self) -> None:
        self._linger_handle = None
        transport = self._transport
        if transport is None or self._closed:
            return
        if transport.get_write_buffer_size() == 0:
            transport.close()
        elif self._draining:
            # Still flushing: the server's shutdown deadline bounds this wait.
            self._linger_handle = self._loop.call_later(DRAIN_LINGER, self._linger_expired)
        else:
            transport.abort()  # an error reply the client would not read in LINGER seconds

    def _check_quiet(self) -> None:
        if not self._open or self._closed:
            return
        now = self._loop.time()
        talking = self._paused or now - self._last_data < DRAIN_QUIET
        if talking and now - self._drain_began < DRAIN_MOST:
            self._loop.call_later(DRAIN_QUIET, self._check_quiet)
            return
        self._reason = "server shutdown"
        self._note_partial()
        self._finish(b"", DRAIN_LINGER)

    def _check_idle(self) -> None:
        """One timer per connection, re-armed lazily: cheaper than resetting it per read."""
        self._idle_handle = None
        transport = self._transport
        if transport is None or self._closed or self._linger_handle is not None:
            return  # closing already, on the linger timer's schedule
        now = self._loop.time()
        pending = transport.get_write_buffer_size()
        if pending < self._last_pending:
            self._last_data = now  # the client is reading our replies: progress
        self._last_pending = pending
        remaining = self._last_data + self._config.idle_timeout - now
        if remaining > 0:
            self._idle_handle = self._loop.call_later(remaining, self._check_idle)
            return
        if self._open and pending == 0:
            self._fail(b"", "idle timeout", seconds=self._config.idle_timeout)
        else:
            # Not reading its replies or its half-close flush: nothing would reach it.
            self._reason = "idle timeout (stalled)"
            self._bursts.event("error", self._reason, peer=self.peer)
            transport.abort()

    def _note_partial(self) -> None:
        buffered = self._framer.buffered
        if buffered:
            self._bursts.event("partial", "no newline at EOF", peer=self.peer, bytes=buffered)
