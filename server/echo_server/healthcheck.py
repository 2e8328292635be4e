"""``python -m echo_server.healthcheck``: the container's HEALTHCHECK, a real echo exchange.

An open port proves only that the kernel accepts; a wedged event loop accepts too. So the
probe sends a request and checks the reply with the protocol module's own checker. Blocking
sockets with one overall deadline: a probe has nothing else to do, and must never hang.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from .protocol import DEFAULT_PORT, FRAMINGS, STAMP_LEN, ReplyError, check_reply

LINE_PAYLOAD = b"healthcheck\n"
RAW_PAYLOAD = b"healthcheck"


class Unhealthy(Exception):
    """The one-line reason printed on stderr."""


def payload_for(framing: str) -> bytes:
    return RAW_PAYLOAD if framing == "raw" else LINE_PAYLOAD


def reply_complete(buffer: bytes, sent: bytes, framing: str) -> bool:
    """Line replies end at the newline; raw replies have a known length (fixed-width ctime)."""
    if framing == "line":
        return b"\n" in buffer
    return len(buffer) >= STAMP_LEN + len(sent)


def exchange(host: str, port: int, framing: str, timeout: float) -> bytes:
    """Send one request and return the reply; Unhealthy on any failure."""
    sent = payload_for(framing)
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(sent)
            buffer = b""
            while not reply_complete(buffer, sent, framing):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unhealthy(f"no complete reply within {timeout:g} s (got {buffer!r})")
                sock.settimeout(remaining)
                chunk = sock.recv(4096)
                if not chunk:
                    raise Unhealthy(f"connection closed after {len(buffer)} bytes: {buffer!r}")
                buffer += chunk
    except TimeoutError:
        raise Unhealthy(f"timed out after {timeout:g} s talking to {host}:{port}") from None
    except OSError as exc:
        raise Unhealthy(f"cannot talk to {host}:{port}: {exc}") from None
    reply = buffer[: buffer.index(b"\n") + 1] if framing == "line" else buffer
    try:
        check_reply(reply, sent)
    except ReplyError as exc:
        raise Unhealthy(str(exc)) from None
    return reply


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="echo_server.healthcheck")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(env.get("ECHO_PORT") or DEFAULT_PORT))
    parser.add_argument(
        "--framing", choices=FRAMINGS, default=(env.get("ECHO_FRAMING") or "line").lower()
    )
    parser.add_argument("--timeout", type=float, default=2.0)
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
        exchange(args.host, args.port, args.framing, args.timeout)
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a malformed ECHO_PORT
        print(f"unhealthy: bad setting: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
