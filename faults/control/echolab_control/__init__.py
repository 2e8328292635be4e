"""The control protocol every echolab sidecar speaks (the packet engine and the toxic proxy).

One Unix datagram socket bound at a filesystem path in the sidecar's container (``PATH``). It
is not an abstract name: abstract names belong to the network namespace, which several
sidecars of one target share, so two of them would fight over one name. The harness execs
``python3 -m echolab_control '<json>'`` into the sidecar, so nothing listens on the network.

A request is one JSON object ``{"op": ..., ...}``; the reply is one JSON object,
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A handler refuses a request by
raising ``ValueError``, ``TypeError`` or ``KeyError``; the server answers that and goes on.

Ops every sidecar answers: ``status``, and ``note``, which stores the JSON object given as
``{"op": "note", "note": {...}}`` and returns it under ``"note"`` in every later status: the
note is the one record of the parameters of the fault in force.

The pure part (``decode``, ``reply_to``, ``encode``, ``note_of``) is separate from the sockets
(``Control``, the server; ``request``, the client), so the first is tested without I/O.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Callable
from typing import Any

PATH = "/tmp/echolab-control.sock"
REQUEST_MAX = 1 << 16  # bytes of one request; a longer one is cut and refused as bad JSON
REPLY_MAX = 1 << 20  # bytes of one reply: the client's receive buffer
REFUSED = (ValueError, TypeError, KeyError)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


# -- the protocol, pure -------------------------------------------------------------------------


def decode(data: bytes | str) -> dict[str, Any]:
    """One request or reply as a dict; ``ValueError`` unless it is a JSON object."""
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError(f"a control message is a JSON object, got {type(message).__name__}")
    return message


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def refusal(error: BaseException | str) -> dict[str, Any]:
    return {"ok": False, "error": str(error)}


def reply_to(handler: Handler, data: bytes) -> dict[str, Any]:
    """The reply to one datagram: the handler's answer under ``ok``, or why it was refused."""
    try:
        answer = handler(decode(data))
    except REFUSED as error:
        return refusal(error)
    return {"ok": True, **{key: value for key, value in answer.items() if key != "ok"}}


def note_of(request: dict[str, Any]) -> dict[str, Any]:
    """The note a ``note`` request carries: a JSON object, copied."""
    note = request.get("note")
    if not isinstance(note, dict):
        raise ValueError('a note request is {"op": "note", "note": {...}} with a JSON object')
    return dict(note)


def unknown(op: object, known: tuple[str, ...]) -> ValueError:
    """The error for an op a sidecar does not take (the same words in every sidecar)."""
    return ValueError(f"unknown op {op!r} ({', '.join(known)})")


# -- the server -----------------------------------------------------------------------------------


class Control:
    """The server end: bound at ``path``, answered by ``handler``, polled by its owner.

    It never blocks and owns no thread: the engine puts ``fileno()`` in its ``select``, the
    proxy registers it with ``loop.add_reader(control.fileno(), control.serve)``.
    """

    def __init__(self, handler: Handler, path: str = PATH) -> None:
        self.handler = handler
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            # A socket file left by an earlier run of this container would make bind fail.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.sock.bind(path)
        except OSError as error:
            self.sock.close()
            message = f"cannot bind the control socket at {path}: {error.strerror}"
            raise OSError(error.errno, message) from error
        self.sock.setblocking(False)
        # Room for long replies (the proxy's per-connection stats); the kernel caps it.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, REPLY_MAX)

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve(self) -> None:
        """Answer every request waiting on the socket; return when none is left."""
        while True:
            try:
                data, sender = self.sock.recvfrom(REQUEST_MAX)
            except BlockingIOError:
                return
            self._send(reply_to(self.handler, data), sender)

    def _send(self, reply: dict[str, Any], sender: Any) -> None:
        if not sender:  # an unbound client cannot be answered
            return
        data = encode(reply)
        if len(data) > REPLY_MAX:
            data = encode(refusal(f"the reply ({len(data)} bytes) exceeds {REPLY_MAX}"))
        try:
            self.sock.sendto(data, sender)
        except OSError as error:
            # The client went away, or the reply does not fit one datagram here: the
            # server carries on either way; for the second, the client learns why.
            if error.errno == errno.EMSGSIZE:
                with contextlib.suppress(OSError):
                    too_long = f"the reply ({len(data)} bytes) does not fit one datagram"
                    self.sock.sendto(encode(refusal(too_long)), sender)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


# -- the client -----------------------------------------------------------------------------------


def request(message: dict[str, Any], path: str = PATH, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the sidecar at ``path`` and return its reply.

    ``OSError`` when nothing answers: no socket file (``FileNotFoundError``), a file nobody
    serves (``ConnectionRefusedError``), or no reply within ``timeout`` (``TimeoutError``).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        # Linux autobind: a unique abstract reply address. Unlike a file, it needs no
        # writable directory (the proxy's root filesystem is read-only), and the kernel
        # picks a name no other socket of the namespace holds.
        sock.bind("")
        sock.settimeout(timeout)
        sock.connect(path)  # replies from anyone else are not delivered
        sock.send(encode(message))
        return decode(sock.recv(REPLY_MAX))


__all__ = [
    "PATH",
    "REPLY_MAX",
    "REQUEST_MAX",
    "Control",
    "Handler",
    "decode",
    "encode",
    "note_of",
    "refusal",
    "reply_to",
    "request",
    "unknown",
]
