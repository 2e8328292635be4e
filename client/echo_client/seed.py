"""The classic Python socket tutorial's client, ported to Python 3 as literally as possible.

Kept as the reference point of the lab: it sends each line WITHOUT a newline and reads one
recv(BUFSIZ), so it only works against the server's raw framing (the seed's behaviour).
The changes from the tutorial are the Python 3 ones (input, bytes), host and port from the
environment so it runs in a container, and ending without a traceback at end of input.
"""

from __future__ import annotations

import os
import sys
from socket import AF_INET, SOCK_STREAM, socket

HOST = os.environ.get("ECHO_HOST", "localhost")
PORT = int(os.environ.get("ECHO_PORT", "8899"))
BUFSIZ = 1024
ADDR = (HOST, PORT)


def main() -> int:
    tcpCliSock = socket(AF_INET, SOCK_STREAM)
    try:
        tcpCliSock.connect(ADDR)
    except OSError as error:
        print(f"seed client: cannot connect to {HOST}:{PORT}: {error}", file=sys.stderr)
        return 1
    while True:
        try:
            data = input("> ")
        except EOFError:  # the tutorial never met a pipe: end of input ends the loop
            break
        if not data:
            break
        tcpCliSock.send(data.encode())
        reply = tcpCliSock.recv(BUFSIZ)  # the tutorial reused data for str and bytes
        if not reply:
            break
        print(reply.decode("utf-8", "replace"))
    tcpCliSock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
