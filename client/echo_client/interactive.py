"""The interactive client: the seed's loop, with line framing and clear endings.

Blocking sockets are enough for one request at a time and keep this close to the tutorial.
stdin and stdout are used as bytes so any input, invalid UTF-8 and "\\r" included, goes to
the server and comes back exactly; the prompt is shown only to a terminal, so piped output
is nothing but the replies.
"""

from __future__ import annotations

import errno
import socket
import sys
import time
from typing import BinaryIO

from tenacity import Retrying

from .config import ClientConfig
from .session import ConnectFailed, attempt_timeout, connect_policy, is_self_connected

BUFSIZ = 1024
PROMPT = b"> "


class ServerClosed(Exception):
    """The server ended the conversation (EOF or reset) while we still had something to say."""


def connect(host: str, port: int, connect_timeout: float) -> socket.socket:
    """A blocking connection with the batch client's retry policy; ConnectFailed if none."""
    started = time.monotonic()
    attempts = 0
    retrying = Retrying(**connect_policy(connect_timeout))
    try:
        for attempt in retrying:
            with attempt:
                attempts += 1
                remaining = attempt_timeout(connect_timeout, time.monotonic() - started)
                sock = socket.create_connection((host, port), timeout=remaining)
                if is_self_connected(sock):
                    sock.close()
                    raise ConnectionRefusedError(errno.ECONNREFUSED, "connected to itself")
                sock.settimeout(None)  # a person may take their time between lines
                return sock
    except OSError as error:
        raise ConnectFailed(host, port, attempts, time.monotonic() - started, error) from None
    raise AssertionError("unreachable: tenacity either returns or raises")


def exchange_line(sock: socket.socket, replies: BinaryIO, line: bytes) -> bytes:
    """Line framing: one request with its newline, one reply line back."""
    sock.sendall(line + b"\n")
    reply = replies.readline()
    if not reply.endswith(b"\n"):
        raise ServerClosed("the server closed the connection")
    return reply


def exchange_raw(sock: socket.socket, line: bytes) -> bytes:
    """Raw framing, as the seed did: the bytes without newline, then one recv(1024)."""
    sock.sendall(line)
    reply = sock.recv(BUFSIZ)
    if not reply:
        raise ServerClosed("the server closed the connection")
    return reply


def strip_newline(data: bytes) -> bytes:
    """Only the one newline that ends a line: "\\r" and other bytes belong to the message."""
    return data[:-1] if data.endswith(b"\n") else data


def run(
    config: ClientConfig, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, tty: bool
) -> int:
    """0 at an empty line or end of input, 1 if the server hung up, 3 if it never answered."""
    try:
        sock = connect(config.host, config.port, config.connect_timeout)
    except ConnectFailed as error:
        stderr.write(f"echo-client: {error}\n".encode())
        stderr.flush()
        return 3
    with sock, sock.makefile("rb") as replies:
        while True:
            if tty:
                stdout.write(PROMPT)
                stdout.flush()
            line = strip_newline(stdin.readline())
            if not line:
                return 0
            try:
                if config.framing == "raw":
                    reply = exchange_raw(sock, line)
                else:
                    reply = exchange_line(sock, replies, line)
            except (ServerClosed, OSError) as error:
                reason = error if isinstance(error, ServerClosed) else f"connection lost: {error}"
                stderr.write(f"echo-client: {reason}\n".encode())
                stderr.flush()
                return 1
            stdout.write(strip_newline(reply) + b"\n")
            stdout.flush()


def main(config: ClientConfig) -> int:
    return run(config, sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer, sys.stdin.isatty())
