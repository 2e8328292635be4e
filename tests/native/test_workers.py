"""--workers N on real sockets: every worker answers on the one port, SIGTERM exits 0."""

from __future__ import annotations

import socket
import subprocess
import sys

from echo_server.protocol import parse_reply

TIMEOUT = 5.0


def exchange(address: tuple[str, int], line: bytes) -> bytes:
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, "EOF before the reply"
            data += chunk
        return data


def test_two_workers_both_answer_and_sigterm_exits_0(start_server) -> None:
    server = start_server("--workers", "2", "--log-level", "debug")
    server.wait_for_event("listening", count=2)
    listening = server.events("listening")
    assert {e["worker"] for e in listening} == {0, 1}
    assert {e["port"] for e in listening} == {server.port}  # the real port, not 0
    # The kernel hashes each connection's 4-tuple to a worker: 40 connections all landing on
    # one of two workers has probability 2**-39.
    for i in range(40):
        line = b"hello %d\n" % i
        assert parse_reply(exchange(server.address, line))[1] == line
    server.wait_for_event("disconnected", count=40)
    served = {e["worker"] for e in server.events("connected")}
    assert served == {0, 1}
    assert server.stop() == 0
    assert len(server.events("stopped")) == 2
    assert server.events("workers_stopped")[0]["failed"] == {}


def test_workers_exit_1_when_the_port_is_taken(echo_env) -> None:
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody may share this port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "echo_server", "--host", "127.0.0.1", "--port", str(port)]
        result = subprocess.run(
            [*argv, "--workers", "2", "--log-format", "json"],
            env=echo_env(None),
            capture_output=True,
            timeout=10,
        )
    assert result.returncode == 1
    assert b"cannot listen" in result.stdout
