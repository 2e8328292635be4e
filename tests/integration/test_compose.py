"""The Compose stack as users drive it: `up`, `run client` (piped), batch runs, hardening, stop."""

from __future__ import annotations

import json
import re

from tests.helpers import Stack

REPLY = re.compile(rb"^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] (.*)$")


def test_piped_client_gets_one_reply_per_line(stack: Stack) -> None:
    done = stack.compose("run", "--rm", "-T", "client", stdin=b"hello\nsecond line\n")
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.splitlines()
    echoed = [REPLY.match(line) for line in lines]
    assert all(echoed), lines
    assert [m.group(1) for m in echoed if m] == [b"hello", b"second line"]


def test_piped_client_stops_at_empty_line(stack: Stack) -> None:
    done = stack.compose("run", "--rm", "-T", "client", stdin=b"one\n\nnever sent\n")
    assert done.returncode == 0, done.stderr.decode()
    assert [REPLY.match(line).group(1) for line in done.stdout.splitlines()] == [b"one"]  # type: ignore[union-attr]


def test_batch_client_through_compose(stack: Stack) -> None:
    done = stack.compose(
        "run", "--rm", "-T", "client", "--count", "200", "--pipeline", "8", "--id", "batch"
    )
    assert done.returncode == 0, done.stderr.decode()
    records = [json.loads(line) for line in done.stdout.splitlines()]
    exchanges = [r for r in records if r["type"] == "exchange"]
    assert [r["seq"] for r in exchanges] == list(range(200))
    summary = records[-1]
    assert summary["type"] == "summary" and summary["ok"] is True and summary["replied"] == 200


def test_server_runs_hardened_on_an_internal_network(stack: Stack) -> None:
    server = stack.wait_healthy()
    host = server.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"])
    assert host["Memory"] > 0 and host["PidsLimit"] > 0
    assert server.attrs["Config"]["User"] not in ("", "0", "root")
    networks = server.attrs["NetworkSettings"]["Networks"]
    assert len(networks) == 1
    (name,) = networks
    assert stack.docker.networks.get(name).attrs["Internal"] is True


def test_server_exit_code_is_zero_on_stop(stack: Stack) -> None:
    """`docker compose stop` sends SIGTERM: the server drains and exits 0, never killed (137)."""
    done = stack.compose("stop", "-t", "10", "server")
    assert done.returncode == 0, done.stderr.decode()
    server = stack.server()
    server.reload()
    assert server.attrs["State"]["ExitCode"] == 0, server.logs(tail=20).decode()
    done = stack.compose("start", "server")
    assert done.returncode == 0, done.stderr.decode()
    stack.wait_healthy()


def test_bytes_are_echoed_exactly_through_the_client(stack: Stack) -> None:
    """NUL, invalid UTF-8 and a carriage return survive client, network and server untouched."""
    done = stack.compose("run", "--rm", "-T", "client", stdin=b"\x00\xff binary \xfe\r\n")
    assert done.returncode == 0, done.stderr.decode()
    match = REPLY.match(done.stdout.removesuffix(b"\n"))
    assert match is not None, done.stdout
    assert match.group(1) == b"\x00\xff binary \xfe\r"
