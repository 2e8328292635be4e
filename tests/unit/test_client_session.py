"""The batch session's pure helpers: error wording and exit codes, no sockets."""

from __future__ import annotations

import socket

import pytest
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
