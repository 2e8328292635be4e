"""Reference (a): the seed's design, the classic tutorial echo server ported to Python 3.

One client at a time: a blocking accept(), then recv(1024) / send() until that client leaves;
a second client waits in the kernel backlog meanwhile. The reply is the tutorial's
"[ctime] data", formatted per request with time.ctime(). Line framing (default) answers each
newline-terminated request; --raw answers each recv() as the seed did.
usage: seed_server.py PORT [--raw]
"""

from __future__ import annotations

import socket
import sys
from time import ctime


def main() -> None:
    port, raw = int(sys.argv[1]), "--raw" in sys.argv[2:]
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(5)
    print(f"listening {port}", flush=True)
    while True:
        conn, _addr = server.accept()
        with conn:
            pending = b""
            while True:
                data = conn.recv(1024)
                if not data:
                    break
                if raw:
                    conn.sendall(b"[%s] %s" % (ctime().encode(), data))
                    continue
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    conn.sendall(b"[%s] %s\n" % (ctime().encode(), line))


if __name__ == "__main__":
    main()
