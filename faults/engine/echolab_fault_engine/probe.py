"""What this kernel can do, tried for real in a throwaway network namespace (``--network none``).

Trying is the only reliable test: /proc/config.gz may be absent, and a module built as ``=m`` may
or may not load from a container. Each probe adds something to ``lo`` of a namespace that dies
with the container, so nothing on the host changes. Prints one JSON object.
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import subprocess
import time
from typing import Any

from echolab_fault_engine.nfq import Packet, bind


def _run(argv: list[str]) -> tuple[bool, str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


def probe_qdisc(kind: list[str]) -> dict[str, Any]:
    ok, detail = _run(["tc", "qdisc", "add", "dev", "lo", "root", *kind])
    if ok:
        _run(["tc", "qdisc", "del", "dev", "lo", "root"])
    return {"ok": ok, "detail": detail or "applied and removed on lo"}


def probe_nfqueue(queue_num: int = 0) -> dict[str, Any]:
    rule = ["OUTPUT", "-o", "lo", "-p", "udp", "--dport", "9"]
    target = ["-j", "NFQUEUE", "--queue-num", str(queue_num), "--queue-bypass"]
    seen: list[bool] = []

    def on_packet(packet: Packet) -> None:
        seen.append(True)
        packet.accept()

    try:
        queue = bind(queue_num, on_packet)
    except ImportError as error:
        return {"ok": False, "detail": f"no NetfilterQueue binding: {error}"}
    except OSError as error:
        return {"ok": False, "detail": f"cannot bind queue {queue_num}: {error}"}
    try:
        ok, detail = _run(["iptables", "-A", *rule, *target])
        if not ok:
            return {"ok": False, "detail": f"iptables NFQUEUE rule refused: {detail}"}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"probe", ("127.0.0.1", 9))
        deadline = time.monotonic() + 2.0
        while not seen and time.monotonic() < deadline:
            if select.select([queue.get_fd()], [], [], 0.1)[0]:
                queue.run(block=False)
        _run(["iptables", "-D", *rule, *target])
        if not seen:
            return {"ok": False, "detail": "rule added but no packet reached the queue"}
        return {"ok": True, "detail": "a packet went through the queue and was accepted"}
    finally:
        queue.unbind()


def kernel_config() -> dict[str, str]:
    wanted = ("CONFIG_NET_SCH_NETEM", "CONFIG_NET_SCH_TBF", "CONFIG_NETFILTER_XT_TARGET_NFQUEUE")
    try:
        with gzip.open("/proc/config.gz", "rt") as file:
            text = file.read()
    except OSError:
        return {}
    found = {name: "not set" for name in wanted}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name in found:
            found[name] = value
    return found


def probe() -> dict[str, Any]:
    return {
        "netem": probe_qdisc(["netem", "delay", "1ms"]),
        "tbf": probe_qdisc(["tbf", "rate", "1mbit", "burst", "16kb", "latency", "50ms"]),
        "nfqueue": probe_nfqueue(),
        "kernel_config": kernel_config(),
    }


def main() -> int:
    print(json.dumps(probe()), flush=True)
    return 0
