"""Hostile clients against the real server, each with a canary client running alongside.

Every case asserts the server's exact answer to the attack, that the server logs it without
flooding its log, that it writes nothing but JSON events (no traceback), and that a
well-behaved canary connection (canary.py) keeps getting every reply, in order, during the
attack. Cases that test_server.py already covers for a single client are not repeated: here
they run with many attackers at once and the canary. Every socket has a timeout; waiting is
on conditions with deadlines (the one sleep paces the slow writer's bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import signal
import socket
import threading
import time
from typing import Any

import pytest
from echo_server.logs import BurstLog, EventLog
from echo_server.protocol import STAMP_LEN, ReplyError, parse_reply

from tests.native.canary import (
    TIMEOUT,
    Canary,
    connect,
    raise_nofile,
    recv_line,
    recv_to_eof,
    reset,
    rss_kib,
    wait_until,
)

LONG_ERROR = b"ERROR line too long (limit 65536 bytes)\n"
TOO_MANY = b"ERROR too many connections\n"
IDLE = b"ERROR idle timeout\n"
MANY = 2000
"""Connections for the slowloris and flood cases."""


@pytest.fixture(autouse=True)
def _many_files() -> None:
    # Before start_server: the server subprocess inherits the raised limit.
    raise_nofile(2 * MANY + 512)


def echoed(reply: bytes) -> bytes:
    return parse_reply(reply)[1]


def assert_replies(replies: list[bytes], requests: list[bytes]) -> None:
    """Each reply is [ctime] + its request, byte for byte, in order.

    Replies share a handful of stamps (one a second): each distinct stamp is parsed once,
    which keeps 100,000 replies cheap to check.
    """
    assert len(replies) == len(requests), f"{len(replies)} replies to {len(requests)} requests"
    for stamp in {reply[:STAMP_LEN] for reply in replies}:
        parse_reply(stamp)
    for i, (reply, request) in enumerate(zip(replies, requests, strict=True)):
        assert reply[STAMP_LEN:] == request, f"reply {i}: {reply!r} to {request!r}"


def total(server, event: str, **match: Any) -> int:
    """How many occurrences ``event`` reports: a summary event carries ``count``."""
    return sum(
        e.get("count", 1)
        for e in server.events(event)
        if all(e.get(key) == value for key, value in match.items())
    )


def assert_clean_log(server) -> None:
    """Only JSON events: a traceback or warning would show up as a non-JSON line."""
    raw = [e["raw"] for e in server.logs() if "raw" in e]
    assert not raw, "server wrote non-JSON output:\n" + "\n".join(raw[:40])


def assert_alive(server) -> None:
    assert server.process.poll() is None, f"server exited with {server.process.returncode}"


def local_peer(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


# --- overlong lines -----------------------------------------------------------------------


def test_10_mib_lines_from_several_clients_get_the_error_and_memory_stays_bounded(
    start_server,
) -> None:
    server = start_server()
    attackers = 3
    with Canary(server.address) as canary:
        baseline = rss_kib(server.process.pid)
        socks = [connect(server.address) for _ in range(attackers)]
        try:

            def flood(sock: socket.socket) -> None:
                # The server closes its side once the limit is passed; a send may then fail.
                with contextlib.suppress(OSError):
                    sock.sendall(b"x" * (10 << 20))

            senders = [threading.Thread(target=flood, args=(s,), daemon=True) for s in socks]
            for sender in senders:
                sender.start()
            canary.advance()
            for sock in socks:
                assert recv_to_eof(sock) == LONG_ERROR  # exactly the error line, then EOF
            for sender in senders:
                sender.join(TIMEOUT)
                assert not sender.is_alive(), "a 10 MiB sender is still blocked"
            growth = rss_kib(server.process.pid) - baseline
            canary.advance()
        finally:
            for sock in socks:
                sock.close()
    assert growth < 16 * 1024, f"server RSS grew {growth} KiB for {attackers} x 10 MiB"
    wait_until(
        lambda: total(server, "error", reason="line too long (limit 65536 bytes)") == attackers,
        f"{attackers} 'line too long' errors in the log",
    )
    assert_clean_log(server)
    assert_alive(server)


# --- hostile bytes ------------------------------------------------------------------------


def hostile_lines(rng: random.Random, count: int) -> list[bytes]:
    """Lines of binary garbage: NUL, invalid UTF-8, CR, CRLF endings, empty lines."""
    pieces = [b"\x00", b"\xff", b"\xfe", b"\xc3(", b"\xed\xa0\x80", b"\r", b"\t", b"[", b"] "]
    lines = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            lines.append(b"\n")
        elif kind == 1:
            lines.append(b"crlf %d\r\n" % i)
        else:
            body = bytes(rng.choice(range(256)) for _ in range(rng.randrange(0, 200)))
            body = body.replace(b"\n", b"") + rng.choice(pieces)
            lines.append(body + b"\n")
    return lines


def segments(rng: random.Random, stream: bytes, most: int) -> list[bytes]:
    out, at = [], 0
    while at < len(stream):
        size = rng.randint(1, most)
        out.append(stream[at : at + size])
        at += size
    return out


def test_binary_garbage_is_echoed_byte_exact_in_any_segmentation(start_server) -> None:
    server = start_server()
    rng = random.Random(1)
    requests = hostile_lines(rng, 5000)
    stream = b"".join(requests)
    with Canary(server.address) as canary, connect(server.address) as sock:

        def send() -> None:
            for segment in segments(rng, stream, 4096):
                sock.sendall(segment)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        buffer = bytearray()
        replies = [recv_line(sock, buffer) for _ in requests]
        sender.join(TIMEOUT)
        canary.advance()
        sock.shutdown(socket.SHUT_WR)
        assert recv_to_eof(sock) == b"" and not buffer  # nothing more than one reply each
    assert_replies(replies, requests)
    assert server.events("error") == []
    assert_clean_log(server)


def test_raw_framing_echoes_garbage_byte_exact(start_server) -> None:
    server = start_server("--framing", "raw")
    rng = random.Random(2)
    # No b"[" in the payload, so each reply's stamp is found at the next b"[".
    alphabet = bytes(b for b in range(256) if b != ord("["))
    stream = bytes(rng.choice(alphabet) for _ in range(200_000))
    with Canary(server.address) as canary, connect(server.address) as sock:

        def send() -> None:
            for segment in segments(rng, stream, 3000):
                sock.sendall(segment)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = bytearray()
        chunks: list[bytes] = []

        def parsed() -> int:
            pieces = bytes(received).split(b"[")[1:]
            # The last reply may still be arriving (its stamp cut short): parse it next time.
            complete, last = pieces[:-1], pieces[-1:]
            chunks[:] = [echoed(b"[" + piece) for piece in complete]
            with contextlib.suppress(ReplyError):
                chunks.extend(echoed(b"[" + piece) for piece in last if len(piece) >= STAMP_LEN)
            return sum(map(len, chunks))

        while parsed() < len(stream):
            data = sock.recv(1 << 16)
            assert data, f"EOF after {parsed()} of {len(stream)} bytes echoed"
            received += data
        sender.join(TIMEOUT)
        canary.advance()
    assert b"".join(chunks) == stream
    assert all(0 < len(chunk) <= 1024 for chunk in chunks)
    assert_clean_log(server)


# --- slow writers and clients that do not read ----------------------------------------------


def test_slow_writers_sending_one_byte_at_a_time(start_server) -> None:
    # Each byte is progress: a line that takes longer than the idle timeout is still served.
    server = start_server("--idle-timeout", "1")
    lines = [b"slow \x00\xff %d %s\r\n" % (i, b"." * 80) for i in range(5)]
    socks = [connect(server.address) for _ in lines]
    try:
        with Canary(server.address) as canary:
            started = time.monotonic()
            for index in range(max(map(len, lines))):
                for sock, line in zip(socks, lines, strict=True):
                    if index < len(line):
                        sock.sendall(line[index : index + 1])
                time.sleep(0.012)  # the pace of the attack, not a wait for a condition
            # Each line took longer than the idle timeout to arrive.
            assert time.monotonic() - started > 1.0
            for sock, line in zip(socks, lines, strict=True):
                assert echoed(recv_line(sock, bytearray())) == line
            canary.advance()
    finally:
        for sock in socks:
            sock.close()
    assert server.events("error") == []
    assert_clean_log(server)


def test_clients_that_never_read_are_paused_then_reclaimed(start_server) -> None:
    server = start_server("--max-pending", "65536", "--idle-timeout", "1.5")
    readers = 4
    batch = (b"n" * 1023 + b"\n") * 64
    cap = 64 << 20
    socks = []
    for _ in range(readers):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(TIMEOUT)
        sock.connect(server.address)
        socks.append(sock)
    sent = [0] * readers
    stalled = [False] * readers
    try:
        with Canary(server.address) as canary:
            baseline = rss_kib(server.process.pid)

            def push(i: int) -> None:
                socks[i].settimeout(0.5)
                with contextlib.suppress(TimeoutError):
                    while sent[i] < cap:
                        sent[i] += socks[i].send(batch)
                    return
                stalled[i] = True

            pushers = [
                threading.Thread(target=push, args=(i,), daemon=True) for i in range(readers)
            ]
            for pusher in pushers:
                pusher.start()
            for pusher in pushers:
                pusher.join(60)
            assert all(stalled), f"the server absorbed {sent} bytes without pushing back"
            assert max(sent) < 32 << 20
            canary.advance()  # the stalled clients hold their buffers; the canary is served
            growth = rss_kib(server.process.pid) - baseline
            # They make no progress: the idle timeout aborts them (nothing would reach them).
            wait_until(
                lambda: total(server, "error", reason="idle timeout (stalled)") == readers,
                f"{readers} stalled clients reclaimed by the idle timeout",
            )
            for sock in socks:
                sock.settimeout(TIMEOUT)
                # Aborted: replies already in its buffer (if the RST left them) are intact.
                data = recv_to_eof(sock, limit=cap)
                if data:
                    assert echoed(data[: data.index(b"\n") + 1]) == b"n" * 1023 + b"\n"
            canary.advance()
    finally:
        for sock in socks:
            sock.close()
    assert growth < 32 * 1024, f"server RSS grew {growth} KiB for {readers} stalled clients"
    assert_clean_log(server)


# --- many connections -------------------------------------------------------------------


def open_many(address: tuple[str, int], count: int, payload: bytes) -> list[socket.socket]:
    socks = []
    try:
        for _ in range(count):
            sock = connect(address)
            socks.append(sock)
            sock.sendall(payload)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def test_slowloris_connections_are_all_reclaimed_by_the_idle_timeout(start_server) -> None:
    # The limit leaves no room beyond the attack and the canary: the second wave can only be
    # admitted if every slowloris connection was released.
    server = start_server(
        "--idle-timeout", "1", "--max-connections", str(MANY + 1), "--log-level", "debug"
    )
    with Canary(server.address) as canary:
        started = time.monotonic()
        socks = open_many(server.address, MANY, b"GET /slowloris HTTP/1.1")  # no newline
        try:
            canary.advance()  # served while all of them hold a half-sent line
            peers = {local_peer(sock) for sock in socks}
            for sock in socks:
                assert recv_to_eof(sock) == IDLE
            assert time.monotonic() - started >= 1.0
        finally:
            for sock in socks:
                sock.close()
        wait_until(
            lambda: total(server, "error", reason="idle timeout") == MANY,
            f"the log to account for {MANY} idle timeouts",
        )
        wait_until(
            lambda: len(
                [e for e in server.events("disconnected") if e["peer"] in peers]
            ) == MANY,
            f"{MANY} slowloris connections released",
        )  # fmt: skip
        released = [e for e in server.events("disconnected") if e["peer"] in peers]
        assert {(e["reason"], e["requests"]) for e in released} == {("idle timeout", 0)}
        canary.advance()
        wave = open_many(server.address, MANY, b"second wave\n")
        try:
            for sock in wave:
                assert echoed(recv_line(sock, bytearray())) == b"second wave\n"
        finally:
            for sock in wave:
                sock.close()
        canary.advance()
    # Logged once, then summarised: not one info line per connection.
    assert len(server.events("error")) <= 10, f"{len(server.events('error'))} error lines"
    assert_clean_log(server)
    assert_alive(server)


def test_connection_flood_past_the_limit_is_refused_clearly_and_logged_once(
    start_server,
) -> None:
    limit = 50
    server = start_server("--max-connections", str(limit))
    with Canary(server.address) as canary:
        holders = open_many(server.address, limit - 1, b"holder\n")
        try:
            for sock in holders:
                assert echoed(recv_line(sock, bytearray())) == b"holder\n"
            started = time.monotonic()
            flood = open_many(server.address, MANY, b"flood\n")
            try:
                canary.advance()  # served during the flood
                for sock in flood:
                    assert recv_to_eof(sock) == TOO_MANY  # the line is not answered
            finally:
                for sock in flood:
                    sock.close()
            elapsed = time.monotonic() - started
            for sock in holders:  # the admitted connections were not disturbed
                sock.sendall(b"still here\n")
                assert echoed(recv_line(sock, bytearray())) == b"still here\n"
        finally:
            for sock in holders:
                sock.close()
        wait_until(
            lambda: total(server, "refused", reason="too many connections") == MANY,
            f"the log to account for {MANY} refused connections",
        )
        refused_lines = len(server.events("refused"))
        # The first refusal, then at most one summary a second (+1 for the last window).
        assert refused_lines <= 2 + elapsed, f"{refused_lines} refused lines in {elapsed:.1f} s"

        def all_admitted() -> bool:
            socks = open_many(server.address, limit - 1, b"after\n")
            try:
                return all(recv_line(s, bytearray()) != TOO_MANY for s in socks)
            finally:
                for sock in socks:
                    sock.close()

        # Released connections free their slots as the server processes each close.
        wait_until(all_admitted, f"{limit - 1} new connections admitted after the flood")
        canary.advance()
    assert_clean_log(server)
    assert_alive(server)


# --- resets -----------------------------------------------------------------------------


def test_resets_mid_request_and_mid_reply_leave_the_server_unaffected(start_server) -> None:
    server = start_server("--log-level", "debug")
    burst, mid_request, mid_reply = 200, 100, 20
    lines = b"".join(b"reply me %06d\n" % i for i in range(20000))
    accepted: dict[str, str] = {}  # peer -> what it did
    with Canary(server.address) as canary:
        # A burst: most are reset before the server even accepts them.
        for _ in range(burst):
            sock = connect(server.address)
            sock.sendall(b"half a li")
            reset(sock)
        # Accepted, holding half a request, then reset.
        for i in range(mid_request):
            sock = connect(server.address)
            accepted[local_peer(sock)] = "request"
            sock.sendall(b"half a li")
            server.wait_for_event("connected", count=burst + i + 2)  # +1: the canary
            reset(sock)
        # Many requests, no reply read: the server's writes meet the reset.
        for i in range(mid_reply):
            sock = connect(server.address)
            accepted[local_peer(sock)] = "reply"
            sock.sendall(lines)
            server.wait_for_event("connected", count=burst + mid_request + i + 2)
            reset(sock)
        canary.advance()
        attackers = burst + mid_request + mid_reply
        server.wait_for_event("disconnected", count=attackers, timeout=TIMEOUT)
        canary.advance()
    connected = server.events("connected")
    gone = server.events("disconnected")[:attackers]  # the canary's comes last
    assert len(connected) == attackers + 1
    assert all(e["peer"] == "?" or e["peer"].startswith("127.0.0.1:") for e in connected)
    reasons = {e["reason"] for e in gone}
    sane = {"client closed"} | {r for r in reasons if r.startswith("ConnectionResetError")}
    assert reasons <= sane, f"unexpected disconnect reasons {reasons - sane}"
    by_peer = {e["peer"]: e for e in gone}
    assert set(accepted) <= set(by_peer)
    assert all(by_peer[p]["requests"] == 0 for p, what in accepted.items() if what == "request")
    assert all(by_peer[p]["requests"] <= 20000 for p, what in accepted.items() if what == "reply")
    # A client's reset is not the server's error, and a line with no newline that was reset
    # (not closed) is not a "partial" either.
    assert {e["event"] for e in server.logs()} == {"listening", "connected", "disconnected"}
    assert_clean_log(server)
    assert_alive(server)


# --- half-close ---------------------------------------------------------------------------


def test_half_close_under_backpressure_delivers_every_reply_then_closes(start_server) -> None:
    server = start_server("--max-pending", "65536")
    requests = [b"half %06d %s \x00\xff\r\n" % (i, b"h" * 80) for i in range(120_000)]
    stream = b"".join(requests) + b"no newline"
    with Canary(server.address) as canary:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.settimeout(TIMEOUT)
        sock.connect(server.address)
        with sock:
            # Send without reading until the server stops reading (backpressure) ...
            sock.settimeout(0.5)
            sent = 0
            with contextlib.suppress(TimeoutError):
                while sent < len(stream):
                    sent += sock.send(stream[sent : sent + 65536])
            assert sent < len(stream), "the server absorbed everything without pushing back"
            sock.settimeout(TIMEOUT)
            received: list[bytes] = []
            reader = threading.Thread(
                target=lambda: received.append(recv_to_eof(sock)), daemon=True
            )
            reader.start()  # ... then read, send the rest and shut the write side
            sock.sendall(stream[sent:])
            sock.shutdown(socket.SHUT_WR)
            reader.join(30)
            assert not reader.is_alive(), "no EOF after the half-close"
        canary.advance()
    (data,) = received
    assert data.endswith(b"\n")
    assert_replies([line + b"\n" for line in data.split(b"\n")[:-1]], requests)
    assert server.wait_for_event("partial")["bytes"] == len(b"no newline")
    assert_clean_log(server)


# --- SIGTERM under load -------------------------------------------------------------------


def test_sigterm_under_load_answers_every_request_sent_before_it(start_server) -> None:
    server = start_server()
    conns, window = 16, 32

    async def load() -> tuple[list[int], list[str], int]:
        stop = asyncio.Event()
        answered = [0] * conns
        problems: list[str] = []
        pending: list[list[bytes]] = [[] for _ in range(conns)]

        async def client(index: int) -> None:
            reader, writer = await asyncio.open_connection(*server.address)
            outstanding = pending[index]
            slots = asyncio.Semaphore(window)

            async def send() -> None:
                seq = 0
                while True:
                    await slots.acquire()
                    if stop.is_set():
                        return
                    line = b"c%02d %08d \x00\xff\r\n" % (index, seq)
                    outstanding.append(line)
                    writer.write(line)
                    seq += 1
                    if seq % window == 0:
                        await writer.drain()

            sender = asyncio.create_task(send())
            try:
                while True:
                    reply = await asyncio.wait_for(reader.readline(), TIMEOUT)
                    if not reply:
                        break
                    expected = outstanding.pop(0) if outstanding else b"<nothing>"
                    if echoed(reply) != expected:
                        problems.append(f"c{index}: {reply!r} for {expected!r}")
                        break
                    answered[index] += 1
                    slots.release()
                if outstanding:
                    problems.append(f"c{index}: {len(outstanding)} requests unanswered")
            finally:
                stop.set()
                slots.release()
                await sender
                writer.close()

        tasks = [asyncio.create_task(client(i)) for i in range(conns)]
        deadline = time.monotonic() + TIMEOUT
        while sum(answered) < 20 * conns * window and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert min(answered) > 0, f"not every client got going: {answered}"
        # No request is written after the signal: every one sent was sent before it.
        stop.set()
        server.process.send_signal(signal.SIGTERM)
        in_flight = sum(map(len, pending))
        await asyncio.wait_for(asyncio.gather(*tasks), 2 * TIMEOUT)
        return answered, problems, in_flight

    answered, problems, in_flight = asyncio.run(load())
    assert in_flight > 0, "no request was in flight at the signal"
    assert problems == []
    assert server.process.wait(TIMEOUT) == 0
    assert server.events("stopped")[0]["aborted"] == 0
    assert sum(answered) >= 20 * conns * window
    assert_clean_log(server)


# --- the log's burst limiter, without a server ------------------------------------------------


class FakeTimers:
    def __init__(self) -> None:
        self.due: list[tuple[float, Any]] = []

    def schedule(self, delay: float, callback: Any) -> None:
        self.due.append((delay, callback))

    def fire(self) -> None:
        due, self.due = self.due, []
        for _delay, callback in due:
            callback()


def test_burst_log_writes_the_first_event_then_one_summary_per_window() -> None:
    stream = io.StringIO()
    timers = FakeTimers()
    bursts = BurstLog(EventLog("json", stream=stream), timers.schedule, interval=1.0)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    for i in range(2000):
        bursts.event("refused", "too many connections", peer=f"p{i}", limit=5)
    bursts.event("error", "idle timeout", peer="q", seconds=1.0)
    assert [(e["event"], e["reason"], e["count"]) for e in lines()] == [
        ("refused", "too many connections", 1),
        ("error", "idle timeout", 1),
    ]
    assert lines()[0]["peer"] == "p0" and lines()[0]["limit"] == 5  # the first in full
    assert [delay for delay, _ in timers.due] == [1.0, 1.0]
    timers.fire()  # the windows end: one summary for the held-back refusals, none for errors
    assert lines()[2] == {
        "ts": lines()[2]["ts"],
        "event": "refused",
        "reason": "too many connections",
        "count": 1999,
        "interval": 1.0,
    }
    assert len(lines()) == 3 and len(timers.due) == 1  # the flood may go on: a new window
    bursts.event("refused", "too many connections", peer="late")
    timers.fire()
    assert lines()[3]["count"] == 1 and "peer" not in lines()[3]
    timers.fire()  # a quiet window closes the group: the next one is logged in full again
    assert timers.due == []
    bursts.event("refused", "too many connections", peer="again")
    bursts.event("refused", "too many connections", peer="held")
    bursts.flush()  # shutdown: nothing stays uncounted
    assert [(e.get("peer"), e["count"]) for e in lines()[4:]] == [("again", 1), (None, 1)]
    assert sum(e["count"] for e in lines() if e["event"] == "refused") == 2003
    timers.fire()  # a window ending after the flush finds nothing to report
    assert len(lines()) == 6
