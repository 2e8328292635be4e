"""One connection of a batch run: sockets and clocks; all judging is done by reply.py.

asyncio streams carry it with two tasks, a sender that keeps at most
``--pipeline`` requests in flight (paced by ``--rate``) and a receiver that hands each reply
line to the ReplyChecker. When the connection drops, both stop, the client reconnects with
tenacity's backoff and resends every unanswered request in order: the checker's queue is
the resend list, so "each seq answered exactly once" holds across any number of reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from tenacity import (
    AsyncRetrying,
    retry_base,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from .config import KEEPALIVE_PROBES, ClientConfig
from .records import ConnectionSummary, Exchange, Problem, Summary, listed, text
from .reply import MISSING, ReplyChecker
from .workload import make_payload, payload_id, send_offset

Emit = Callable[[Exchange | Problem | ConnectionSummary], None]

ATTEMPT_TIMEOUT = 5.0
"""One connect attempt's limit: a SYN sent to an address that no longer answers (a replaced
Swarm task's, still in a resolver's answer) is dropped, not refused, and would otherwise use
all of --connect-timeout; the next attempt looks the name up again."""
CONNECTS_IN_FLIGHT = 16
"""At most this many of a client's connections wait for the server's answer to their SYN at
once. Opened all together, 50 clients' 200 connections each overflowed the server's listen
queue (its namespace counted ListenOverflows, and SYNs were dropped and retried in step), and
on a busy host some never got through in --connect-timeout; sixteen at a time, none did. The
others wait their turn, which costs a connect time each."""
RETRY_WAIT = wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05)
"""Fast first retries (a restarting server is back in well under a second), capped at 1 s,
with jitter so that many clients cut off together do not reconnect in lockstep."""


class RetryPolicy(TypedDict):
    """Keyword arguments that both Retrying and AsyncRetrying accept, so mypy checks them."""

    stop: stop_base
    wait: wait_base
    retry: retry_base
    reraise: bool


def connect_policy(connect_timeout: float) -> RetryPolicy:
    """The one retry policy for connecting, blocking (interactive) or asyncio (batch)."""
    return {
        "stop": stop_before_delay(connect_timeout),
        "wait": RETRY_WAIT,
        "retry": retry_if_exception_type(OSError),
        "reraise": True,
    }


def attempt_timeout(connect_timeout: float, elapsed: float) -> float:
    """How long the next connect attempt may take (``ATTEMPT_TIMEOUT``, or what is left)."""
    return max(min(connect_timeout - elapsed, ATTEMPT_TIMEOUT), 0.05)


class ConnectFailed(Exception):
    """Connecting was retried until --connect-timeout; str() is the one line users see."""

    def __init__(
        self, host: str, port: int, attempts: int, elapsed: float, error: BaseException
    ) -> None:
        reason = describe(error)
        super().__init__(
            f"cannot connect to {host}:{port} after {attempts} attempt"
            f"{'s' if attempts != 1 else ''} in {elapsed:.1f} s: {reason}"
        )


def describe(error: BaseException) -> str:
    """asyncio words a refusal as "Connect call failed ('127.0.0.1', 8899)"; the errno's own
    text ("Connection refused") is what people search for."""
    if isinstance(error, OSError) and not isinstance(error, socket.gaierror) and error.errno:
        return f"[Errno {error.errno}] {os.strerror(error.errno)}"
    if isinstance(error, TimeoutError):
        return str(error) or "timed out"
    return str(error) or type(error).__name__


def is_self_connected(sock: socket.socket | None) -> bool:
    """With nothing listening on a loopback port in the ephemeral range, a connect can pick
    that very port as its source and connect to itself (TCP simultaneous open): the client
    would then read its own requests as replies. Treated like a refusal, and retried."""
    if sock is None:
        return False
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:
        return False


def keep_alive(writer: asyncio.StreamWriter, idle_s: int) -> None:
    """TCP keepalive on the connection: probed after ``idle_s`` of silence, then once a
    second, dead after ``KEEPALIVE_PROBES`` unanswered (why: ``config.KEEPALIVE_PROBES``).
    A dead connection then fails the pending read, and the run reconnects and resends."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


class ReconnectsExhausted(Exception):
    """The connection kept dropping: --max-reconnects reached; str() is the user's line."""


class ConnectionLost(Exception):
    """The server closed or reset the connection, or it became unusable."""


async def open_connection(
    host: str, port: int, connect_timeout: float, limit: int = 1 << 16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, retrying refusals, DNS failures and timeouts with backoff; else ConnectFailed.

    Name resolution is retried too: in Compose the server's name exists only once its
    container is up, so "not found" at first is as temporary as "refused".
    """
    started = time.monotonic()
    attempts = 0
    retrying = AsyncRetrying(**connect_policy(connect_timeout))
    try:
        async for attempt in retrying:
            with attempt:
                attempts += 1
                remaining = attempt_timeout(connect_timeout, time.monotonic() - started)
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=limit), timeout=remaining
                )
                if is_self_connected(writer.get_extra_info("socket")):
                    writer.close()
                    raise ConnectionRefusedError(errno.ECONNREFUSED, "connected to itself")
                return reader, writer
    except OSError as error:  # TimeoutError and socket.gaierror are OSErrors too
        raise ConnectFailed(host, port, attempts, time.monotonic() - started, error) from None
    raise AssertionError("unreachable: tenacity either returns or raises")


@dataclass
class Outcome:
    """A finished run (or one connection of it): its verdict, and the fatal message if it
    ended by not connecting."""

    summary: Summary | ConnectionSummary
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return 3
        return 0 if self.summary.ok else 1


class ConnectionRun:
    """One of the client's connections: its own seqs, pipeline, schedule, checks and
    reconnects. ``run()`` drives it to the shared deadline and always produces a verdict."""

    def __init__(
        self,
        config: ClientConfig,
        emit: Emit,
        connection: int = 0,
        connecting: asyncio.Semaphore | None = None,
    ) -> None:
        """``connecting``: shared by a client's connections (``CONNECTS_IN_FLIGHT``)."""
        if config.count is None:
            raise ValueError("batch mode needs a count")
        self.config = config
        self.count = config.count
        self.emit = emit
        self.connection = connection
        self.payload_id = payload_id(config.client_id, connection, config.connections)
        self.checker = ReplyChecker(self.payload_id)
        self.problems: list[Problem] = []
        self.rtts: list[float] = []
        self.conn = 0
        self.reconnects = 0
        self.next_seq = 0
        self._lane = connection / config.connections
        self._sent_at: dict[int, tuple[float, float]] = {}  # seq -> (wall, perf)
        self._room = asyncio.Event()
        self._start = 0.0
        # A reply is the stamp plus the request; allow generously before calling it garbage.
        self._limit = max(2 * config.size + 256, 1 << 16)
        self._connecting = connecting or asyncio.Semaphore(CONNECTS_IN_FLIGHT)

    async def run(self, start: float, deadline: float) -> Outcome:
        """``start``: the batch's perf_counter origin, which every schedule counts from;
        ``deadline``: the loop time at which the whole batch gives up."""
        self._start = start
        fatal: str | None = None
        extra: list[str] = []
        try:
            async with asyncio.timeout_at(deadline):
                await self._run_connections()
        except (ConnectFailed, ReconnectsExhausted) as error:
            fatal = str(error)
            extra.append(fatal)
        except TimeoutError:
            extra.append(f"timeout: run not finished after {self.config.timeout} s")
        except ConnectionLost as error:
            extra.append(str(error))
        return Outcome(self._summary(extra), fatal)

    async def _run_connections(self) -> None:
        config = self.config
        reader, writer = await self._connect()
        keep_alive(writer, config.keepalive)
        while True:
            try:
                await self._exchange(reader, writer)
                return
            except ConnectionLost as lost:
                if self.reconnects >= config.max_reconnects:
                    raise ReconnectsExhausted(
                        f"connection to {config.host}:{config.port} lost after "
                        f"{self.reconnects} reconnect(s) (--max-reconnects "
                        f"{config.max_reconnects}): {lost}"
                    ) from None
            self.reconnects += 1
            self.conn += 1
            reader, writer = await self._connect()
            keep_alive(writer, config.keepalive)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self._connecting:
            return await open_connection(
                self.config.host, self.config.port, self.config.connect_timeout, self._limit
            )

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run one connection until every seq is answered; ConnectionLost if it drops."""
        sender = asyncio.create_task(self._send(writer))
        receiver = asyncio.create_task(self._receive(reader))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise _lost(task.exception())
            if receiver not in done:  # all sent: only replies are left to wait for
                try:
                    await receiver
                except OSError as error:
                    raise _lost(error) from None
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        for seq, request in self.checker.unanswered:  # a reconnect: resend, in order
            self._write(writer, seq, request)
        await writer.drain()
        pipeline, rate = self.config.pipeline, self.config.rate
        while self.next_seq < self.count:
            while self.checker.in_flight >= pipeline:
                self._room.clear()
                await self._room.wait()
            due = send_offset(self.next_seq, rate, self._lane)
            delay = self._start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            seq = self.next_seq
            request = make_payload(self.payload_id, seq, self.config.size)
            self.checker.sent(seq, request)
            self.next_seq += 1
            self._write(writer, seq, request)
            await writer.drain()

    def _write(self, writer: asyncio.StreamWriter, seq: int, request: bytes) -> None:
        self._sent_at[seq] = (time.time(), time.perf_counter())
        writer.write(request)

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        while self.checker.answered < self.count:
            try:
                reply = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as error:
                what = "closed the connection" if not error.partial else "closed mid-reply"
                raise ConnectionLost(f"server {what}") from None
            except asyncio.LimitOverrunError:
                raise ConnectionLost(f"reply longer than {self._limit} bytes") from None
            self._on_reply(reply, time.time(), time.perf_counter())

    def _on_reply(self, reply: bytes, wall: float, perf: float) -> None:
        verdict = self.checker.check(reply)
        if verdict.consumed and verdict.seq is not None and verdict.request is not None:
            sent_wall, sent_perf = self._sent_at.pop(verdict.seq)
            rtt_ms = (perf - sent_perf) * 1000.0
            self.rtts.append(rtt_ms)
            self.emit(
                Exchange(
                    client=self.config.client_id, connection=self.connection, conn=self.conn,
                    seq=verdict.seq,
                    sent=sent_wall, received=wall, rtt_ms=rtt_ms,
                    request=text(verdict.request), reply=text(reply),
                )
            )  # fmt: skip
            self._room.set()
        if verdict.kind is not None:
            self._problem(verdict.seq, verdict.kind, verdict.expected, verdict.got)

    def _problem(self, seq: int | None, kind: str, expected: str, got: str) -> None:
        problem = Problem(
            self.config.client_id, seq, kind, expected, got, connection=self.connection
        )
        self.problems.append(problem)
        self.emit(problem)

    def _summary(self, extra: list[str]) -> ConnectionSummary:
        for seq in self.checker.missing(self.count):
            self._problem(seq, MISSING, "one reply", "none")
        everything = [*extra, *map(str, self.problems)]
        return ConnectionSummary(
            client=self.config.client_id, connection=self.connection, count=self.count,
            replied=self.checker.answered, ok=not everything, reconnects=self.reconnects,
            elapsed_s=time.perf_counter() - self._start, problems=listed(everything),
        )  # fmt: skip


def _lost(error: BaseException | None) -> BaseException:
    """Resets and broken pipes are the same event to us as EOF: the connection is gone."""
    if isinstance(error, ConnectionLost):
        return error
    if isinstance(error, OSError):
        return ConnectionLost(f"connection lost: {error}")
    return error if error is not None else RuntimeError("task failed without an exception")
