"""The sidecars' control protocol (echolab_control) and the two sidecars that answer it.

Real Unix datagram sockets in tmp_path; the CLI and the sidecars' ready/stats lines through
subprocesses (PYTHONPATH set to the packages' folders, as the images' /opt/echolab is).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from echolab_control import (
    REPLY_MAX,
    Control,
    Handler,
    decode,
    note_of,
    reply_to,
    request,
)
from echolab_proxy.control import handle
from echolab_proxy.link import Relay

ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join(str(ROOT / "faults" / d) for d in ("control", "engine", "proxy"))


def echo(req: dict[str, Any]) -> dict[str, Any]:
    if req.get("op") == "boom":
        raise ValueError("refused on purpose")
    if req.get("op") == "type":
        raise TypeError("a wrong type")
    return {"echo": req["v"]}


@contextlib.contextmanager
def serving(handler: Handler, path: str) -> Iterator[Control]:
    """A Control polled by a thread the way the engine polls it: select, then serve."""
    control = Control(handler, path)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if select.select([control], [], [], 0.05)[0]:
                control.serve()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield control
    finally:
        stop.set()
        thread.join(5)
        control.close()


def cli(*args: str, timeout: float = 20) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "echolab_control", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        check=False,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0])


# -- the protocol, pure ----------------------------------------------------------------------------


def test_decode_takes_only_json_objects():
    assert decode(b'{"op": "status"}') == {"op": "status"}
    for bad in (b"[1]", b'"status"', b"{", b"\xff"):
        with pytest.raises(ValueError):
            decode(bad)


def test_reply_to_wraps_answers_and_refusals():
    assert reply_to(echo, b'{"v": 1}') == {"ok": True, "echo": 1}
    assert reply_to(lambda r: {"ok": False, "x": 1}, b"{}") == {"ok": True, "x": 1}
    assert reply_to(echo, b'{"op": "boom"}') == {"ok": False, "error": "refused on purpose"}
    assert reply_to(echo, b'{"op": "type"}') == {"ok": False, "error": "a wrong type"}
    assert reply_to(echo, b"{}") == {"ok": False, "error": "'v'"}  # the KeyError's message
    assert reply_to(echo, b"not json")["ok"] is False


def test_note_of_takes_an_object_and_copies_it():
    given = {"kind": "delay", "delay": "20ms"}
    note = note_of({"op": "note", "note": given})
    assert note == given and note is not given
    for bad in ({"op": "note"}, {"op": "note", "note": "x"}, {"op": "note", "note": [1]}):
        with pytest.raises(ValueError, match="note"):
            note_of(bad)


# -- the socket ------------------------------------------------------------------------------------


def test_round_trip_over_a_unix_datagram_socket(tmp_path):
    path = str(tmp_path / "control.sock")
    with serving(echo, path):
        assert request({"v": 7}, path) == {"ok": True, "echo": 7}
        assert request({"v": [1, "a"]}, path, timeout=2) == {"ok": True, "echo": [1, "a"]}
    assert not os.path.exists(path)  # close() removes the socket file


def test_a_bad_request_is_refused_and_the_server_goes_on(tmp_path):
    path = str(tmp_path / "control.sock")
    with serving(echo, path):
        assert request({"op": "boom"}, path) == {"ok": False, "error": "refused on purpose"}
        assert request({"w": 1}, path)["ok"] is False  # KeyError
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
            raw.bind("")
            raw.settimeout(5)
            raw.connect(path)
            for garbage in (b"{not json", b"[1, 2]", b"\xff\xfe"):
                raw.send(garbage)
                assert json.loads(raw.recv(REPLY_MAX))["ok"] is False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unbound:
            unbound.sendto(b'{"v": 1}', path)  # nowhere to answer: dropped, nothing breaks
        assert request({"v": 2}, path) == {"ok": True, "echo": 2}


def test_several_waiting_requests_are_all_answered_by_one_serve(tmp_path):
    path = str(tmp_path / "control.sock")
    control = Control(echo, path)
    clients = []
    try:
        for n in range(5):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            clients.append(sock)
            sock.bind("")
            sock.settimeout(5)
            sock.connect(path)
            sock.send(json.dumps({"v": n}).encode())
        control.serve()
        control.serve()  # nothing waiting: returns at once
        assert [json.loads(s.recv(REPLY_MAX))["echo"] for s in clients] == list(range(5))
    finally:
        for sock in clients:
            sock.close()
        control.close()


def test_long_replies_arrive_or_are_refused_whole(tmp_path):
    path = str(tmp_path / "control.sock")
    with serving(lambda r: {"blob": "x" * r["n"]}, path):
        assert len(request({"n": 100_000}, path)["blob"]) == 100_000
        too_long = request({"n": REPLY_MAX}, path)
        assert too_long["ok"] is False and "exceeds" in too_long["error"]


def test_a_reply_too_long_for_the_socket_is_refused_in_words(tmp_path):
    path = str(tmp_path / "control.sock")
    with serving(lambda r: {"blob": "x" * 100_000}, path) as control:
        control.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a stingy kernel
        reply = request({}, path)
    assert reply["ok"] is False and "does not fit one datagram" in reply["error"]


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "control.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as old:
        old.bind(path)  # a previous run's file, nobody serving it
    with pytest.raises(ConnectionRefusedError):
        request({"v": 1}, path, timeout=1)
    with serving(echo, path):
        assert request({"v": 1}, path)["ok"] is True


def test_nothing_to_answer_raises_oserror(tmp_path):
    path = str(tmp_path / "control.sock")
    with pytest.raises(FileNotFoundError):
        request({"v": 1}, path, timeout=1)
    control = Control(echo, path)  # bound but never served
    try:
        with pytest.raises(TimeoutError):
            request({"v": 1}, path, timeout=0.2)
    finally:
        control.close()


def test_binding_where_nothing_can_be_written_names_the_path(tmp_path):
    path = str(tmp_path / "missing" / "control.sock")
    with pytest.raises(OSError, match=r"cannot bind the control socket at .*missing"):
        Control(echo, path)


# -- the client's command line ---------------------------------------------------------------------


def test_cli_exit_codes(tmp_path):
    path = str(tmp_path / "control.sock")
    with serving(echo, path):
        assert cli('{"v": 3}', "--path", path) == (0, {"ok": True, "echo": 3})
        code, reply = cli('{"op": "boom"}', "--path", path)
        assert (code, reply) == (1, {"ok": False, "error": "refused on purpose"})
        code, reply = cli("not json", "--path", path)
        assert code == 1 and reply["ok"] is False and "not a request" in reply["error"]
    code, reply = cli('{"v": 3}', "--path", path)
    assert code == 2 and reply["ok"] is False
    assert reply["error"].startswith(f"no control socket at {path}: ")


def test_cli_exit_2_when_the_server_does_not_answer_in_time(tmp_path):
    path = str(tmp_path / "control.sock")
    control = Control(echo, path)
    try:
        code, reply = cli('{"v": 3}', "--path", path, "--timeout", "0.2")
    finally:
        control.close()
    assert code == 2 and reply["error"].startswith(f"no control socket at {path}: ")


# -- the sidecars ----------------------------------------------------------------------------------


class Sidecar:
    """A sidecar's process: its first stdout line must be the ready event."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read() if self.process.stderr else ""
        self.ready = json.loads(line)

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM, then the events printed after ready."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=10)
        assert self.process.returncode == 0, err
        return [json.loads(line) for line in out.splitlines()]


def test_the_idle_engine_answers_note_and_status(tmp_path):
    path = str(tmp_path / "control.sock")
    idle = Sidecar(["echolab_fault_engine", "idle", "--control", path])
    try:
        assert idle.ready == {"event": "ready", "engine": "idle", "control": path}
        note = {"kind": "netem", "delay": "20ms"}
        assert cli(json.dumps({"op": "note", "note": note}), "--path", path)[0] == 0
        code, reply = cli('{"op": "status"}', "--path", path)
        assert code == 0 and reply["note"] == note
        code, reply = cli('{"op": "set", "delay_us": 1}', "--path", path)
        assert code == 1 and "unknown op 'set'" in reply["error"]
    finally:
        events = idle.stop()
    assert events == [{"event": "stats", "engine": "idle", "note": note}]
    assert not os.path.exists(path)


def test_the_proxy_process_serves_control_and_says_ready_then_stats(tmp_path):
    path = str(tmp_path / "control.sock")
    toxic = {"type": "latency", "attributes": {"latency": 20}}
    proxy = Sidecar(
        [
            "echolab_proxy",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--control",
            path,
            "--toxic",
            json.dumps(toxic),
        ]
    )
    try:
        assert proxy.ready["event"] == "ready" and proxy.ready["control"] == path
        assert [t["name"] for t in proxy.ready["toxics"]] == ["latency_downstream"]
        assert cli(json.dumps({"op": "note", "note": {"n": 1}}), "--path", path)[0] == 0
        code, reply = cli('{"op": "status"}', "--path", path)
        assert code == 0 and reply["note"] == {"n": 1} and len(reply["toxics"]) == 1
    finally:
        events = proxy.stop()
    assert [e["event"] for e in events] == ["stats"]


def test_the_proxy_serves_control_on_its_event_loop(tmp_path):
    path = str(tmp_path / "control.sock")

    async def run() -> list[dict[str, Any]]:
        proxy = Relay(upstream=("127.0.0.1", 9))
        control = Control(functools.partial(handle, proxy), path)
        loop = asyncio.get_running_loop()
        loop.add_reader(control.fileno(), control.serve)
        ask = functools.partial(loop.run_in_executor, None, request)  # the client blocks
        try:
            toxic = {"type": "slicer", "stream": "upstream", "attributes": {"average_size": 1}}
            return [
                await ask({"op": "add", "toxic": toxic}, path),
                await ask({"op": "add", "toxic": toxic}, path),  # already there
                await ask({"op": "note", "note": {"fault": "slicer"}}, path),
                await ask({"op": "list"}, path),
                await ask({"op": "explode"}, path),
                await ask({"op": "remove", "name": "slicer_upstream"}, path),
                await ask({"op": "status"}, path),
            ]
        finally:
            loop.remove_reader(control.fileno())
            control.close()

    added, again, noted, listed, unknown, removed, status = asyncio.run(run())
    assert added["ok"] is True and added["toxic"]["name"] == "slicer_upstream"
    assert again == {"ok": False, "error": again["error"]} and "already exists" in again["error"]
    assert noted["ok"] is True and noted["note"] == {"fault": "slicer"}
    assert [t["name"] for t in listed["toxics"]] == ["slicer_upstream"]
    assert unknown["ok"] is False and "unknown op 'explode'" in unknown["error"]
    assert removed == {"ok": True}
    assert status["ok"] is True and status["toxics"] == [] and status["note"] == {"fault": "slicer"}
    assert status["accepted"] == 0


def test_proxy_handler_without_a_socket():
    proxy = Relay(upstream=("127.0.0.1", 9))
    assert handle(proxy, {"op": "status"})["note"] == {}
    handle(proxy, {"op": "add", "toxic": {"type": "latency", "attributes": {"latency": 5}}})
    handle(proxy, {"op": "add", "toxic": {"type": "timeout", "name": "t1"}})
    assert handle(proxy, {"op": "clear"}) == {} and proxy.toxics == {}
    for bad in (
        {"op": "add", "toxic": {"type": "latency", "attributes": {"latency": "20ms"}}},
        {"op": "add", "toxic": "latency"},
        {"op": "remove", "name": "nothing"},
        {"op": "note", "note": None},
        {},
    ):
        with pytest.raises((ValueError, TypeError)):
            handle(proxy, bad)
