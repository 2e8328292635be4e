"""The payload run inside the netem VM (Python 3.11, standard library only): the plans, for real.

Why here: the plans are argument vectors for ``tc``/``ip`` inside a container's network
namespace. This recreates that: a target namespace whose interface is ``eth0`` (what the harness
assumes), joined by a veth pair to a client namespace. A UDP and TCP echo server runs in the
target. For each case the host sent (``netem_vm.cases()``), the payload measures a baseline, runs
every ``apply`` argv in the target namespace (``ip netns exec``), measures, runs the ``update``
argv, measures, runs every ``remove`` argv (failures ignored, as the harness does), checks that
no qdisc or ifb is left, and measures again. One ``ECHOLAB-NETEM {json}`` line per case goes to
the console; the host judges the figures (the payload only measures).

    python3 netem_payload.py PLANS.json     # as the VM's init runs it
    python3 netem_payload.py serve ADDRESS  # the echo servers (in the target namespace)
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from typing import Any

CLIENT_NS = "echolab-client"
TARGET_NS = "echolab-target"
CLIENT_IP = "10.99.0.1"
TARGET_IP = "10.99.0.2"
PORT = 7
PREFIX = "ECHOLAB-NETEM "
COMMAND_TIMEOUT = 20.0
CLONE_NEWNET = 0x40000000
# Loaded up front, as on a Docker host (a container cannot load modules). numifbs=0: the
# module's own ifb0/ifb1 would otherwise appear in the initial namespace.
MODULES = (
    ["veth"],
    ["ifb", "numifbs=0"],
    ["sch_netem"],
    ["sch_ingress"],
    ["sch_tbf"],
    ["cls_u32"],
    ["act_mirred"],
)
SYSCTLS = {
    "net/core/rmem_max": str(16 << 20),
    "net/core/wmem_max": str(16 << 20),
    "net/core/netdev_max_backlog": "100000",
}
PROBE = struct.Struct("!Id")  # sequence number, send time (monotonic seconds)


def emit(record: dict[str, Any]) -> None:
    print(PREFIX + json.dumps(record, separators=(",", ":")), flush=True)


def run(argv: list[str], check: bool = True) -> dict[str, Any]:
    """Run one command; its argv, exit status and output, for the record."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    record = {"argv": argv, "rc": done.returncode, "stderr": done.stderr.strip()}
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return record


def in_target(argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", TARGET_NS, *argv]


def enter_namespace(name: str) -> None:
    """setns(2) through libc: Python 3.11 has no os.setns, and this process stays
    single-threaded until it has moved (a namespace switch applies to the calling thread)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


def setup() -> subprocess.Popen[bytes]:
    """Modules, the two namespaces and their veth pair, the echo servers in the target."""
    for module in MODULES:
        run(["modprobe", *module])
    # An emulated vCPU stalls now and then (the host is shared): deep socket buffers and
    # backlog, so that a stall delays echoes instead of adding drops to netem's loss.
    for key, value in SYSCTLS.items():
        with open(f"/proc/sys/{key}", "w") as handle:
            handle.write(value)
    for name in (CLIENT_NS, TARGET_NS):
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
    run(
        ["ip", "link", "add", "veth-c", "netns", CLIENT_NS, "type", "veth",
         "peer", "name", "eth0", "netns", TARGET_NS]
    )  # fmt: skip
    run(["ip", "-n", CLIENT_NS, "addr", "add", f"{CLIENT_IP}/24", "dev", "veth-c"])
    run(["ip", "-n", TARGET_NS, "addr", "add", f"{TARGET_IP}/24", "dev", "eth0"])
    run(["ip", "-n", CLIENT_NS, "link", "set", "veth-c", "up"])
    run(["ip", "-n", TARGET_NS, "link", "set", "eth0", "up"])
    server = subprocess.Popen(
        in_target([sys.executable, "-u", os.path.abspath(__file__), "serve", TARGET_IP]),
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    if server.stdout.readline().strip() != b"ready":
        raise RuntimeError("the echo servers did not start")
    enter_namespace(CLIENT_NS)
    return server


def serve(address: str) -> None:
    """UDP echo (one datagram back per datagram) and TCP echo (a thread per connection)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    udp.bind((address, PORT))
    tcp = socket.create_server((address, PORT))

    def udp_loop() -> None:
        while True:
            data, peer = udp.recvfrom(65536)
            udp.sendto(data, peer)

    def tcp_echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=udp_loop, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = tcp.accept()
        threading.Thread(target=tcp_echo, args=(conn,), daemon=True).start()


def udp_probe(count: int, interval: float, drain: float, size: int = 64) -> dict[str, Any]:
    """``count`` probes paced ``interval`` apart (pipelined, so a 60 ms delay costs 60 ms, not
    60 ms per probe); round-trip times of the echoes that came back until ``drain`` passed
    with none (on a slow emulated guest a burst's echoes queue behind its own echo server for
    longer than any fixed wait: still arriving, they are not lost)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.connect((TARGET_IP, PORT))
    sock.setblocking(False)
    padding = b"\0" * max(0, size - PROBE.size)
    rtts: dict[int, float] = {}
    arrival: list[int] = []
    sent = 0
    next_send = time.monotonic()
    deadline = float("inf")
    with sock:
        while len(rtts) < count:
            now = time.monotonic()
            if sent < count and now >= next_send:
                sock.send(PROBE.pack(sent, now) + padding)
                sent += 1
                next_send += interval
                if sent == count:
                    deadline = now + drain
                continue
            if now >= deadline:
                break
            wait = (next_send if sent < count else deadline) - now
            ready, _, _ = select.select([sock], [], [], max(wait, 0.0))
            while ready:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                seq, at = PROBE.unpack_from(data)
                rtts[seq] = time.monotonic() - at
                arrival.append(seq)
                if sent == count:
                    deadline = time.monotonic() + drain
    values = sorted(v * 1e3 for v in rtts.values())
    reordered = sum(1 for a, b in itertools.pairwise(arrival) if b < a)
    result: dict[str, Any] = {"sent": sent, "received": len(values)}
    result["loss"] = 1 - len(values) / sent if sent else None
    if values:
        result.update(
            median_ms=statistics.median(values),
            p10_ms=values[len(values) // 10],
            p25_ms=values[len(values) // 4],
            p75_ms=values[len(values) * 3 // 4],
            p90_ms=values[len(values) * 9 // 10],
            stdev_ms=statistics.pstdev(values),
            reordered=reordered,
        )
    return result


def tcp_rate(rate: int, seconds: float = 1.0, skip: int = 48 * 1024) -> dict[str, Any]:
    """Echo ``skip`` bytes plus ``seconds`` worth at ``rate`` through TCP; time the replies.

    The echo's way back leaves the target by its egress, where the rate is set. The clock
    starts once ``skip`` reply bytes are in, and counts only the bytes after: connection
    set-up, the first round trip and tbf's burst (16 KiB at once from a full bucket) are out.
    """
    total = skip + int(rate / 8 * seconds)
    chunk = b"x" * 16384
    sock = socket.create_connection((TARGET_IP, PORT), timeout=COMMAND_TIMEOUT)

    def send() -> None:
        left = total
        while left > 0:
            left -= sock.send(chunk[: min(left, len(chunk))])
        sock.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    with sock:
        mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        sender.start()
        # Whole reads only: the echo leaves as GSO packets of up to 64 KiB that netem and
        # tbf time (and deliver) as one, so the clock starts and stops at a packet's arrival.
        received = 0
        while received < skip:
            received += len(sock.recv(65536))
        start, got = time.monotonic(), 0
        while received + got < total:
            data = sock.recv(65536)
            if not data:
                break
            got += len(data)
        elapsed = time.monotonic() - start
        sender.join(COMMAND_TIMEOUT)
    goodput = got * 8 / elapsed
    # What the qdisc counts: each MSS of payload travels in a frame 66 bytes larger (Ethernet 14,
    # IPv4 20, TCP with timestamps 32).
    return {
        "bytes": got,
        "seconds": elapsed,
        "mss": mss,
        "goodput_bps": goodput,
        "wire_bps": goodput * (mss + 66) / mss,
    }


def udp_drops() -> dict[str, int]:
    """Datagrams the kernels dropped for full receive buffers (client and target) and the
    backlog's drops (softnet_stat, all namespaces)."""
    counts: dict[str, int] = {}
    for name, argv in (("client", ["cat"]), ("target", in_target(["cat"]))):
        snmp = subprocess.run(
            [*argv, "/proc/net/snmp"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        ).stdout
        header, values = [line.split() for line in snmp.splitlines() if line.startswith("Udp:")]
        counts[f"{name}_rcvbuf"] = int(dict(zip(header, values, strict=True))["RcvbufErrors"])
    with open("/proc/net/softnet_stat") as handle:
        counts["backlog"] = sum(int(line.split()[1], 16) for line in handle)
    return counts


class StallWatch:
    """Notices when the guest was not running: an emulated vCPU on a busy shared host is
    descheduled for tens of ms at a time, which shows as late echoes and, once it runs again,
    a catch-up burst. A thread sleeps 1 ms at a time and keeps each oversleep of over 5 ms."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float]] = []  # (when it ended, how long), seconds
        threading.Thread(target=self._run, name="stall-watch", daemon=True).start()

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(0.001)
            now = time.monotonic()
            if now - last > 0.005:
                self.gaps.append((now, now - last))
            last = now

    def worst_since(self, start: float) -> float:
        """The longest stall since ``start``, in ms."""
        return max((gap for end, gap in self.gaps if end >= start), default=0.0) * 1e3


WATCH: StallWatch | None = None
STALL_LIMIT_MS = 15.0  # the guest's own GIL hand-offs (5 ms) and timer slack stay below
ATTEMPTS = 3


def measure(probe: str, expect: dict[str, Any] | None) -> dict[str, Any]:
    """``measure_once`` until no stall of over STALL_LIMIT_MS spoiled it (at most ATTEMPTS);
    the least stalled one otherwise. A wrong plan is wrong every time: this only drops
    measurements the host, not the kernel, distorted. Each says its stall and attempts."""
    best: dict[str, Any] | None = None
    for attempt in range(1, ATTEMPTS + 1):
        start = time.monotonic()
        result = measure_once(probe, expect)
        result["stall_ms"] = WATCH.worst_since(start) if WATCH else 0.0
        result["attempts"] = attempt
        if best is None or result["stall_ms"] < best["stall_ms"]:
            best = result
        if result["stall_ms"] <= STALL_LIMIT_MS:
            break
    assert best is not None
    best["attempts"] = attempt
    return best


def measure_once(probe: str, expect: dict[str, Any] | None) -> dict[str, Any]:
    """One measurement of a case's kind; ``None`` is the unimpaired check (baseline, after
    removal): round-trip times, or a short loss count for the loss cases. The counts are
    sized for a 1-vCPU emulated guest: 5000 datagrams put the loss within +-2 points at
    three standard deviations or more, 100 probes pin a median delay."""
    if expect is None:
        # Round trips from paced probes only: a burst queues behind the guest's own echo
        # server, which is the emulator's speed, not a delay left in place.
        paced = udp_probe(50, 0.002, 0.5)
        if probe == "loss":
            burst = udp_probe(500, 0.0002, 0.5)
            paced.update(sent=paced["sent"] + burst["sent"], loss=max(paced["loss"], burst["loss"]))
        return paced
    if probe in ("delay", "jitter"):
        drain = 0.5 + 3 * expect["delay_ms"] / 1e3
        if probe == "delay":
            return udp_probe(100, 0.002, drain)
        # Order is kept (as the harness asks netem), so a probe drawn early waits for the one
        # before it: pace them further apart than the draws spread (+-4 jitter) so none waits,
        # and the spread measured is the distribution's own.
        return udp_probe(200, max(0.002, 8 * expect["jitter_ms"] / 1e3), drain)
    if probe == "loss":
        before = udp_drops()
        result = udp_probe(5000, 0.0002, 0.5)
        after = udp_drops()
        # Drops that are not netem's (full socket buffers, backlog): should stay 0.
        result["other_drops"] = {k: after[k] - before[k] for k in after}
        return result
    if probe == "rate":
        return tcp_rate(int(expect["rate_bps"]))
    raise ValueError(f"unknown probe {probe!r}")


def state() -> dict[str, str]:
    """The target's qdiscs, ingress filters and links, as text (for the record and the leftover
    check); one process for the three, as each start costs tens of ms in an emulated guest."""
    script = (
        "tc qdisc show; echo @@; tc filter show dev eth0 ingress 2>/dev/null; echo @@; "
        "ip -o link show"
    )
    done = subprocess.run(
        in_target(["sh", "-c", script]), capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    qdiscs, filters, links = [*done.stdout.split("@@\n"), "", "", ""][:3]
    return {"qdiscs": qdiscs, "ingress_filters": filters, "links": links}


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    probe = case["probe"]
    expect = case["expect"]
    record: dict[str, Any] = {"case": case["name"], "backend": case["backend"], "probe": probe}
    record["expect"] = expect
    record["baseline"] = measure(probe, None)
    record["apply"] = [run(in_target(argv), check=False) for argv in case["apply"]]
    record["applied_state"] = state()
    record["applied"] = measure(probe, expect["applied"])
    record["update"] = [run(in_target(argv), check=False) for argv in case["update"]]
    record["updated_state"] = state()
    record["updated"] = measure(probe, expect["updated"])
    record["remove"] = [run(in_target(argv), check=False) for argv in case["remove"]]
    record["removed_state"] = state()
    record["removed"] = measure(probe, None)
    return record


def main(plans_path: str) -> int:
    with open(plans_path) as handle:
        plans = json.load(handle)
    emit({"event": "kernel", "release": os.uname().release})
    server = setup()
    global WATCH
    WATCH = StallWatch()
    failures = 0
    try:
        for case in plans["cases"]:
            started = time.monotonic()
            try:
                record = run_case(case)
            except Exception as error:  # one broken case must not hide the others' results
                failures += 1
                record = {"case": case["name"], "error": f"{type(error).__name__}: {error}"}
            record["case_seconds"] = round(time.monotonic() - started, 2)
            emit(record)
    finally:
        server.kill()
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1]))
