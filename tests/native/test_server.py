"""The real server over real sockets on 127.0.0.1 (no Docker). Every socket has a timeout."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from echo_server.protocol import STAMP_LEN, parse_reply

TIMEOUT = 5.0
NL = b"\n"
LONG_ERROR = b"ERROR line too long (limit 65536 bytes)\n"


def connect(server, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect(server.address)
    return sock


def recv_lines(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {data.count(NL)} of {count} lines"
        data += chunk
    lines = data.split(b"\n")
    assert lines[-1] == b"", f"unexpected extra bytes {lines[-1]!r}"
    return [line + b"\n" for line in lines[:-1]]


def recv_until_eof(sock: socket.socket, limit: int = 64 << 20) -> bytes:
    chunks = []
    total = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        assert total <= limit, "server sent more than expected"


def echoed(reply: bytes) -> bytes:
    return parse_reply(reply)[1]


def exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    (reply,) = recv_lines(sock, 1)
    assert echoed(reply) == request
    return reply


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_1000_pipelined_lines_in_one_write(start_server) -> None:
    server = start_server()
    requests = [b"line %d \x00\xff\xfe \r\n" % i if i % 3 else b"%d\n" % i for i in range(1000)]
    requests[500] = b"\n"
    with connect(server) as sock:
        sock.sendall(b"".join(requests))
        replies = recv_lines(sock, sum(r.count(b"\n") for r in requests))
    assert [echoed(r) for r in replies] == requests
    assert all(len(r) == STAMP_LEN + len(q) for r, q in zip(replies, requests, strict=True))


def test_one_byte_writes(start_server) -> None:
    server = start_server()
    with connect(server) as sock:
        for byte in b"h\xffllo\r\n":
            sock.send(bytes([byte]))
            time.sleep(0.002)
        assert echoed(recv_lines(sock, 1)[0]) == b"h\xffllo\r\n"


def test_10_mib_without_newline_is_refused_alone(start_server) -> None:
    server = start_server()
    with connect(server) as good, connect(server) as bad:
        exchange(good, b"before\n")
        baseline = rss_kib(server.process.pid)

        def flood() -> None:
            # The server may close before taking it all; that is allowed.
            with contextlib.suppress(OSError):
                bad.sendall(b"x" * (10 << 20))

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        exchange(good, b"during\n")
        assert recv_until_eof(bad) == LONG_ERROR
        sender.join(TIMEOUT)
        exchange(good, b"after\n")
        assert rss_kib(server.process.pid) - baseline < 8 * 1024
    errors = server.events("error")
    assert len(errors) == 1 and errors[0]["reason"] == "line too long (limit 65536 bytes)"


def test_replies_before_an_overlong_line_are_sent(start_server) -> None:
    server = start_server("--max-line", "8")
    with connect(server) as sock:
        sock.sendall(b"ok\n" + b"y" * 20 + b"\n")
        data = recv_until_eof(sock)
    reply, error = data.split(b"\n", 1)[0] + b"\n", data.split(b"\n", 1)[1]
    assert echoed(reply) == b"ok\n"
    assert error == b"ERROR line too long (limit 8 bytes)\n"


def test_max_connections(start_server) -> None:
    server = start_server("--max-connections", "2")
    with connect(server) as one, connect(server) as two:
        exchange(one, b"1\n")
        exchange(two, b"2\n")
        with connect(server) as three:
            assert recv_until_eof(three) == b"ERROR too many connections\n"
        exchange(one, b"still\n")
    refused = server.wait_for_event("refused")
    assert refused["limit"] == 2


def test_idle_timeout(start_server) -> None:
    server = start_server("--idle-timeout", "0.5")
    with connect(server) as sock:
        exchange(sock, b"hello\n")
        started = time.monotonic()
        assert recv_until_eof(sock) == b"ERROR idle timeout\n"
        assert 0.3 < time.monotonic() - started < 3.0
    assert server.wait_for_event("error")["reason"] == "idle timeout"


def test_half_close_delivers_every_reply(start_server) -> None:
    server = start_server()
    requests = [b"req %d\n" % i for i in range(200)]
    with connect(server) as sock:
        sock.sendall(b"".join(requests) + b"trailing partial")
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_eof(sock)
    replies = [line + b"\n" for line in data.split(b"\n")[:-1]]
    assert data.endswith(b"\n")
    assert [echoed(r) for r in replies] == requests
    assert server.wait_for_event("partial")["bytes"] == len(b"trailing partial")


def test_client_that_never_reads_is_paused_not_buffered(start_server) -> None:
    server = start_server("--max-pending", "65536")
    line = b"p" * 999 + b"\n"
    batch = line * 64
    cap = 256 << 20
    with connect(server, rcvbuf=4096) as sock:
        exchange(sock, b"warm up\n")
        baseline = rss_kib(server.process.pid)
        sock.settimeout(0.5)
        sent = 0
        stalled = False
        deadline = time.monotonic() + 20
        while sent < cap and time.monotonic() < deadline:
            try:
                sent += sock.send(batch[sent % len(batch) :] if sent % len(batch) else batch)
            except TimeoutError:
                stalled = True
                break
        assert stalled, f"server absorbed {sent} bytes without pushing back"
        assert sent < 64 << 20
        assert rss_kib(server.process.pid) - baseline < 32 * 1024
        # Reading resumes the flow: every complete line sent gets its reply.
        sock.settimeout(TIMEOUT)
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_eof(sock, limit=2 * cap)
    assert data.count(b"\n") == sent // len(line)


def test_sigterm_answers_requests_in_flight_and_exits_0(start_server) -> None:
    server = start_server()
    count = 2000
    payload = b"".join(b"in flight %d\n" % i for i in range(count))
    socks = [connect(server) for _ in range(3)]
    idle = connect(server)
    try:
        exchange(idle, b"idle\n")
        for sock in socks:
            sock.sendall(payload)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for sock in socks:
            data = recv_until_eof(sock)
            assert data.count(b"\n") == count
            assert echoed(data[: data.index(b"\n") + 1]) == b"in flight 0\n"
        assert recv_until_eof(idle) == b""
        assert server.process.wait(TIMEOUT) == 0
        assert time.monotonic() - started < 5.0
    finally:
        for sock in [*socks, idle]:
            sock.close()
    names = [event.get("event") for event in server.logs()]
    assert names[-2:] == ["draining", "stopped"]
    assert server.events("stopped")[0]["aborted"] == 0


def test_shutdown_aborts_a_stalled_client_at_the_deadline(start_server) -> None:
    server = start_server("--max-pending", "65536", "--shutdown-timeout", "0.5")
    with connect(server, rcvbuf=4096) as sock:
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            for _ in range(4096):  # at most 256 MiB; the stall comes long before
                sock.sendall((b"s" * 1023 + b"\n") * 64)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 3.0
    assert server.events("stopped")[0]["aborted"] == 1


def test_sigint_also_drains_and_exits_0(start_server) -> None:
    server = start_server()
    with connect(server) as sock:
        exchange(sock, b"x\n")
        assert server.stop(signal.SIGINT) == 0


def test_raw_framing_echoes_a_chunk_without_newline(start_server) -> None:
    server = start_server("--framing", "raw")
    with connect(server) as sock:
        sock.sendall(b"hello")
        data = b""
        while len(data) < STAMP_LEN + 5:
            data += sock.recv(4096)
    assert echoed(data) == b"hello"
    assert server.logs()[0]["framing"] == "raw"


def healthcheck(echo_env, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "echo_server.healthcheck", *args],
        env=echo_env(env),
        capture_output=True,
        timeout=10,
        check=False,
    )


@pytest.mark.parametrize("framing", ["line", "raw"])
def test_healthcheck_does_a_real_exchange(start_server, echo_env, framing: str) -> None:
    server = start_server("--framing", framing)
    env = {"ECHO_PORT": str(server.port), "ECHO_FRAMING": framing}
    result = healthcheck(echo_env, env=env)
    assert result.returncode == 0, result.stderr


def test_healthcheck_reports_a_dead_port(echo_env) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = healthcheck(echo_env, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.decode().startswith("unhealthy: cannot talk to 127.0.0.1:")
    assert result.stderr.count(b"\n") == 1


def test_bad_config_exits_2(echo_env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "echo_server", "--framing", "bogus"],
        env=echo_env(None),
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert b"error: argument --framing: 'bogus' is not one of line, raw" in result.stderr
