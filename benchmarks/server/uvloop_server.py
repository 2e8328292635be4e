"""Reference (b): a straightforward asyncio.Protocol echo server on uvloop, same protocol.

usage: uvloop_server.py PORT [--raw]
"""

from __future__ import annotations

import asyncio
import sys
import time

import uvloop


class Echo(asyncio.Protocol):
    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        stamp = b"[" + time.ctime().encode() + b"] "
        if self.raw:
            self.transport.write(stamp + data)
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        if lines:
            self.transport.write(b"".join(stamp + line + b"\n" for line in lines))


async def main(port: int, raw: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Echo(raw), "127.0.0.1", port, backlog=1024)
    print(f"listening {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), "--raw" in sys.argv[2:]))
