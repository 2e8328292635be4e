"""The engine's two packet loops, the compiled one (``echolab_fastloop``, the default) and the
Python one, on a real NFQUEUE: numbered UDP datagrams through the engine on ``lo`` of a
container of the engine image (``--network none``, NET_ADMIN only).

Both must take the same seeded decisions packet for packet (the set that arrives is the set
``Schedule`` keeps), hold every packet at least its delay, keep order unless told to reorder,
and count what they did the same way.
"""

from __future__ import annotations

import json
from typing import Any

import docker
import pytest
from echolab_fault_engine.schedule import Schedule

from harness import labels

# Runs in the engine image: the engine as a subprocess, an NFQUEUE rule on lo for UDP port 9,
# ``n`` datagrams ``gap`` s apart (each carries its number and send time), a receiver thread;
# prints what arrived, with each one's one-way delay, and the engine's last counters.
SCRIPT = r"""
import json, socket, subprocess, sys, threading, time
n, gap, engine_args = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
rule = ["OUTPUT", "-o", "lo", "-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", "0",
        "--queue-bypass"]
subprocess.run(["iptables", "-A", *rule], check=True)
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 9))
rx.settimeout(1.0)
got = []
def receive():
    while True:
        try:
            data = rx.recv(100)
        except socket.timeout:
            return
        number, sent = data.split()
        got.append([int(number), round((time.monotonic() - float(sent)) * 1e6, 1)])
engine = subprocess.Popen(["python3", "-m", "echolab_fault_engine", "run", *engine_args],
                          stdout=subprocess.PIPE, text=True)
ready = json.loads(engine.stdout.readline())
receiver = threading.Thread(target=receive)
receiver.start()
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    tx.sendto(b"%d %.9f" % (i, time.monotonic()), ("127.0.0.1", 9))
    time.sleep(gap)
receiver.join(timeout=30)
engine.terminate()
last = [json.loads(line) for line in engine.communicate(timeout=30)[0].splitlines() if line]
print(json.dumps({"ready": ready, "got": got, "stats": last[-1], "exit": engine.returncode}))
"""


def through_engine(client: docker.DockerClient, image: str, n: int, *args: str) -> dict[str, Any]:
    output = client.containers.run(
        image,
        ["-c", SCRIPT, str(n), "0.0005", *args],
        entrypoint=["python3"],
        remove=True,
        network_mode="none",
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN"],
        labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: "probe"},
    )
    result: dict[str, Any] = json.loads(bytes(output).decode().splitlines()[-1])
    return result


@pytest.mark.parametrize("loop", ["compiled", "python"])
def test_both_loops_keep_the_seeded_decisions_the_delay_and_the_order(
    docker_client: docker.DockerClient, sidecar_image: str, loop: str
) -> None:
    n, delay_us = 400, 2000
    args = ["--delay-us", str(delay_us), "--loss", "0.2", "--seed", "5", "--loop", loop]
    result = through_engine(docker_client, sidecar_image, n, *args)
    schedule = Schedule(delay_s=delay_us / 1e6, loss=0.2, seed=5)
    kept = [i for i in range(n) if schedule.decide(float(i)) is not None]
    numbers = [number for number, _ in result["got"]]
    assert result["ready"]["loop"] == loop and result["exit"] == 0
    assert numbers == kept  # the same packets dropped as the seeded schedule, in order
    assert min(delay for _, delay in result["got"]) >= delay_us  # none released early
    stats = result["stats"]
    assert (stats["seen"], stats["dropped"], stats["released"]) == (n, n - len(kept), len(kept))
    assert stats["late_us_p50"] is not None and stats["held_us_p50"] >= delay_us
    if loop == "compiled":
        assert stats["loop"] == "compiled" and stats["queue_overflows"] == 0


def test_compiled_loop_reorders_only_when_told_and_releases_all_it_holds(
    docker_client: docker.DockerClient, sidecar_image: str
) -> None:
    jitter = ["--delay-us", "3000", "--jitter-us", "2500", "--seed", "3"]
    ordered = through_engine(docker_client, sidecar_image, 300, *jitter)
    numbers = [number for number, _ in ordered["got"]]
    assert numbers == list(range(300))  # jitter, but keep_order: a flow is never reordered
    reordered = through_engine(docker_client, sidecar_image, 300, *jitter, "--reorder")
    numbers = [number for number, _ in reordered["got"]]
    assert sorted(numbers) == list(range(300)) and numbers != sorted(numbers)
    assert min(delay for _, delay in reordered["got"]) >= 500  # delay - jitter
    # Stopped with packets held (10 s each): they are released, not dropped.
    held = through_engine(docker_client, sidecar_image, 50, "--delay-us", "10000000")
    assert held["stats"]["seen"] == 50 and held["stats"]["released"] == 50
