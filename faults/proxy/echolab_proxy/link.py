"""The proxy's I/O (asyncio): accept, connect upstream, pump each direction through its chain.

This is the only module with sockets and clocks. Per connection there are two pumps,
``upstream`` (client -> server) and ``downstream`` (server -> client); each reads chunks from
its source, passes them through its ``Chain`` with the time they were read, and a writer task
carries out the actions in order, each not before its time. An RST (``Close(reset=True)``) is
scheduled on the event loop at its own time and aborts both sockets with ``SO_LINGER`` 0.
A pump stops reading while more than ``MAX_QUEUED`` bytes wait to be written (a slow
``bandwidth`` never grows memory without bound).

Toxics change at run time (``Relay.add`` / ``Relay.remove``, driven by the control socket's
requests, ``control.py``): every open connection gets the change at once, as in Toxiproxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .chain import Chain
from .toxics import Action, Close, Emit, Eof, Stream, ToxicSpec

READ_SIZE = 65536
MAX_QUEUED = 1 << 20


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), file=sys.stdout, flush=True)


@dataclass
class Counters:
    writes: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"writes": self.writes, "bytes": self.bytes}


class Pump:
    def __init__(
        self,
        link: Link,
        stream: Stream,
        chain: Chain,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
    ) -> None:
        self.link = link
        self.stream = stream
        self.chain = chain
        self.source = source
        self.sink = sink
        self.queue: deque[Action] = deque()
        self.queued = 0
        self.items = asyncio.Event()
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.eof_read = False
        self.eof_written = False
        self.holding = False  # the writer task has taken an action it has not carried out
        self.counters = Counters()

    def push(self, actions: list[Action]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for action in actions:
            if isinstance(action, Close) and action.reset:
                loop.call_at(action.at, self.link.abort, f"reset_peer ({self.stream})")
                continue
            if isinstance(action, Emit) and action.at <= now and self._idle():
                # Due now with nothing before it: written at once, not a task switch later
                # (the proxy's own hop is part of every delay it is asked for).
                self.sink.write(action.data)
                self.counters.writes += 1
                self.counters.bytes += len(action.data)
                continue
            if isinstance(action, Emit):
                self.queued += len(action.data)
            self.queue.append(action)
        if self.queue:
            self.items.set()
        self.wake.set()

    def _idle(self) -> bool:
        """Nothing queued or held by the writer, and the socket's buffer empty: a write now
        keeps the order and needs no flow control."""
        return (
            not self.queue
            and not self.holding
            and self.sink.transport.get_write_buffer_size() == 0
            and not self.sink.transport.is_closing()
        )

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        read: asyncio.Future[bytes] | None = None
        try:
            while True:
                if read is None and not self.eof_read and self.queued <= MAX_QUEUED:
                    read = asyncio.ensure_future(self.source.read(READ_SIZE))
                deadline = self.chain.deadline()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                self.wake.clear()
                woken = asyncio.ensure_future(self.wake.wait())
                waiting: set[asyncio.Future[Any]] = {woken}
                if read is not None:
                    waiting.add(read)
                try:
                    await asyncio.wait(waiting, timeout=timeout, return_when="FIRST_COMPLETED")
                finally:
                    woken.cancel()
                if read is not None and read.done():
                    try:
                        data = read.result()
                    except OSError as error:  # the source reset: so does the proxy
                        self.link.abort(f"{self.stream} read: {error}")
                        return
                    read = None
                    if data:
                        self.push(self.chain.chunk(data, loop.time()))
                    else:
                        self.eof_read = True
                        self.push(self.chain.eof(loop.time()))
                self.push(self.chain.tick(loop.time()))
        finally:
            if read is not None:
                read.cancel()

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self.items.clear()
                await self.items.wait()
            action = self.queue.popleft()
            self.holding = True
            delay = action.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if isinstance(action, Emit):
                    self.queued -= len(action.data)
                    self.sink.write(action.data)
                    await self.sink.drain()
                    self.counters.writes += 1
                    self.counters.bytes += len(action.data)
                    self.wake.set()  # room to read again, if the queue was full
                elif isinstance(action, Eof):
                    if not self.eof_written and self.sink.can_write_eof():
                        self.sink.write_eof()
                    self.eof_written = True
                    self.link.half_closed()
                else:
                    self.link.close("closed by a toxic")
                    return
            except OSError as error:
                self.link.abort(f"{self.stream} write: {error}")
                return
            finally:
                self.holding = False


class Link:
    """One proxied connection: the client's socket, the server's, and a pump each way."""

    def __init__(
        self,
        proxy: Relay,
        number: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.number = number
        self.client = client
        self.server = server
        self.closed = False
        self.reason = ""
        now = asyncio.get_running_loop().time()
        self.pumps: dict[Stream, Pump] = {}
        ends: tuple[tuple[Stream, asyncio.StreamReader, asyncio.StreamWriter], ...] = (
            ("upstream", client[0], server[1]),
            ("downstream", server[0], client[1]),
        )
        for stream, source, sink in ends:
            chain = Chain(stream, number, proxy.seed)
            for spec in proxy.toxics.values():
                chain.add(spec, now)
            self.pumps[stream] = Pump(self, stream, chain, source, sink)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for pump in self.pumps.values():
            self.tasks.append(asyncio.create_task(pump.read_loop()))
            self.tasks.append(asyncio.create_task(pump.write_loop()))

    def add(self, spec: ToxicSpec) -> None:
        pump = self.pumps[spec.stream]
        if pump.chain.add(spec, asyncio.get_running_loop().time()):
            pump.wake.set()

    def remove(self, name: str) -> None:
        now = asyncio.get_running_loop().time()
        for pump in self.pumps.values():
            pump.push(pump.chain.remove(name, now))

    def half_closed(self) -> None:
        if all(p.eof_written for p in self.pumps.values()):
            self.close("both sides closed")

    def close(self, reason: str) -> None:
        self._end(reason, reset=False)

    def abort(self, reason: str) -> None:
        self._end(reason, reset=True)

    def _end(self, reason: str, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        for _, writer in (self.client, self.server):
            if reset:
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(OSError):
                    if sock is not None:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                writer.transport.abort()
            else:
                writer.close()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.proxy.ended(self, reset=reset)

    def stats(self) -> dict[str, Any]:
        return {
            "conn": self.number,
            "closed": self.closed,
            "reason": self.reason,
            "toxics": {s: list(p.chain.toxics) for s, p in self.pumps.items()},
            **{s: p.counters.as_dict() for s, p in self.pumps.items()},
        }


@dataclass
class Relay:
    """Listens on ``listen``, forwards to ``upstream``; toxics apply to every connection."""

    upstream: tuple[str, int]
    seed: int = 0
    toxics: dict[str, ToxicSpec] = field(default_factory=dict)
    links: dict[int, Link] = field(default_factory=dict)
    finished: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    resets: int = 0
    connect_timeout: float = 5.0
    note: dict[str, Any] = field(default_factory=dict)  # the fault in force, as the harness put it

    def add(self, spec: ToxicSpec) -> None:
        if spec.name in self.toxics:
            raise ValueError(f"toxic {spec.name!r} already exists; remove it first")
        self.toxics[spec.name] = spec
        for link in list(self.links.values()):
            link.add(spec)

    def remove(self, name: str) -> None:
        if name not in self.toxics:
            raise ValueError(f"no toxic {name!r} (there are: {', '.join(self.toxics) or 'none'})")
        del self.toxics[name]
        for link in list(self.links.values()):
            link.remove(name)

    def ended(self, link: Link, *, reset: bool) -> None:
        self.links.pop(link.number, None)
        self.resets += int(reset)
        self.finished.append(link.stats())
        del self.finished[:-1000]
        say("closed", conn=link.number, reason=link.reason, reset=reset)

    def stats(self) -> dict[str, Any]:
        links = [*self.finished, *(link.stats() for link in self.links.values())]
        totals = {
            stream: {
                "writes": sum(link[stream]["writes"] for link in links),
                "bytes": sum(link[stream]["bytes"] for link in links),
            }
            for stream in ("upstream", "downstream")
        }
        return {
            "accepted": self.accepted,
            "open": len(self.links),
            "resets": self.resets,
            "toxics": [spec.as_dict() for spec in self.toxics.values()],
            **totals,
            "connections": links,
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.accepted
        self.accepted += 1
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), timeout=self.connect_timeout
            )
        except (OSError, TimeoutError) as error:
            say("upstream-failed", conn=number, error=str(error))
            writer.close()
            return
        link = Link(self, number, (reader, writer), upstream)
        self.links[number] = link
        say("accepted", conn=number, toxics=list(link.pumps["upstream"].chain.toxics)
            + list(link.pumps["downstream"].chain.toxics))  # fmt: skip
        link.start()
