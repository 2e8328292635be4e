"""``python -m harness impair|faults|heal`` against a running Compose project, end to end.

The faults outlive the command (session ``user``, like ``make up``'s stack), are listed from their
labelled sidecars, and go with ``heal``; bad parameters exit 2 before anything changes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading

import docker
import pytest

from harness import images, labels
from harness.compose_lab import ComposeLab
from harness.waiting import NotReady, wait_for
from tests.helpers import Stack


@pytest.fixture(scope="module")
def running(stack: Stack, docker_client: docker.DockerClient) -> Stack:
    images.tag_for(docker_client, "engine")
    # Another module may have stopped the server (the SIGTERM test): bring it back.
    done = stack.compose("up", "-d", "--no-build", "server")
    assert done.returncode == 0, done.stderr.decode()
    stack.wait_healthy()
    return stack


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def median_rtt(stack: Stack, count: int = 30) -> float:
    done = stack.compose("run", "--rm", "-T", "client", "--count", str(count), "--id", "probe")
    assert done.returncode == 0, done.stderr.decode()
    records = [json.loads(line) for line in done.stdout.splitlines()]
    rtts = [r["rtt_ms"] for r in records if r["type"] == "exchange"]
    assert len(rtts) == count
    return statistics.median(rtts[2:])


def sidecars(stack: Stack) -> list[docker.models.containers.Container]:
    return ComposeLab(stack.project, stack.docker).sidecars()


def test_impair_list_and_heal_from_the_command_line(running: Stack, packet_backend: str) -> None:
    project, backend = running.project, ("--backend", packet_backend)
    # netem has one qdisc per direction: its second fault goes the other way
    second_way = "egress" if packet_backend == "nfqueue" else "ingress"
    try:
        done = harness(
            "impair", "server", "--delay", "30ms", "--jitter", "1ms", "--project", project, *backend
        )
        assert done.returncode == 0, done.stderr
        assert "delay 30ms" in done.stdout
        (sidecar,) = sidecars(running)
        assert sidecar.labels[labels.SESSION] == labels.USER  # outlives the CLI: make clean's
        assert 29.0 <= median_rtt(running) < 33.0

        stacked = harness(
            "impair", "server", "--loss", "1%", "--direction", second_way, *backend,
            "--project", project, "--json",
        )  # fmt: skip
        assert stacked.returncode == 0, stacked.stderr
        assert json.loads(stacked.stdout)["loss"] == pytest.approx(0.01)

        listed = harness("faults", "--project", project, "--json")
        assert listed.returncode == 0, listed.stderr
        faults = json.loads(listed.stdout)
        assert [(f["slot"], f["backend"]) for f in faults] == [
            (0, packet_backend),
            (1, packet_backend),
        ]
        assert faults[0]["params"]["delay_s"] == pytest.approx(0.03)
        assert faults[1]["params"]["loss"] == pytest.approx(0.01)
        if packet_backend == "nfqueue":  # the engine counts what it saw; netem, the kernel
            assert faults[0]["engine"]["seen"] > 0
        text = harness("faults", "--project", project)
        assert "delay 30ms ± 1ms" in text.stdout and "loss 1%" in text.stdout

        healed = harness("heal", "server", "--project", project)
        assert healed.returncode == 0, healed.stderr
        assert sidecars(running) == []
        assert median_rtt(running) < 5.0
    finally:
        ComposeLab(project, running.docker).heal()


def test_update_a_fault_in_force_while_a_client_runs(running: Stack, packet_backend: str) -> None:
    """``update`` changes the delay under a running client: its replies all arrive, in order,
    and its round trips move from the old delay to the new one."""
    project = running.project
    lab = ComposeLab(project, running.docker)
    try:
        done = harness(
            "impair", "server", "--delay", "20ms", "--backend", packet_backend, "--project", project
        )
        assert done.returncode == 0, done.stderr
        client = subprocess.Popen(
            running.tool.command(
                project, "run", "--rm", "-T", "client", "--count", "200", "--rate", "25"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(client.stdout.readline, "")))  # type: ignore[union-attr]
        reader.start()
        try:

            def exchanged() -> int:
                done = sum('"exchange"' in line for line in list(lines))
                if done < 30:  # the client's own records, as it prints them
                    raise NotReady(f"the client has printed {done} exchanges")
                return done

            wait_for("the client's first 30 exchanges", exchanged, timeout=60)
            updated = harness("update", "server", "--delay", "60ms", "--project", project)
            assert updated.returncode == 0, updated.stderr
            assert "delay 60ms" in updated.stdout
            client.wait(timeout=90)
            reader.join(timeout=30)
            err = client.stderr.read() if client.stderr else ""
        finally:
            client.kill()
            client.wait(timeout=30)
        assert client.returncode == 0, err  # the client checked every reply, order included
        rtts = [json.loads(line) for line in lines]
        rtts = [
            r["rtt_ms"]
            for r in sorted(rtts, key=lambda r: r.get("seq", -1))
            if r["type"] == "exchange"
        ]
        assert len(rtts) == 200
        assert 19.0 <= statistics.median(rtts[2:20]) < 25.0
        assert 59.0 <= statistics.median(rtts[-30:]) < 65.0
        listed = json.loads(harness("faults", "--project", project, "--json").stdout)
        assert [f["params"]["delay_s"] for f in listed] == [pytest.approx(0.06)]
    finally:
        lab.heal()


def test_update_needs_a_fault_and_a_slot_when_several_are_in_force(
    running: Stack, packet_backend: str
) -> None:
    project = running.project
    second_way = "egress" if packet_backend == "nfqueue" else "ingress"  # netem: one per way
    lab = ComposeLab(project, running.docker)
    try:
        none = harness("update", "server", "--delay", "5ms", "--project", project)
        assert none.returncode == 2 and "no impairment in force" in none.stderr, none.stderr
        for args in (["--delay", "10ms"], ["--loss", "1%", "--direction", second_way]):
            done = harness(
                "impair", "server", *args, "--backend", packet_backend, "--project", project
            )
            assert done.returncode == 0, done.stderr
        which = harness("update", "server", "--loss", "2%", "--project", project)
        assert which.returncode == 2 and "--slot" in which.stderr, which.stderr
        bad = harness("update", "server", "--slot", "1", "--loss", "120%", "--project", project)
        assert bad.returncode == 2 and "loss must be within" in bad.stderr, bad.stderr
        done = harness("update", "server", "--slot", "1", "--loss", "2%", "--project", project)
        assert done.returncode == 0, done.stderr
        listed = json.loads(harness("faults", "--project", project, "--json").stdout)
        params = {f["slot"]: f["params"] for f in listed}
        assert params[0]["delay_s"] == pytest.approx(0.01) and params[0]["loss"] == 0
        assert params[1]["loss"] == pytest.approx(0.02) and params[1]["delay_s"] == 0
    finally:
        lab.heal()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delay=-5ms"], "delay must be >= 0"),  # argparse: "-5ms" alone is an option
        (["--loss", "101%"], "loss must be within"),
        (["--delay", "5 fortnights"], "unknown unit"),
        (["--delay", "10"], "needs a unit"),
        (["--direction", "sideways", "--delay", "1ms"], "direction must be"),
        ([], "nothing to impair"),
    ],
)
def test_bad_parameters_exit_2_before_anything_changes(
    running: Stack, args: list[str], message: str
) -> None:
    done = harness("impair", "server", *args, "--project", running.project)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert sidecars(running) == []


def test_unknown_target_exits_2(running: Stack) -> None:
    done = harness("impair", "c99", "--delay", "1ms", "--project", running.project)
    assert done.returncode == 2 and "unknown target" in done.stderr, done.stderr
    assert harness("heal", "nowhere", "--project", running.project).returncode == 2
    assert sidecars(running) == []
