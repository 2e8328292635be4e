"""How faithfully each fault backend applies what it is given: configured vs observed.

For each backend this host has (``netem`` where the kernel has sch_netem; else the NFQUEUE
engine, with kernel ``tbf`` for rate), against one server whose egress is impaired:

- **delay** 1, 10, 100, 500 ms: one client, one request at a time; the *added* round trip of
  each exchange is its rtt minus the unimpaired median. Bound: within 0.2 ms + 1 % (median, p90).
- **jitter** 20 ms +- 5 ms (uniform, so the configured standard deviation is 5/sqrt(3) ms);
  paced so that no packet waits for an earlier one. Bound: observed stdev within 10 %.
- **loss** 1 % and 10 %, counted at the engine (packets seen and dropped) over >= 10,000
  packets. Bound: within 1 percentage point.
- **rate** 1 and 10 Mbit/s: bytes the server's eth0 sent (wire: IP + Ethernet headers, what tbf
  meters) over a steady 4 s window, and the echo payload the clients got. Bound: wire +-2 %.
- **CPU** of the sidecar at ~10,000 messages/s (its cgroup's cpuacct, via the Docker API), for
  the engine with 1 ms delay; tbf and netem work in the kernel's softirq, charged to no container.

A figure, never a timed test. Prints a table and writes results/fidelity.json.

    .venv/bin/python benchmarks/fidelity.py [--quick] [--kernel-clock] [--out results/fidelity.json]
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
from harness.faults import apply, impair, parse_duration, preflight
from harness.faults import image as fault_image
from harness.results import ClientResult

Row = dict[str, Any]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rtts(clients: list[ClientResult], skip: int = 3) -> list[float]:
    return [r for c in clients for r in c.rtts_ms()[skip:]]


def baseline(lab: Lab, count: int) -> float:
    result = lab.run_clients(1, Workload(count=count))
    result.assert_ok()
    return statistics.median(rtts(result.clients))


def bench_delay(lab: Lab, backend: str, base: float, delays: list[str], count: int) -> list[Row]:
    rows = []
    for delay in delays:
        configured = parse_duration(delay) * 1e3
        n = max(20, min(count, int(15_000 / configured)))  # 500 ms: 30 exchanges, 15 s
        with impair(lab, "server", delay=delay, backend=backend) as applied:
            result = lab.run_clients(1, Workload(count=n, timeout=600))
        result.assert_ok()
        stats = next(iter(applied.engine_stats().values()))
        added = [r - base for r in rtts(result.clients)]
        bound = 0.2 + 0.01 * configured
        med, p90 = statistics.median(added), quantile(added, 0.9)
        rows.append(
            {
                "kind": "delay",
                "backend": applied.backend,
                "configured": f"{configured:g} ms",
                "observed": f"median +{med:.3f} ms, p90 +{p90:.3f} ms",
                "bound": f"+-{bound:.2f} ms",
                "ok": abs(med - configured) <= bound and abs(p90 - configured) <= bound,
                "n": len(added),
                "median_added_ms": round(med, 3),
                "p90_added_ms": round(p90, 3),
                "engine": stats,
            }
        )
    return rows


def bench_jitter(lab: Lab, backend: str, base: float, count: int) -> Row:
    delay, jitter = 20.0, 5.0
    workload = Workload(count=count, rate=40.0, timeout=600)  # 25 ms apart > 2 x jitter
    with impair(lab, "server", delay="20ms", jitter="5ms", seed=7, backend=backend) as applied:
        result = lab.run_clients(1, workload)
    result.assert_ok()
    added = [r - base for r in rtts(result.clients)]
    expected = jitter / math.sqrt(3)
    observed = statistics.stdev(added)
    return {
        "kind": "jitter",
        "backend": applied.backend,
        "configured": f"{delay:g} +- {jitter:g} ms (stdev {expected:.3f})",
        "observed": f"stdev {observed:.3f} ms, mean +{statistics.mean(added):.3f} ms",
        "bound": "stdev +-10 %",
        "ok": abs(observed - expected) <= 0.1 * expected,
        "n": len(added),
        "stdev_ms": round(observed, 3),
        "expected_stdev_ms": round(expected, 3),
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


def _tx_bytes(sidecar: Any) -> tuple[float, int]:
    _, out = sidecar.exec_run(["cat", "/sys/class/net/eth0/statistics/tx_bytes"])
    return time.monotonic(), int(out.decode().strip())


def bench_rate(lab: Lab, backend: str, rate: str) -> Row:
    bits = {"1mbit": 1e6, "10mbit": 1e7}[rate]
    size = 1024
    seconds = 8.0
    # per client, 4 clients x 64 outstanding: enough in flight that tbf's queue never drains
    count = int(bits / 8 / (size + 27) * seconds / 4) + 1
    with impair(lab, "server", rate=rate, backend=backend) as applied:
        sidecar = applied.sidecars[0].container
        assert sidecar is not None
        run = lab.start_clients(4, Workload(count=count, size=size, pipeline=64, timeout=600))
        time.sleep(2.0)
        t0, b0 = _tx_bytes(sidecar)
        time.sleep(4.0)
        t1, b1 = _tx_bytes(sidecar)
        result = run.wait()
    result.assert_ok()
    wire = (b1 - b0) * 8 / (t1 - t0)
    received = [e.received for c in result.clients for e in c.exchanges]
    payload = len(received) * (size + 27) * 8 / (max(received) - min(received)) if received else 0.0
    return {
        "kind": "rate",
        "backend": applied.backend,
        "configured": f"{bits / 1e6:g} Mbit/s",
        "observed": f"wire {wire / 1e6:.3f} Mbit/s, payload {payload / 1e6:.3f} Mbit/s",
        "bound": "wire +-2 %",
        "ok": abs(wire - bits) <= 0.02 * bits,
        "wire_bit_s": round(wire),
        "payload_bit_s": round(payload),
    }


def _cpu_ns(container: Any) -> int:
    stats = container.stats(stream=False, one_shot=True)
    return int(stats["cpu_stats"]["cpu_usage"]["total_usage"])


def bench_cpu(lab: Lab, backend: str, what: dict[str, str], label: str) -> Row:
    clients, per_client, seconds = 4, 2500.0, 6.0
    workload = Workload(count=int(per_client * seconds), rate=per_client, pipeline=8, timeout=600)
    with impair(lab, "server", backend=backend, **what) as applied:
        sidecar = applied.sidecars[0].container
        assert sidecar is not None
        run = lab.start_clients(clients, workload)
        time.sleep(1.5)
        t0, c0 = time.monotonic(), _cpu_ns(sidecar)
        time.sleep(3.0)
        t1, c1 = time.monotonic(), _cpu_ns(sidecar)
        result = run.wait()
    result.assert_ok()
    cpu = (c1 - c0) / 1e9 / (t1 - t0)
    return {
        "kind": "cpu",
        "backend": applied.backend,
        "configured": f"{label} at {clients * per_client:,.0f} msg/s",
        "observed": f"sidecar {100 * cpu:.1f} % of a core",
        "bound": "(figure)",
        "ok": None,
        "cpu_cores": round(cpu, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="exchanges per delay (at most)")
    parser.add_argument("--delays", default="1ms,10ms,100ms,500ms")
    parser.add_argument("--packets", type=int, default=10_000, help="loss: packets counted")
    parser.add_argument("--quick", action="store_true", help="delays and jitter only")
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
        base = baseline(lab, args.count)
        observed = f"median rtt {base:.3f} ms"
        rows.append(
            {"kind": "baseline", "backend": "none", "configured": "-", "observed": observed,
             "bound": "-", "ok": None}
        )  # fmt: skip
        for backend in backends:
            rows += bench_delay(lab, backend, base, args.delays.split(","), args.count)
            rows.append(bench_jitter(lab, backend, base, 400))
            if args.quick:
                continue
            for loss in ("1%", "10%"):
                rows.append(bench_loss(lab, backend, loss, args.packets))
            for rate in ("1mbit", "10mbit"):
                rows.append(bench_rate(lab, backend, rate))
            rows.append(bench_cpu(lab, backend, {"delay": "1ms"}, "delay 1 ms"))
            rows.append(bench_cpu(lab, backend, {"rate": "100mbit"}, "rate 100 Mbit/s"))
    print(f"{'kind':<8} {'backend':<12} {'configured':<28} {'observed':<50} {'bound':<14} ok")
    for r in rows:
        ok = {True: "yes", False: "NO", None: ""}[r["ok"]]
        print(
            f"{r['kind']:<8} {r['backend']:<12} {r['configured']:<28} {r['observed']:<50} "
            f"{r['bound']:<14} {ok}"
        )
    engines = [r for r in rows if r["kind"] == "delay"]
    for r in engines:
        e = r.get("engine") or {}
        print(
            f"  engine at {r['configured']}: release late p50 {e.get('late_us_p50')} us, "
            f"p99 {e.get('late_us_p99')} us; kernel-stamped {e.get('stamped')}/{e.get('seen')}, "
            f"queue wait p50 {e.get('recv_lag_us_p50')} us"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
