"""How faithfully backend 3, the TCP proxy, applies its toxics: configured vs observed.

The proxy works on the byte stream, not on packets, so its figures are the application's:

- **delay** 1, 10, 100, 500 ms: a ``latency`` toxic on ``downstream`` (server to client) holds
  each chunk that long, so a round trip through the proxy grows by ``latency``. The probe
  (``fidelity.PROBE``: one request in flight, ``TCP_NODELAY``) goes through the proxy; the
  reference is the same probe through the same proxy with no toxic, pausing as long before each
  request (idle-matched, see ``fidelity``), so the proxy hop's own cost is not in the figure
  (it is reported on its own). Bound: 0.2 ms + 1 %, on the median and the p90.
- **jitter** 20 +- 5 ms (Toxiproxy's jitter: uniform, so stdev 5/sqrt(3) = 2.887 ms), paced so
  that no chunk waits for an earlier one. Bound: stdev within 10 %.
- **rate** 1 and 10 Mbit/s: a ``bandwidth`` toxic (Toxiproxy's unit, KB/s: 125 and 1250) on
  ``downstream``; observed as *payload*, the reply bytes the clients received per second
  between their first and last reply (the proxy meters bytes it writes, headers are TCP's).
  Bound: +-2 %.
- **loss**: none. A TCP proxy cannot lose bytes without breaking the stream: use a packet
  backend (its rows in ``fidelity.py``).
- **CPU** of the proxy container at 10,000 messages/s, with no toxic (the hop) and with a 1 ms
  latency toxic.

A figure, never a timed test. Prints a table and writes results/fidelity-proxy.json.

    .venv/bin/python benchmarks/fidelity_proxy.py [--count 300] [--only delay,jitter,rate,cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from fidelity import PROBE, Row, cpu_ns, delay_row, print_rows, write_rows

from harness import Lab, LabSpec, Workload
from harness.faults.proxy import image as proxy_image
from harness.faults.proxy.api import Proxy
from harness.faults.proxy.toxics import ToxicSpec

BACKEND = "proxy"


def probe(lab: Lab, proxy: Proxy | None, n: int, gap_s: float = 0.0) -> list[float]:
    """Round trips in ms of ``n`` probe exchanges through ``proxy`` (None: to the server)."""
    host, port = (proxy.host, proxy.port) if proxy else ("server", 8899)
    argv = ["-c", PROBE, host, str(port), str(n), repr(gap_s), "0"]
    result = lab.run_command(argv, entrypoint=["python3"], timeout=60 + n * (gap_s + 1.0))
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"rtt_us"')]
    if result.exit_code != 0 or not lines:
        raise RuntimeError(f"probe failed ({result.exit_code}): {result.stderr[-2000:]}")
    return [us / 1e3 for us in json.loads(lines[-1])["rtt_us"]]


def latency(ms: float, jitter_ms: float = 0.0) -> ToxicSpec:
    return ToxicSpec("latency", "downstream", {"latency": ms, "jitter": jitter_ms}, name="lat")


@contextmanager
def toxic(proxy: Proxy, spec: ToxicSpec) -> Iterator[None]:
    """``spec`` in force on ``proxy`` inside the ``with``, removed after it."""
    proxy.add(spec)
    try:
        yield
    finally:
        proxy.remove(spec.name)


def bench_delay(lab: Lab, proxy: Proxy, delays_ms: list[float], count: int) -> list[Row]:
    rows = []
    for configured in delays_ms:
        n = max(30, min(count, int(15_000 / configured)))  # 500 ms: 30 exchanges, 15 s
        idle = probe(lab, proxy, n, gap_s=configured / 1e3)
        with toxic(proxy, latency(configured)):
            impaired = probe(lab, proxy, n)
        rows.append(delay_row(BACKEND, configured, impaired, idle))
    return rows


def bench_jitter(lab: Lab, proxy: Proxy, count: int) -> Row:
    delay, jitter, gap = 20.0, 5.0, 0.030  # 30 ms idle between exchanges: no chunk waits
    idle = probe(lab, proxy, count, gap_s=gap + delay / 1e3)
    with toxic(proxy, latency(delay, jitter)):
        impaired = probe(lab, proxy, count, gap_s=gap)
    expected = jitter / math.sqrt(3)
    observed = statistics.stdev(impaired)
    noise = statistics.stdev(idle)
    return {
        "kind": "jitter",
        "backend": BACKEND,
        "configured": f"{delay:g} +- {jitter:g} ms uniform (stdev {expected:.3f})",
        "observed": f"stdev {observed:.3f} ms (idle baseline {noise:.3f})",
        "bound": "stdev +-10 %",
        "ok": abs(observed - expected) <= 0.1 * expected,
        "n": len(impaired),
        "stdev_ms": round(observed, 3),
        "expected_stdev_ms": round(expected, 3),
        "mean_added_ms": round(statistics.mean(impaired) - statistics.mean(idle), 3),
    }


def bench_rate(lab: Lab, proxy: Proxy, mbit: float) -> Row:
    """Each connection gets its own toxic (as in Toxiproxy), so the rate is per client."""
    bits = mbit * 1e6
    size, clients, seconds = 1024, 4, 8.0
    reply = size + 27  # "[" + ctime (24) + "] " + the request
    count = int(bits / 8 / reply * seconds) + 1
    workload = Workload(count=count, size=size, pipeline=64, timeout=600)
    with toxic(proxy, ToxicSpec("bandwidth", "downstream", {"rate": bits / 8 / 1000}, name="bw")):
        result = lab.start_clients(clients, workload, host=proxy.host).wait()
    result.assert_ok()
    per_client = []
    for client in result.clients:
        received = sorted(e.received for e in client.exchanges)
        start = received[len(received) // 10]  # past the first burst
        # The bytes that arrived after ``start``, over the time they took: a reply counts when
        # its last byte came, so the error is under one reply in the window.
        after = [t for t in received if t > start]
        per_client.append(len(after) * reply * 8 / (after[-1] - start))
    observed = statistics.median(per_client)
    return {
        "kind": "rate",
        "backend": BACKEND,
        "configured": f"{mbit:g} Mbit/s ({bits / 8 / 1000:g} KB/s) per connection",
        "observed": f"payload {observed / 1e6:.3f} Mbit/s (median of {clients} connections)",
        "bound": "payload +-2 %",
        "ok": abs(observed - bits) <= 0.02 * bits,
        "payload_bit_s": [round(x) for x in per_client],
    }


def bench_cpu(lab: Lab, proxy: Proxy, spec: ToxicSpec | None, label: str) -> Row:
    clients, per_client, seconds = 4, 2500.0, 6.0
    workload = Workload(count=int(per_client * seconds), rate=per_client, pipeline=8, timeout=600)
    with toxic(proxy, spec) if spec is not None else nullcontext():
        run = lab.start_clients(clients, workload, host=proxy.host)
        time.sleep(1.5)  # a measurement window, timed on purpose: past the clients' start
        t0, c0 = time.monotonic(), cpu_ns(proxy.container)
        time.sleep(3.0)
        t1, c1 = time.monotonic(), cpu_ns(proxy.container)
        result = run.wait()
    result.assert_ok()
    cpu = (c1 - c0) / 1e9 / (t1 - t0)
    return {
        "kind": "cpu",
        "backend": BACKEND,
        "configured": f"{label} at {clients * per_client:,.0f} msg/s",
        "observed": f"proxy {100 * cpu:.1f} % of a core",
        "bound": "(figure)",
        "ok": None,
        "cpu_cores": round(cpu, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="exchanges per delay (at most)")
    parser.add_argument("--delays", default="1,10,100,500", help="latency toxics, ms")
    parser.add_argument("--only", default="delay,jitter,rate,cpu", help="kinds to measure")
    parser.add_argument("--out", default="results/fidelity-proxy.json")
    args = parser.parse_args()
    proxy_image.build()
    only = set(args.only.split(","))
    rows: list[Row] = []
    spec = LabSpec(name="fidelity-proxy", clients=1, workload=Workload(count=args.count))
    with Lab(spec) as lab, lab.proxy() as proxy:
        direct = statistics.median(probe(lab, None, args.count))
        hop = statistics.median(probe(lab, proxy, args.count))
        observed = f"median rtt {hop:.3f} ms through the proxy, {direct:.3f} ms direct"
        rows.append(
            {"kind": "baseline", "backend": BACKEND, "configured": "no toxic",
             "observed": observed, "bound": "-", "ok": None,
             "proxy_hop_ms": round(hop - direct, 3)}
        )  # fmt: skip
        if "delay" in only:
            delays = [float(d) for d in args.delays.split(",")]
            rows += bench_delay(lab, proxy, delays, args.count)
        if "jitter" in only:
            rows.append(bench_jitter(lab, proxy, 400))
        if "rate" in only:
            rows += [bench_rate(lab, proxy, 1.0), bench_rate(lab, proxy, 10.0)]
        if "cpu" in only:
            rows.append(bench_cpu(lab, proxy, None, "no toxic (the hop)"))
            rows.append(bench_cpu(lab, proxy, latency(1.0), "latency 1 ms"))
    rows.append(
        {"kind": "loss", "backend": BACKEND, "configured": "-", "bound": "-", "ok": None,
         "observed": "n/a: a TCP proxy cannot drop bytes (use a packet backend)"}
    )  # fmt: skip
    print_rows(rows)
    write_rows(rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
