"""How faithfully each fault backend applies what it is given: configured vs observed.

For each backend this host has (``netem`` where the kernel has sch_netem; else the NFQUEUE
engine, with kernel ``tbf`` for rate), against one server whose egress is impaired:

- **delay** 1, 10, 100, 500 ms: a probe client (``PROBE``: blocking socket, ``TCP_NODELAY``,
  one request at a time, so no Nagle, no delayed-ACK wait and no pipelining in the figure) in a
  client container. The reference is an *idle-matched* baseline: the same probe, unimpaired,
  pausing ``delay`` before each request. Under a delay both ends sit idle for ``delay`` between
  packets, and on this host an idle CPU wakes late (a 10 ms pause adds ~0.15 ms to an
  unimpaired round trip); that belongs to the host, not to the fault, so the figure is the
  shift of each quantile: ``q(rtt under delay) - q(rtt of the idle-matched baseline)``, for
  the median and p90. Bound: within 0.2 ms + 1 %. The shift against the back-to-back
  baseline's median (the old figure) and the engine's own log of what it held are reported too.
- **jitter** 20 ms +- 5 ms, uniform (netem's default), so the configured standard deviation
  is 5/sqrt(3) = 2.887 ms; paced so that no packet waits for an earlier one. Observed: the
  stdev of the probe's round trips, and the engine's log (the delays it drew and held).
  Bound: observed stdev within 10 %.
- **loss** 1 % and 10 %, counted at the engine (packets seen and dropped) over >= 10,000
  packets. Bound: within 1 percentage point.
- **rate** 1 and 10 Mbit/s: over a steady 4 s window timed inside the sidecar, the bytes tbf
  sent (``tc -s qdisc``: every segment with its headers, what tbf meters: the *wire* figure),
  the device's ``tx_bytes`` (which counts a GSO packet's headers once, so it reads low), and
  the echo payload the clients got. Bound: wire +-2 %.
- **CPU** of the sidecar at ~10,000 messages/s (its cgroup's cpuacct, via the Docker API), for
  the engine with 1 ms delay; tbf and netem work in the kernel's softirq, charged to no container.

A figure, never a timed test. Prints a table and writes results/fidelity.json.

    .venv/bin/python benchmarks/fidelity.py [--quick] [--spin] [--out results/fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from harness import Lab, LabSpec, Workload
from harness.faults import apply, bandwidth, impair, parse_duration, preflight
from harness.faults import image as fault_image
from harness.results import ClientResult

Row = dict[str, Any]

# Runs in a client container (the client image's python3): one connection to the server,
# TCP_NODELAY, one request in flight, ``gap`` seconds of pause before each request; with
# ``spin`` it polls its socket instead of sleeping in recv. Prints the round trips in us.
PROBE = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gap, spin = float(sys.argv[4]), sys.argv[5] == "1"
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setblocking(not spin)
buf = b""
def exchange(i):
    global buf
    request = b"probe %08d\n" % i
    t0 = time.perf_counter()
    s.send(request)
    while b"\n" not in buf:
        try:
            data = s.recv(4096)
        except BlockingIOError:
            continue
        if not data:
            raise SystemExit("server closed")
        buf += data
    t1 = time.perf_counter()
    buf = buf.split(b"\n", 1)[1]
    return (t1 - t0) * 1e6
for i in range(5):
    exchange(i)
rtts = []
for i in range(n):
    if gap:
        time.sleep(gap)
    rtts.append(round(exchange(i), 1))
print(json.dumps({"rtt_us": rtts}))
"""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rtts(clients: list[ClientResult], skip: int = 3) -> list[float]:
    return [r for c in clients for r in c.rtts_ms()[skip:]]


def probe(lab: Lab, n: int, gap_s: float = 0.0, spin: bool = False) -> list[float]:
    """Round trips in ms of ``n`` probe exchanges (see ``PROBE``)."""
    argv = ["-c", PROBE, "server", "8899", str(n), repr(gap_s), "1" if spin else "0"]
    timeout = 60 + n * (gap_s + 1.0)
    result = lab.run_command(argv, entrypoint=["python3"], timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"rtt_us"')]
    if result.exit_code != 0 or not lines:
        raise RuntimeError(f"probe failed ({result.exit_code}): {result.stderr[-2000:]}")
    return [us / 1e3 for us in json.loads(lines[-1])["rtt_us"]]


def baseline(lab: Lab, count: int, spin: bool = False) -> float:
    return statistics.median(probe(lab, count, spin=spin))


def shift(observed: list[float], reference: list[float], q: float) -> float:
    return quantile(observed, q) - quantile(reference, q)


def bench_delay(
    lab: Lab, backend: str, base: float, delays: list[str], count: int, spin: bool = False
) -> list[Row]:
    rows = []
    for delay in delays:
        configured = parse_duration(delay) * 1e3
        n = max(30, min(count, int(15_000 / configured)))  # 500 ms: 30 exchanges, 15 s
        idle = probe(lab, n, gap_s=configured / 1e3, spin=spin)  # unimpaired, idle as long
        with impair(lab, "server", delay=delay, backend=backend) as applied:
            impaired = probe(lab, n, spin=spin)
        rows.append(
            {
                **delay_row(applied.backend, configured, impaired, idle),
                "vs_back_to_back_median_ms": round(statistics.median(impaired) - base, 3),
                "vs_back_to_back_p90_ms": round(quantile(impaired, 0.9) - base, 3),
                "engine": next(iter(applied.engine_stats().values())),
            }
        )
    return rows


def delay_row(backend: str, configured: float, impaired: list[float], idle: list[float]) -> Row:
    """The delay row of any backend: the shift of the median and p90 against the idle-matched
    baseline, and whether both are within 0.2 ms + 1 % of ``configured`` (ms)."""
    bound = 0.2 + 0.01 * configured
    med, p90 = shift(impaired, idle, 0.5), shift(impaired, idle, 0.9)
    return {
        "kind": "delay",
        "backend": backend,
        "configured": f"{configured:g} ms",
        "observed": f"median +{med:.3f} ms, p90 +{p90:.3f} ms",
        "bound": f"+-{bound:.2f} ms",
        "ok": abs(med - configured) <= bound and abs(p90 - configured) <= bound,
        "n": len(impaired),
        "median_added_ms": round(med, 3),
        "p90_added_ms": round(p90, 3),
        "idle_baseline_ms": {
            "median": round(statistics.median(idle), 3),
            "p90": round(quantile(idle, 0.9), 3),
        },
    }


def bench_jitter(lab: Lab, backend: str, count: int, spin: bool = False) -> Row:
    delay, jitter = 20.0, 5.0
    gap = 0.030  # 30 ms idle between exchanges: no packet waits for an earlier one
    idle = probe(lab, count, gap_s=gap + delay / 1e3, spin=spin)
    with impair(lab, "server", delay="20ms", jitter="5ms", seed=7, backend=backend) as applied:
        impaired = probe(lab, count, gap_s=gap, spin=spin)
    stats = next(iter(applied.engine_stats().values()))
    expected = jitter / math.sqrt(3)
    observed = statistics.stdev(impaired)
    noise = statistics.stdev(idle)
    # The host's own spread (the idle-matched baseline) adds to the fault's in variance.
    corrected = math.sqrt(max(0.0, observed**2 - noise**2))
    held_std = (stats.get("held_us_std") or 0.0) / 1e3
    return {
        "kind": "jitter",
        "backend": applied.backend,
        "configured": f"{delay:g} +- {jitter:g} ms uniform (stdev {expected:.3f})",
        "observed": f"stdev {observed:.3f} ms (engine held {held_std:.3f})",
        "bound": "stdev +-10 %",
        "ok": abs(observed - expected) <= 0.1 * expected,
        "n": len(impaired),
        "stdev_ms": round(observed, 3),
        "expected_stdev_ms": round(expected, 3),
        "mean_added_ms": round(statistics.mean(impaired) - statistics.mean(idle), 3),
        "idle_baseline_stdev_ms": round(noise, 3),
        "noise_corrected_stdev_ms": round(corrected, 3),
        "engine_drawn_stdev_ms": (stats.get("drawn_us_std") or 0.0) / 1e3,
        "engine_held_stdev_ms": held_std,
        "engine": stats,
    }


def bench_loss(lab: Lab, backend: str, loss: str, packets: int) -> Row:
    configured = float(loss.rstrip("%"))
    applied = apply(lab, "server", loss=loss, seed=11, backend=backend)
    try:
        seen = 0
        while seen < packets:  # 4 clients x pipelined messages until the engine saw enough
            lab.run_clients(4, Workload(count=2000, pipeline=8, timeout=600)).assert_ok()
            if applied.backend == "netem":
                break
            seen = next(iter(applied.status().values()))["seen"]
    finally:
        applied.remove()
    stats = next(iter(applied.engine_stats().values()))
    if not stats.get("seen"):
        return {
            "kind": "loss",
            "backend": applied.backend,
            "configured": loss,
            "ok": None,
            "observed": "not counted (netem keeps no per-fault count here)",
            "bound": "+-1 pt",
        }
    observed = 100.0 * stats["dropped"] / stats["seen"]
    return {
        "kind": "loss",
        "backend": applied.backend,
        "configured": loss,
        "observed": f"{observed:.2f} % ({stats['dropped']}/{stats['seen']} packets)",
        "bound": "+-1 pt",
        "ok": abs(observed - configured) <= 1.0,
        "n": stats["seen"],
        "observed_pct": round(observed, 3),
    }


# Runs in the sidecar (python3, tc): the counters at both ends of a window timed there, so
# docker exec's own latency is not in the figure.
WINDOW = r"""
import json, subprocess, sys, time
def read():
    with open("/sys/class/net/eth0/statistics/tx_bytes") as f:
        tx = int(f.read())
    with open("/sys/class/net/eth0/statistics/tx_packets") as f:
        tx_packets = int(f.read())
    argv = ["tc", "-s", "qdisc", "show", "dev", "eth0"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    words = out.split()
    at = words.index("Sent")
    return time.monotonic(), tx, tx_packets, int(words[at + 1]), int(words[at + 3]), out
t0, tx0, txp0, q0, qp0, _ = read()
time.sleep(float(sys.argv[1]))
t1, tx1, txp1, q1, qp1, text = read()
print(json.dumps({
    "seconds": t1 - t0, "tx_bytes": tx1 - tx0, "tx_packets": txp1 - txp0,
    "qdisc_bytes": q1 - q0, "qdisc_packets": qp1 - qp0, "qdisc": text,
}))
"""


def _window(sidecar: Any, seconds: float) -> dict[str, Any]:
    code, out = sidecar.exec_run(["python3", "-c", WINDOW, str(seconds)])
    if code != 0:
        raise RuntimeError(f"rate window failed: {out.decode()[-2000:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def bench_rate(lab: Lab, backend: str, rate: str) -> Row:
    bits = {"1mbit": 1e6, "10mbit": 1e7}[rate]
    size = 1024
    # Long enough that one refill of tbf's bucket (after the queue ran empty for a moment,
    # e.g. while TCP recovers a tail drop) is <= 1 % of the bytes: 16 KiB at 1 Mbit/s is
    # 3.3 % of a 4 s window, and 1 Mbit/s once read +2.3 % over 4 s for that reason.
    window_s = max(4.0, bandwidth.burst_bytes(int(bits)) * 8 / (0.01 * bits))
    seconds = window_s + 6.0
    # per client, 4 clients x 64 outstanding: enough in flight that tbf's queue never drains
    count = int(bits / 8 / (size + 27) * seconds / 4) + 1
    with impair(lab, "server", rate=rate, backend=backend) as applied:
        sidecar = applied.sidecars[0].container
        assert sidecar is not None
        run = lab.start_clients(4, Workload(count=count, size=size, pipeline=64, timeout=600))
        time.sleep(2.0)  # past slow start and the first burst
        window = _window(sidecar, window_s)
        result = run.wait()
    result.assert_ok()
    wire = window["qdisc_bytes"] * 8 / window["seconds"]
    device = window["tx_bytes"] * 8 / window["seconds"]
    received = [e.received for c in result.clients for e in c.exchanges]
    payload = len(received) * (size + 27) * 8 / (max(received) - min(received)) if received else 0.0
    return {
        "kind": "rate",
        "backend": applied.backend,
        "configured": f"{bits / 1e6:g} Mbit/s",
        "observed": f"wire {wire / 1e6:.3f} Mbit/s (tx_bytes {device / 1e6:.3f}), "
        f"payload {payload / 1e6:.3f}",
        "bound": "wire +-2 %",
        "ok": abs(wire - bits) <= 0.02 * bits,
        "wire_bit_s": round(wire),
        "tx_bytes_bit_s": round(device),
        "payload_bit_s": round(payload),
        "window_s": round(window["seconds"], 3),
        "tx_packets": window["tx_packets"],  # GSO packets: a device send each
        "qdisc_packets": window["qdisc_packets"],  # segments: what goes on the wire
        "qdisc": window["qdisc"].strip(),
    }


def cpu_ns(container: Any) -> int:
    """CPU time a container has used so far (its cgroup's cpuacct, via the Docker API)."""
    stats = container.stats(stream=False, one_shot=True)
    return int(stats["cpu_stats"]["cpu_usage"]["total_usage"])


def _engine_seen(applied: Any) -> int | None:
    """Packets the engine has seen so far (None for a kernel-only fault: no engine counts)."""
    if applied.sidecars[0].plan.engine[0] != "run":
        return None
    return int(next(iter(applied.status().values()))["seen"])


def bench_cpu(lab: Lab, backend: str, what: dict[str, str], label: str) -> Row:
    """The sidecar's CPU over a window, and (with an engine) the packets it handled in that
    window: a starved run handles fewer and reads low, so the cost per packet is the figure
    that compares."""
    clients, per_client, seconds = 4, 2500.0, 6.0
    workload = Workload(count=int(per_client * seconds), rate=per_client, pipeline=8, timeout=600)
    with impair(lab, "server", backend=backend, **what) as applied:
        sidecar = applied.sidecars[0].container
        assert sidecar is not None
        run = lab.start_clients(clients, workload)
        time.sleep(1.5)
        t0, c0, p0 = time.monotonic(), cpu_ns(sidecar), _engine_seen(applied)
        time.sleep(3.0)
        t1, c1, p1 = time.monotonic(), cpu_ns(sidecar), _engine_seen(applied)
        result = run.wait()
    result.assert_ok()
    cpu = (c1 - c0) / 1e9 / (t1 - t0)
    rate = None if p0 is None or p1 is None else (p1 - p0) / (t1 - t0)
    per_packet = f", {cpu / rate * 1e6:.0f} us/packet at {rate:,.0f} packets/s" if rate else ""
    return {
        "kind": "cpu",
        "backend": applied.backend,
        "configured": f"{label} at {clients * per_client:,.0f} msg/s",
        "observed": f"sidecar {100 * cpu:.1f} % of a core{per_packet}",
        "bound": "(figure)",
        "ok": None,
        "cpu_cores": round(cpu, 4),
        "packets_per_s": None if rate is None else round(rate),
    }


def print_rows(rows: list[Row]) -> None:
    print(f"{'kind':<8} {'backend':<12} {'configured':<36} {'observed':<72} {'bound':<14} ok")
    for r in rows:
        ok = {True: "yes", False: "NO", None: ""}[r["ok"]]
        print(
            f"{r['kind']:<8} {r['backend']:<12} {r['configured']:<36} {r['observed']:<72} "
            f"{r['bound']:<14} {ok}"
        )


def write_rows(rows: list[Row], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="exchanges per delay (at most)")
    parser.add_argument("--delays", default="1ms,10ms,100ms,500ms")
    parser.add_argument("--packets", type=int, default=10_000, help="loss: packets counted")
    parser.add_argument("--quick", action="store_true", help="delays and jitter only")
    parser.add_argument("--only", default="delay,jitter,loss,rate,cpu", help="kinds to measure")
    parser.add_argument("--spin", action="store_true", help="the probe polls (no client wake-up)")
    parser.add_argument("--out", default="results/fidelity.json")
    args = parser.parse_args()
    fault_image.build()
    rows: list[Row] = []
    spec = LabSpec(name="fidelity", clients=1, workload=Workload(count=args.count))
    with Lab(spec) as lab:
        report = preflight(lab.docker, fault_image.SIDECAR_IMAGE)
        backends = (["netem"] if report.netem.ok else []) + (
            ["nfqueue"] if report.nfqueue.ok else []
        )
        only = set(args.only.split(",")) - ({"loss", "rate", "cpu"} if args.quick else set())
        base = baseline(lab, args.count, args.spin)
        observed = f"median rtt {base:.3f} ms (probe, back to back)"
        rows.append(
            {"kind": "baseline", "backend": "none", "configured": "-", "observed": observed,
             "bound": "-", "ok": None}
        )  # fmt: skip
        for backend in backends:
            if "delay" in only:
                delays = args.delays.split(",")
                rows += bench_delay(lab, backend, base, delays, args.count, args.spin)
            if "jitter" in only:
                rows.append(bench_jitter(lab, backend, 400, args.spin))
            if "loss" in only:
                for loss in ("1%", "10%"):
                    rows.append(bench_loss(lab, backend, loss, args.packets))
            if "rate" in only:
                for rate in ("1mbit", "10mbit"):
                    rows.append(bench_rate(lab, backend, rate))
            if "cpu" in only:
                rows.append(bench_cpu(lab, backend, {"delay": "1ms"}, "delay 1 ms"))
                rows.append(bench_cpu(lab, backend, {"rate": "100mbit"}, "rate 100 Mbit/s"))
    print_rows(rows)
    engines = [r for r in rows if r["kind"] == "delay"]
    for r in engines:
        e = r.get("engine") or {}
        print(
            f"  engine at {r['configured']}: release late p50 {e.get('late_us_p50')} us, "
            f"p99 {e.get('late_us_p99')} us; held p50 {e.get('held_us_p50')} us, "
            f"p90 {e.get('held_us_p90')} us; vs back-to-back baseline: median "
            f"+{r['vs_back_to_back_median_ms']:.3f}, p90 +{r['vs_back_to_back_p90_ms']:.3f} ms"
        )
    write_rows(rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
