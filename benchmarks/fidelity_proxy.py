"""How faithfully the TCP proxy applies its toxics, judged by what its clients see: configured
vs observed, every graded row within a bound or the run fails (exit 1).

The proxy works on the byte stream, not on packets, and a client that goes through it pays the
proxy's own hop as well as the toxic. Its verdicts therefore compare a client through the proxy
with one that is *not* through it (the direct baseline): the hop is part of what is graded, and
is printed on its own too.

- **hop**: the proxy with no toxic, against the direct baseline, back to back (a figure).
- **delay** 1, 10, 100, 500 ms: a ``latency`` toxic on ``downstream`` (server to client), so a
  round trip through the proxy should grow by ``latency``. The probe (``observe.PROBE``) goes
  through the proxy with the toxic; graded on the shift of the median and of the p90 round trip
  against the *direct, idle-matched* baseline (no proxy, pausing as long before each request:
  an idle host wakes late, which is the host's, not the proxy's). Printed beside it: the shift
  against the direct back-to-back baseline (what a user of this host sees), and the hop at the
  same pause (the proxy with no toxic against the direct, idle-matched). Bound: 0.2 ms + 1 %.
- **jitter** 20 +- 5 ms (Toxiproxy's jitter: uniform, stdev 5/sqrt(3) = 2.887 ms), paced so that
  no chunk waits for an earlier one: the stdev of the round trips through the proxy, within 10 %.
- **rate** 1 and 10 Mbit/s: a ``bandwidth`` toxic (Toxiproxy's unit, KB/s of payload: 125 and
  1250) on ``downstream``, one per connection. Observed: the reply bytes each receiving client
  got per second, from its own receive times; every connection must be within 2 %.
- **loss**: n/a. A TCP proxy cannot lose bytes without breaking the stream (``fidelity.py``'s
  packet backends have loss).
- **CPU** of the proxy container at 10,000 messages/s, with no toxic and with a 1 ms latency
  toxic: figures.

Prints a table and writes results/fidelity-proxy.json (rows, host, the packet preflight, date).

    .venv/bin/python benchmarks/fidelity_proxy.py [--count 300] [--only delay,jitter,rate,cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import partial

import observe
import verdict
from verdict import Row

from harness import Lab, LabSpec, Proxy, Toxic, Workload, images
from harness.faults import preflight

BACKEND = "proxy"
KINDS = ("delay", "jitter", "rate", "cpu")
DIRECT_IDLE = "the direct idle-matched baseline"
DIRECT_B2B = "the direct back-to-back baseline"
LEGEND = (
    "round trips timed by a probe client (TCP_NODELAY, one request in flight) through the proxy;",
    "  graded against the direct idle-matched baseline (no proxy, the same probe pausing as long",
    "  before each request), so the proxy's own hop is inside every graded delay; the direct",
    "  back-to-back baseline (what a user of this host sees) is printed beside it, not graded",
    "rate: the payload each receiving client got, from its own receive times",
)


def latency(ms: float, jitter_ms: float = 0.0) -> Toxic:
    return Toxic("latency", {"latency": f"{ms}ms", "jitter": f"{jitter_ms}ms"}, name="lat")


@contextmanager
def toxic(proxy: Proxy, spec: Toxic) -> Iterator[None]:
    """``spec`` in force on ``proxy`` inside the ``with``, removed after it."""
    proxy.add(spec)
    try:
        yield
    finally:
        proxy.remove(spec.key)


def bench_hop(lab: Lab, proxy: Proxy, direct: list[float], count: int) -> Row:
    through = observe.rtts(lab, count, host=proxy.host)
    med, p90 = verdict.shifts(through, direct)
    d, t = verdict.summary_of(direct), verdict.summary_of(through)
    return verdict.row(
        "hop",
        BACKEND,
        "no toxic, back to back",
        f"shift of median rtt {med:+.3f} ms, of p90 rtt {p90:+.3f} ms",
        "(figure)",
        None,
        [
            f"direct: median {d['median_ms']:.3f}, p90 {d['p90_ms']:.3f} ms; through the "
            f"proxy: median {t['median_ms']:.3f}, p90 {t['p90_ms']:.3f} ms ({t['n']} exchanges)"
        ],
        shift_median_ms=round(med, 3),
        shift_p90_ms=round(p90, 3),
        direct=d,
        through=t,
    )


def bench_delay(lab: Lab, proxy: Proxy, direct: list[float], configured: float, count: int) -> Row:
    n = max(30, min(count, int(15_000 / configured)))  # 500 ms: 30 exchanges, 15 s
    gap = configured / 1e3
    idle_direct = observe.rtts(lab, n, gap)
    idle_proxy = observe.rtts(lab, n, gap, host=proxy.host)
    with toxic(proxy, latency(configured)):
        impaired = observe.rtts(lab, n, host=proxy.host)
    hop_med, hop_p90 = verdict.shifts(idle_proxy, idle_direct)
    alone_med, alone_p90 = verdict.shifts(impaired, idle_proxy)
    notes = [
        f"the hop at this pause (proxy, no toxic, vs direct; inside the graded shift): median "
        f"{hop_med:+.3f} ms, p90 {hop_p90:+.3f} ms",
        f"against the proxy with no toxic at this pause (the toxic alone, not graded): median "
        f"{alone_med:+.3f} ms, p90 {alone_p90:+.3f} ms",
    ]
    row = verdict.delay_row(
        BACKEND, configured, impaired, (DIRECT_IDLE, idle_direct), (DIRECT_B2B, direct), notes
    )
    return row | {
        "hop": {"shift_median_ms": round(hop_med, 3), "shift_p90_ms": round(hop_p90, 3)},
        "toxic_alone": {
            "shift_median_ms": round(alone_med, 3),
            "shift_p90_ms": round(alone_p90, 3),
        },
    }


def bench_jitter(lab: Lab, proxy: Proxy) -> Row:
    delay, jitter, gap, n = 20.0, 5.0, 0.030, 400  # 30 ms idle: no chunk waits for another
    idle_direct = observe.rtts(lab, n, gap + delay / 1e3)
    with toxic(proxy, latency(delay, jitter)):
        impaired = observe.rtts(lab, n, gap, host=proxy.host)
    return verdict.jitter_row(BACKEND, delay, jitter, impaired, (DIRECT_IDLE, idle_direct))


def bench_rate(lab: Lab, proxy: Proxy, mbit: float) -> Row:
    """Each connection gets its own toxic (as in Toxiproxy), so the rate is per client, and
    each receiving client is judged on what it got."""
    bits = mbit * 1e6
    size, clients, seconds = 1024, 4, 8.0
    reply = size + 27  # "[" + ctime (24) + "] " + the request
    count = int(bits / 8 / reply * seconds) + 1
    workload = Workload(count=count, size=size, pipeline=64, timeout=600)
    with toxic(proxy, Toxic("bandwidth", {"rate": f"{bits}bit"}, name="bw")):
        result = lab.start_clients(clients, workload, host=proxy.host).wait()
    result.assert_ok()
    per_client = []
    for client in result.clients:
        received = sorted(e.received for e in client.exchanges)
        start = received[len(received) // 10]  # past the first burst
        # The replies that completed after ``start``, over the time they took: a reply counts
        # when its last byte came, so the error is under one reply in the window.
        after = [t for t in received if t > start]
        per_client.append(len(after) * reply * 8 / (after[-1] - start))
    worst = max(per_client, key=lambda x: abs(x - bits))
    shown = ", ".join(f"{x / 1e6:.4f}" for x in per_client)
    return verdict.row(
        "rate",
        BACKEND,
        f"{mbit:g} Mbit/s ({bits / 8 / 1000:g} KB/s) per connection",
        f"worst connection {worst / 1e6:.4f} Mbit/s of payload received",
        "+-2 % each",
        all(abs(x - bits) <= 0.02 * bits for x in per_client),
        [
            f"payload each receiving client got, Mbit/s: {shown} (median "
            f"{statistics.median(per_client) / 1e6:.4f})"
        ],
        payload_bit_s=[round(x) for x in per_client],
    )


def bench_cpu(lab: Lab, proxy: Proxy, spec: Toxic | None, label: str) -> Row:
    clients, per_client, seconds = 4, 2500.0, 6.0
    workload = Workload(count=int(per_client * seconds), rate=per_client, pipeline=8, timeout=600)
    with toxic(proxy, spec) if spec is not None else nullcontext():
        run = lab.start_clients(clients, workload, host=proxy.host)
        time.sleep(1.5)  # a measurement window, timed on purpose: past the clients' start
        t0, c0 = time.monotonic(), observe.cpu_ns(proxy.container)
        time.sleep(3.0)
        t1, c1 = time.monotonic(), observe.cpu_ns(proxy.container)
        result = run.wait()
    result.assert_ok()
    cpu = (c1 - c0) / 1e9 / (t1 - t0)
    return verdict.row(
        "cpu",
        BACKEND,
        f"{label} at {clients * per_client:,.0f} msg/s",
        f"proxy {100 * cpu:.1f} % of a core",
        "(figure)",
        None,
        cpu_cores=round(cpu, 4),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--count", type=int, default=300, help="exchanges per delay (at most)")
    parser.add_argument("--delays", default="1,10,100,500", help="latency toxics, ms")
    parser.add_argument("--only", default=",".join(KINDS), help="kinds to measure")
    parser.add_argument("--out", default="results/fidelity-proxy.json")
    args = parser.parse_args()
    only = set(args.only.split(","))
    started, began, cpu0 = verdict.now(), time.monotonic(), verdict.cpu_times()
    rows: list[Row] = []
    spec = LabSpec(name="fidelity-proxy", clients=1, workload=Workload(count=args.count))
    with Lab(spec) as lab, lab.proxy() as proxy:
        host = verdict.host_facts(lab.docker)
        report = preflight(lab.docker, images.tag_for(lab.docker, "engine"))
        print(f"kernel {host['kernel']}, {host['cpus']} cpus")
        direct = observe.rtts(lab, args.count)
        verdict.guard(
            rows, "hop", BACKEND, "no toxic", partial(bench_hop, lab, proxy, direct, args.count)
        )
        if "delay" in only:
            for ms in (float(d) for d in args.delays.split(",")):
                measure = partial(bench_delay, lab, proxy, direct, ms, args.count)
                verdict.guard(rows, "delay", BACKEND, f"{ms:g} ms", measure)
        if "jitter" in only:
            verdict.guard(rows, "jitter", BACKEND, "20 +- 5 ms", partial(bench_jitter, lab, proxy))
        if "rate" in only:
            for mbit in (1.0, 10.0):
                measure = partial(bench_rate, lab, proxy, mbit)
                verdict.guard(rows, "rate", BACKEND, f"{mbit:g} Mbit/s", measure)
        if "cpu" in only:
            for toxic_spec, label in ((None, "no toxic (the hop)"), (latency(1.0), "latency 1 ms")):
                measure = partial(bench_cpu, lab, proxy, toxic_spec, label)
                verdict.guard(rows, "cpu", BACKEND, label, measure)
    why = "a TCP proxy cannot drop bytes without breaking the stream (packet backends: fidelity.py)"
    rows.append(verdict.unmeasured("loss", BACKEND, "-", "n/a", why))
    verdict.print_table("TCP proxy: configured vs observed (observers: the clients)", rows, LEGEND)
    summary, code = verdict.summarize(rows)
    elapsed, busy = time.monotonic() - began, verdict.busy_since(cpu0)
    verdict.print_summary(summary, code, elapsed, busy)
    verdict.write(
        args.out,
        {
            "benchmark": "fidelity-proxy",
            "date": started,
            "elapsed_s": round(elapsed, 1),
            "host_busy_pct": busy,
            "host": host,
            "preflight": report.as_dict(),
            "backends": {BACKEND: sorted(only)},
            "args": vars(args),
            "rows": rows,
            "summary": summary,
            "exit_code": code,
        },
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
