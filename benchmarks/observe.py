"""Observers that are not the fault: what the two ends of a connection see.

``make fidelity`` grades a fault only by what something other than its own mechanism measured,
so that a backend's counter is never checked against itself:

- **round trips** (delay, jitter): ``PROBE``, a client in a client container, times each
  exchange with its own clock (``TCP_NODELAY``, one request in flight, so neither Nagle nor
  delayed ACKs nor pipelining are in the figure).
- **datagrams** (loss, rate): ``SENDER`` runs in a container that shares the target server's
  network namespace, so its datagrams leave through the impaired egress like the server's
  replies; ``RECEIVER``, a client container on the lab network, counts which numbered datagrams
  arrived (loss) or the bytes that arrived over a window timed by its own clock (rate). Both
  read their namespace's kernel UDP counters too, so a drop in the receiver's own socket
  buffer shows up as such instead of as the fault's.

- **the host's timer floor** (beside a fault engine): ``TIMER``, a thread that does nothing but
  sleep to deadlines, with the engine's CPU weight: an engine in user space cannot release
  packets on time more often than such a thread wakes on time on the same host at the same time.

Neither container needs a capability: they are the client image, hardened as every client.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from docker.models.containers import Container

from harness import Lab, labels
from harness.containers import HARDENING
from harness.waiting import NotReady, wait_for

T = TypeVar("T")
UDP_PORT = 9999
CLOCKS = ("kernel", "user", "spin")
# What a datagram of ``n`` payload bytes is on an Ethernet link, as tbf and netem meter it
# (skb->len at the root qdisc) and as a veth's rx_bytes counts it: UDP 8 + IPv4 20 + Ethernet 14.
UDP_FRAME_OVERHEAD = 42

# Runs in a client container: one connection, TCP_NODELAY, one request in flight, ``gap``
# seconds of pause before each request. Prints the round trips in us, ended by the clock named:
# ``kernel`` (the default): when the reply's last segment reached the client's kernel
# (SO_TIMESTAMPNS, stamped on arrival), so the probe's own wake-up from recv is not counted as
# the network's; ``user``: when recv returned to the sleeping probe (what an application sees);
# ``spin``: the probe polls its socket (no wake-up, a core busy).
PROBE = r"""
import json, socket, struct, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gap, clock = float(sys.argv[4]), sys.argv[5]
SO_TIMESTAMPNS = 35  # <asm-generic/socket.h>; also the control message's type
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.setblocking(clock != "spin")
buf = b""
def exchange(i):
    global buf
    request = b"probe %08d\n" % i
    t0 = time.time_ns()
    s.send(request)
    stamp = None
    while b"\n" not in buf:
        try:
            data, ancillary, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(16))
        except BlockingIOError:
            continue
        if not data:
            raise SystemExit("server closed")
        buf += data
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value)
                stamp = seconds * 1_000_000_000 + nanoseconds
    t1 = time.time_ns()
    if clock == "kernel":
        if stamp is None:
            raise SystemExit("no receive timestamp from the kernel")
        t1 = stamp
    buf = buf.split(b"\n", 1)[1]
    return (t1 - t0) / 1e3
for i in range(5):
    exchange(i)
rtts = []
for i in range(n):
    if gap:
        time.sleep(gap)
    rtts.append(round(exchange(i), 1))
print(json.dumps({"rtt_us": rtts, "clock": clock}))
"""

_UDP_COUNTERS = r"""
def udp_counters():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))
"""

# Runs in the target's network namespace: ``count`` datagrams numbered 0.. of ``size`` bytes
# to host:port, paced at ``pps`` (on schedule: a late one is sent at once, not skipped). Every
# datagram that ``sendto`` accepted counts as sent; refusals are counted by errno, not sent.
SENDER = (
    _UDP_COUNTERS
    + r"""
import errno, json, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pps, size = float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = b"\0" * (size - 8)
before, sent, errors = udp_counters(), 0, {}
t0 = time.monotonic()
for i in range(count):
    late = t0 + i / pps - time.monotonic()
    if late > 0:
        time.sleep(late)
    try:
        s.sendto(i.to_bytes(8, "big") + pad, (host, port))
        sent += 1
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        errors[name] = errors.get(name, 0) + 1
seconds = time.monotonic() - t0
after = udp_counters()
kernel = {k: after[k] - before[k] for k in ("OutDatagrams", "SndbufErrors")}
print(json.dumps({"sent": sent, "errors": errors, "seconds": seconds, "kernel": kernel}))
"""
)

# Runs in a client container on the lab network. ``count``: the set of numbers that arrived,
# until ``idle`` seconds pass with none. ``rate``: from the first datagram ``skip`` seconds on,
# the datagrams of a ``window`` timed by this container's clock: the window opens at one
# arrival and closes at the first arrival ``window`` seconds later, and counts what arrived
# after the opening one up to the closing one (so n datagrams over the time they took); the
# interface's rx_bytes is read at the same two instants.
RECEIVER = (
    _UDP_COUNTERS
    + r"""
import json, socket, sys, time
port, mode, first = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
def rx_bytes():
    with open("/sys/class/net/eth0/statistics/rx_bytes") as f:
        return int(f.read())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", port))
before = udp_counters()
print(json.dumps({"ready": True}), flush=True)
s.settimeout(first)
if mode == "count":
    idle, seen, duplicates = float(sys.argv[4]), set(), 0
    while True:
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        s.settimeout(idle)
        seq = int.from_bytes(data[:8], "big")
        duplicates += seq in seen
        seen.add(seq)
    result = {"received": len(seen), "duplicates": duplicates, "highest": max(seen, default=-1)}
else:
    skip, window = float(sys.argv[4]), float(sys.argv[5])
    s.recv(65536)
    s.settimeout(2.0)
    opened = time.monotonic() + skip
    while time.monotonic() < opened:
        s.recv(65536)
    s.recv(65536)
    t0, rx0, n, payload = time.monotonic(), rx_bytes(), 0, 0
    while True:
        payload += len(s.recv(65536))
        t1 = time.monotonic()
        n += 1
        if t1 - t0 >= window:
            break
    rx1 = rx_bytes()
    result = {"seconds": t1 - t0, "datagrams": n, "payload_bytes": payload, "rx_bytes": rx1 - rx0}
after = udp_counters()
keys = ("InDatagrams", "RcvbufErrors", "InErrors", "NoPorts")
result["kernel"] = {k: after[k] - before[k] for k in keys}
print(json.dumps(result))
"""
)


def quantile(values: list[float], q: float) -> float:
    """The same order statistic for every series compared (shifts are differences of it)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rtts(
    lab: Lab,
    n: int,
    gap_s: float = 0.0,
    *,
    host: str = "server",
    port: int = 8899,
    clock: str = "kernel",
) -> list[float]:
    """Round trips in ms of ``n`` probe exchanges with ``host:port``, ended by ``clock``
    (see ``PROBE``)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock {clock!r}: one of {', '.join(CLOCKS)}")
    argv = ["-c", PROBE, host, str(port), str(n), repr(gap_s), clock]
    result = lab.run_command(argv, entrypoint=["python3"], timeout=60 + n * (gap_s + 1.0))
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"rtt_us"')]
    if result.exit_code != 0 or not lines:
        raise RuntimeError(f"probe failed ({result.exit_code}): {result.stderr[-2000:]}")
    return [us / 1e3 for us in json.loads(lines[-1])["rtt_us"]]


@dataclass(frozen=True)
class Flow:
    """What both ends of one datagram flow counted (``SENDER`` and ``RECEIVER``'s JSON)."""

    sender: dict[str, Any]
    receiver: dict[str, Any]


def _container(lab: Lab, role: str, script: str, args: list[str], **where: Any) -> Container:
    """A client-image container running ``script`` that belongs to the lab as its server does
    (the server's own labels, another role), so ``Lab.close()`` and the orphan sweep remove it
    whatever happens here."""
    owned = {k: v for k, v in (lab.server.labels or {}).items() if k != labels.ALIASES}
    container: Container = lab.docker.containers.create(
        lab.spec.client_image,
        entrypoint=["python3"],
        command=["-c", script, *args],
        name=f"{lab.id}-{role}",
        labels={**owned, labels.ROLE: "probe"},
        mem_limit="128m",
        pids_limit=16,
        **HARDENING,
        **where,
    )
    return container


# Runs in a client container (no network): sleeps to absolute deadlines ``period`` apart for
# ``seconds``, asking the kernel what the engine asks (``echolab_fault_engine.tuning``: 1 ns of
# timer slack, a 0.1 ms EEVDF slice, SCHED_FIFO), and prints how late each wake came.
TIMER = r"""
import ctypes, json, os, platform, sys, time
libc = ctypes.CDLL(None)
libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK, 1 ns
attr = (ctypes.c_uint32 * 12)(48)  # struct sched_attr: size 48, SCHED_OTHER
attr[6] = 100_000  # sched_runtime (the slice; its low 32 bits), 0.1 ms
sliced = libc.syscall({"x86_64": 314, "aarch64": 274}.get(platform.machine(), -1), 0, attr, 0)
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))  # as the engine, if granted
    realtime = True
except OSError:
    realtime = False
period, seconds = int(float(sys.argv[1]) * 1e9), float(sys.argv[2])
print('{"ready": true}', flush=True)
late, deadline = [], time.monotonic_ns()
end = deadline + int(seconds * 1e9)
while deadline < end:
    deadline += period
    time.sleep(max(0, deadline - time.monotonic_ns()) / 1e9)
    late.append((time.monotonic_ns() - deadline) / 1e3)
late.sort()
at = {f"late_us_p{q:g}": round(late[min(len(late) - 1, int(q / 100 * len(late)))], 1)
      for q in (50, 90, 99, 99.9)}
print(json.dumps({"n": len(late), **at, "late_us_max": round(late[-1], 1), "slice": sliced == 0,
                  "realtime": realtime}))
"""


def timer_floor(
    lab: Lab, period_s: float, seconds: float, scheduling: dict[str, Any]
) -> Callable[[], dict[str, Any]]:
    """Start ``TIMER`` now, with ``scheduling`` (the engine's CPU weight and real-time budget,
    ``sidecar.engine_scheduling()``); the returned function waits for it and gives its figures,
    and removes it."""
    args = [repr(period_s), repr(seconds)]
    name = f"timer-{secrets.token_hex(3)}"
    # root with SYS_NICE, as the engine's sidecar: granted SCHED_FIFO wherever the engine is
    where = {"network_mode": "none", "user": "0", "cap_add": ["SYS_NICE"], **scheduling}
    container = _container(lab, name, TIMER, args, **where)
    try:
        container.start()
        _wait_ready(container)
    except BaseException:
        container.remove(force=True)
        raise

    def result() -> dict[str, Any]:
        try:
            return _output(container, timeout=seconds + 60)
        finally:
            container.remove(force=True)

    return result


def _output(container: Container, timeout: float) -> dict[str, Any]:
    code = int(container.wait(timeout=timeout)["StatusCode"])
    out = bytes(container.logs(stdout=True, stderr=False)).decode("utf-8", "replace")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        err = bytes(container.logs(stdout=False, stderr=True)).decode("utf-8", "replace")
        raise RuntimeError(f"{container.name} failed ({code}): {err[-2000:]}")
    return dict(json.loads(lines[-1]))


def _wait_ready(container: Container) -> None:
    def ready() -> None:
        container.reload()
        if container.status in ("exited", "dead"):
            raise RuntimeError(f"{container.name} exited: {bytes(container.logs()).decode()}")
        if b'"ready"' not in bytes(container.logs(stdout=True, stderr=False)):
            raise NotReady(f"status={container.status}")

    wait_for(f"{container.name} to say it is ready", ready, timeout=60)


def flow(
    lab: Lab,
    receiver: list[str],
    *,
    count: int,
    pps: float,
    size: int,
    during: Callable[[], T] | None = None,
    timeout: float = 600.0,
) -> tuple[Flow, T | None]:
    """``count`` datagrams of ``size`` bytes at ``pps`` from the server's namespace to a
    receiver on the lab network (``RECEIVER`` with ``receiver`` as its mode and arguments);
    ``during()`` runs while they flow, and its result is returned beside what both counted."""
    tag = secrets.token_hex(3)
    rx = _container(lab, f"udp-rx-{tag}", RECEIVER, [str(UDP_PORT), *receiver], network=lab.network)
    tx: Container | None = None
    try:
        rx.start()
        _wait_ready(rx)
        rx.reload()
        address = rx.attrs["NetworkSettings"]["Networks"][lab.network]["IPAddress"]
        args = [address, str(UDP_PORT), str(count), repr(pps), str(size)]
        tx = _container(
            lab, f"udp-tx-{tag}", SENDER, args, network_mode=f"container:{lab.server.id}"
        )
        tx.start()
        during_result = during() if during is not None else None
        sent = _output(tx, timeout)
        return Flow(sent, _output(rx, timeout)), during_result
    finally:
        for container in (tx, rx):
            if container is not None:
                container.remove(force=True)


def count_datagrams(lab: Lab, count: int, pps: float, size: int = 100) -> Flow:
    """Numbered datagrams sent and which of them arrived (the receiver stops 3 s after the
    last arrival)."""
    return flow(lab, ["count", "60", "3"], count=count, pps=pps, size=size)[0]


def rate_window(
    lab: Lab,
    bits: float,
    skip_s: float,
    window_s: float,
    during: Callable[[], T],
    size: int = 1400,
) -> tuple[Flow, T | None]:
    """A flow 20 % above ``bits`` per second (so the shaper's queue never runs empty), and the
    receiver's window of it; the sender stops after the window, with 3 s of margin."""
    pps = 1.2 * bits / 8 / (size + UDP_FRAME_OVERHEAD)
    count = int(pps * (skip_s + window_s + 3.0))
    receiver = ["rate", "60", repr(skip_s), repr(window_s)]
    return flow(lab, receiver, count=count, pps=pps, size=size, during=during)


def cpu_ns(container: Container) -> int:
    """CPU time a container has used so far (its cgroup's cpuacct, via the Docker API)."""
    stats: dict[str, Any] = container.stats(stream=False, one_shot=True)  # type: ignore[assignment]
    return int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
