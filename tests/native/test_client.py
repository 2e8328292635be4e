"""The client against the real server on 127.0.0.1: real sockets and processes, no Docker.

The client runs as ``python -m echo_client`` in a subprocess, as in a container, so exit
codes, stdout records and stderr lines are tested exactly as the harness and users see them.
Every subprocess has a timeout; servers come from conftest's ``start_server``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from echo_client.records import Exchange, ParsedRecords, parse_records
from echo_client.reply import check_reply

from harness import paths

ROOT = paths.ROOT
REPLY = re.compile(rb"^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] (.*)$")
RUN_TIMEOUT = 60.0

StartServer = Callable[..., "object"]


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    env.update(extra or {})
    return env


def run_client(
    *args: str, stdin: bytes = b"", module: str = "echo_client", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=stdin,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        env=client_env(env),
        cwd=ROOT,
        check=False,
    )


def batch(server: object, *args: str) -> tuple[subprocess.CompletedProcess[bytes], ParsedRecords]:
    done = run_client("--host", server.host, "--port", str(server.port), *args)  # type: ignore[attr-defined]
    return done, parse_records(done.stdout.decode().splitlines())


def assert_all_answered(records: ParsedRecords, count: int) -> None:
    assert records.unparsed == []
    assert records.problems == []
    assert sorted(e.seq for e in records.exchanges) == list(range(count))
    for exchange in records.exchanges:
        assert check_reply(exchange.request.encode(), exchange.reply.encode()) is None
    assert records.summary is not None and records.summary.ok
    assert records.summary.replied == count


def max_in_flight(exchanges: list[Exchange]) -> int:
    events = sorted([(e.sent, 1) for e in exchanges] + [(e.received, -1) for e in exchanges])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_batch_pipelined_run_is_complete_and_in_order(start_server: StartServer) -> None:
    server = start_server()
    done, records = batch(server, "--count", "200", "--pipeline", "8", "--id", "c1")
    assert done.returncode == 0, done.stderr.decode()
    assert_all_answered(records, 200)
    assert [e.seq for e in records.exchanges] == list(range(200))
    assert {e.conn for e in records.exchanges} == {0}
    assert all(e.client == "c1" and len(e.request) == 64 for e in records.exchanges)
    assert all(e.rtt_ms > 0 for e in records.exchanges)
    assert 2 <= max_in_flight(records.exchanges) <= 8
    stdout_lines = done.stdout.decode().splitlines()
    assert len(stdout_lines) == 201 and '"type": "summary"' in stdout_lines[-1]
    err = done.stderr.decode()
    assert err.startswith("client c1: 200/200 replies ok in ") and err.count("\n") == 1


def test_pipeline_one_never_overlaps(start_server: StartServer) -> None:
    server = start_server()
    done, records = batch(server, "--count", "50", "--id", "solo", "--size", "100")
    assert done.returncode == 0, done.stderr.decode()
    assert_all_answered(records, 50)
    assert max_in_flight(records.exchanges) == 1
    assert all(len(e.request) == 100 for e in records.exchanges)


def test_rate_paces_the_sends(start_server: StartServer) -> None:
    server = start_server()
    done, records = batch(server, "--count", "21", "--rate", "50", "--id", "paced")
    assert done.returncode == 0, done.stderr.decode()
    assert_all_answered(records, 21)
    sent = [e.sent for e in records.exchanges]
    # Paced, never early: send i happens no sooner than i intervals of 20 ms after the first
    # (a late send may be followed closely by an on-time one, so gaps alone prove nothing;
    # 10 ms of slack for a late first send; unpaced, send 20 would come some 390 ms early).
    early = [i for i, t in enumerate(sent) if t - sent[0] < i * 0.020 - 0.010]
    assert early == [], [round(sent[i] - sent[0], 4) for i in early]
    assert sent[-1] - sent[0] <= 2.0


def test_interactive_piped_prints_one_reply_per_line(start_server: StartServer) -> None:
    server = start_server()
    lines = [b"hello", b"second line", b"\x00\xff binary \xfe\r"]
    done = run_client(
        "--host", server.host, "--port", str(server.port),  # type: ignore[attr-defined]
        stdin=b"".join(line + b"\n" for line in lines),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    replies = done.stdout.split(b"\n")
    assert replies[-1] == b""
    echoed = [REPLY.match(reply) for reply in replies[:-1]]
    assert all(echoed), done.stdout
    assert [m.group(1) for m in echoed if m] == lines


def test_interactive_stops_at_an_empty_line(start_server: StartServer) -> None:
    server = start_server()
    done = run_client(stdin=b"one\n\nnever sent\n",
                      env={"ECHO_HOST": server.host, "ECHO_PORT": str(server.port)})  # type: ignore[attr-defined]  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert [REPLY.match(line).group(1) for line in done.stdout.splitlines()] == [b"one"]  # type: ignore[union-attr]


def test_interactive_says_so_when_the_server_hangs_up(start_server: StartServer) -> None:
    server = start_server()
    client = subprocess.Popen(
        [sys.executable, "-m", "echo_client", "--host", server.host, "--port", str(server.port)],  # type: ignore[attr-defined]
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=client_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"first\n")
        client.stdin.flush()
        assert REPLY.match(client.stdout.readline().rstrip(b"\n"))
        assert server.stop() == 0  # type: ignore[attr-defined]
        _, err = client.communicate(b"second\n", timeout=RUN_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
    assert client.returncode == 1
    assert b"Traceback" not in err
    assert err.decode().strip().startswith("echo-client: ")
    assert "closed" in err.decode() or "lost" in err.decode()


def test_raw_framing_interactive_and_seed_client(start_server: StartServer) -> None:
    server = start_server("--framing", "raw")
    address = {"ECHO_HOST": server.host, "ECHO_PORT": str(server.port)}  # type: ignore[attr-defined]
    done = run_client("--framing", "raw", stdin=b"hello\nsecond\n", env=address)
    assert done.returncode == 0, done.stderr.decode()
    assert [REPLY.match(line).group(1) for line in done.stdout.splitlines()] == [  # type: ignore[union-attr]
        b"hello",
        b"second",
    ]
    seed = run_client(module="echo_client.seed", stdin=b"hello\nsecond\n", env=address)
    assert seed.returncode == 0, seed.stderr.decode()
    assert b"Traceback" not in seed.stderr
    replies = re.findall(rb"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] (\S+)", seed.stdout)
    assert replies == [b"hello", b"second"], seed.stdout
    assert seed.stdout.startswith(b"> ")  # input() prompts even when piped, as in the tutorial


def test_raw_framing_batch(start_server: StartServer) -> None:
    server = start_server("--framing", "raw")
    done, records = batch(server, "--framing", "raw", "--count", "30", "--id", "raw")
    assert done.returncode == 0, done.stderr.decode()
    assert_all_answered(records, 30)
    assert records.summary is not None and records.summary.framing == "raw"


@pytest.mark.parametrize("mode", [["--count", "5"], []], ids=["batch", "interactive"])
def test_refused_connection_exits_3_with_one_clear_line(mode: list[str]) -> None:
    port = free_port()
    started = time.monotonic()
    done = run_client("--host", "127.0.0.1", "--port", str(port), "--connect-timeout", "1", *mode,
                      stdin=b"hello\n")  # fmt: skip
    assert time.monotonic() - started < 15
    assert done.returncode == 3
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert re.fullmatch(
        rf"echo-client: cannot connect to 127\.0\.0\.1:{port} after \d+ attempts in "
        r"\d+\.\d s: \[Errno \d+\] Connection refused\n",
        err,
    ), err


def test_unknown_host_exits_3() -> None:
    done = run_client("--host", "no-such-host.invalid", "--count", "1", "--connect-timeout", "1")
    assert done.returncode == 3
    assert b"Traceback" not in done.stderr
    assert done.stderr.startswith(b"echo-client: cannot connect to no-such-host.invalid:8899")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_server_restart_mid_run_resends_and_loses_nothing(
    start_server: StartServer, sig: signal.Signals
) -> None:
    server = start_server("--log-level", "debug")  # to see the client's "connected" event
    port = str(server.port)  # type: ignore[attr-defined]
    args = ["--host", "127.0.0.1", "--port", port, "--count", "400", "--rate", "400",
            "--pipeline", "8", "--id", "r", "--connect-timeout", "20"]  # fmt: skip
    client = subprocess.Popen(
        [sys.executable, "-m", "echo_client", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=client_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        server.wait_for_event("connected", timeout=10)  # type: ignore[attr-defined]
        time.sleep(0.3)  # about 120 messages exchanged
        server.stop(sig)  # type: ignore[attr-defined]
        time.sleep(0.2)  # the client meets a refused port for a while
        start_server("--port", port)
        out, err = client.communicate(timeout=RUN_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
    assert client.returncode == 0, err.decode()
    records = parse_records(out.decode().splitlines())
    assert_all_answered(records, 400)
    assert Counter(e.seq for e in records.exchanges) == Counter(range(400))
    assert records.summary is not None and records.summary.reconnects >= 1
    # A reconnect may land in the dying server's listen backlog and be reset at once, so
    # a connection number can have no replies; the last one is the summary's count.
    conns = {e.conn for e in records.exchanges}
    assert 0 in conns and len(conns) >= 2
    assert max(conns) == records.summary.reconnects
    assert f"{records.summary.reconnects} reconnects" in err.decode()


@contextlib.contextmanager
def fake_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection misbehaving server, for what the real one never does."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(15)


def test_wrong_replies_are_reported_and_fail_the_run() -> None:
    def echo_without_stamp(conn: socket.socket) -> None:
        with conn.makefile("rb") as lines:
            for _ in range(3):
                conn.sendall(lines.readline())

    with fake_server(echo_without_stamp) as port:
        done = run_client("--port", str(port), "--host", "127.0.0.1", "--count", "3", "--id", "w",
                          "--max-reconnects", "0", "--connect-timeout", "1")  # fmt: skip
    assert done.returncode == 1, done.stderr.decode()
    records = parse_records(done.stdout.decode().splitlines())
    assert [p.kind for p in records.problems] == ["malformed"] * 3
    assert records.summary is not None and not records.summary.ok
    assert len(records.exchanges) == 3  # each seq still has its one recorded reply
    assert "NOT ok" in done.stderr.decode()


def test_overall_timeout_bounds_a_silent_server() -> None:
    def say_nothing(conn: socket.socket) -> None:
        while conn.recv(1024):  # until the client gives up and closes
            pass

    started = time.monotonic()
    with fake_server(say_nothing) as port:
        done = run_client("--port", str(port), "--host", "127.0.0.1", "--count", "2",
                          "--timeout", "1")  # fmt: skip
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    records = parse_records(done.stdout.decode().splitlines())
    assert records.summary is not None and not records.summary.ok
    assert any(p.startswith("timeout") for p in records.summary.problems)
    assert [p.kind for p in records.problems] == ["missing", "missing"]


def test_max_reconnects_exhausted_exits_3() -> None:
    def hang_up(conn: socket.socket) -> None:
        conn.recv(1024)

    with fake_server(hang_up) as port:
        done = run_client("--port", str(port), "--host", "127.0.0.1", "--count", "2",
                          "--max-reconnects", "0", "--connect-timeout", "1")  # fmt: skip
    assert done.returncode == 3, done.stderr.decode()
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "--max-reconnects 0" in err and "Traceback" not in err
