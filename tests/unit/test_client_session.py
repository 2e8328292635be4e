"""The batch session's pure helpers: error wording and exit codes, no sockets."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from echo_client import batch, session
from echo_client.config import parse_config
from echo_client.records import Summary
from echo_client.session import ConnectFailed, Outcome, describe


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 8899)"),
         "[Errno 111] Connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "[Errno -2] Name or service not known"),
        (TimeoutError(), "timed out"),
        (OSError("Multiple exceptions: a, b"), "Multiple exceptions: a, b"),
    ],
)  # fmt: skip
def test_describe_uses_the_errno_text_people_search_for(error: BaseException, text: str) -> None:
    assert describe(error) == text


def test_connect_failed_is_one_readable_line() -> None:
    error = ConnectFailed("server", 8899, 12, 30.04, ConnectionRefusedError(111, "x"))
    assert str(error) == (
        "cannot connect to server:8899 after 12 attempts in 30.0 s: [Errno 111] Connection refused"
    )
    assert "1 attempt in" in str(ConnectFailed("h", 1, 1, 0.1, TimeoutError()))


def summary(ok: bool) -> Summary:
    return Summary("c", 1, int(ok), ok, 0, 0.1)


def test_exit_codes() -> None:
    assert Outcome(summary(True)).exit_code == 0
    assert Outcome(summary(False)).exit_code == 1
    assert Outcome(summary(False), fatal="cannot connect").exit_code == 3


def test_a_connect_that_hangs_is_tried_again_not_waited_on_to_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listener whose accept queue is full drops SYNs, as an address nobody holds any more
    does: each attempt gives up after ``ATTEMPT_TIMEOUT`` and the next one starts afresh."""
    monkeypatch.setattr(session, "ATTEMPT_TIMEOUT", 0.5)
    assert session.attempt_timeout(30.0, 29.8) == pytest.approx(0.2)
    assert session.attempt_timeout(30.0, 1.0) == 0.5
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        try:
            for _ in range(4):  # the accept queue (backlog 0: one) full, and then some
                one = socket.socket()
                one.setblocking(False)
                one.connect_ex(address)
                fillers.append(one)
            with pytest.raises(ConnectFailed) as raised:
                asyncio.run(session.open_connection(address[0], address[1], 2.0))
        finally:
            for one in fillers:
                one.close()
    attempts = int(str(raised.value).split(" after ")[1].split(" attempt")[0])
    assert attempts >= 3, str(raised.value)


def test_a_clients_connections_wait_for_the_server_at_most_so_many_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 connections of one client: never more than ``CONNECTS_IN_FLIGHT`` connects pending
    together (a burst of SYNs overflows a veth's backlog), every connection still tried."""
    pending = peak = tried = 0

    async def connect(host: str, port: int, timeout: float, limit: int) -> Any:
        nonlocal pending, peak, tried
        pending, tried = pending + 1, tried + 1
        peak = max(peak, pending)
        await asyncio.sleep(0.005)
        pending -= 1
        raise session.ConnectFailed(host, port, 1, 0.005, TimeoutError("no answer"))

    monkeypatch.setattr(session, "open_connection", connect)
    config = parse_config(["--count", "1", "--id", "c0", "--connections", "200"], {})
    outcome, _ = asyncio.run(batch.run_batch(config, lambda record: None))
    assert peak == session.CONNECTS_IN_FLIGHT
    assert tried == 200
    assert outcome.exit_code == 3  # none connected: the run says so
