"""How faithfully each packet backend applies what it is given, judged by observers that are not
the backend (``observe``): configured vs observed, every graded row within a bound or the run
fails (exit 1).

Backends: ``netem`` where the kernel has sch_netem, and the NFQUEUE engine (``nfqueue``) with
the kernel's ``tbf`` for rate. A backend this host lacks is listed row by row as ``skipped``
with the preflight's reason. Every fault is on the server's egress.

- **delay** 1, 10, 100, 500 ms: the probe's round trips (``observe.PROBE``), each ended by the
  reply's arrival in the client's kernel (its receive timestamp; ``--clock user`` ends it when
  the sleeping probe wakes, as an application would see it). Graded on the
  shift of the median and of the p90 round trip against an *idle-matched* baseline: the same
  probe unimpaired, pausing ``delay`` before each request. Under a delay both ends sit idle
  that long between packets, and an idle CPU wakes late; that cost belongs to the host, not to
  the fault. Printed beside it: the shift against the *back-to-back* baseline (what a user of
  this host sees), and the engine's own log of what it held (never graded). Bound: 0.2 ms + 1 %.
- **jitter** 20 +- 5 ms uniform (stdev 5/sqrt(3) = 2.887 ms), paced so that no packet waits for
  an earlier one: the stdev of the probe's round trips, within 10 %.
- **loss** 1 % and 10 %: numbered UDP datagrams sent from the server's namespace (they leave
  through the impaired egress; the engine's rules queue every IPv4 packet leaving the target
  except on ``lo``, whatever its protocol) to a receiver on the lab network, which counts which
  arrived. Observed loss = 1 - received/sent over >= 10,000 datagrams; within 1 point. The
  engine's own drop counter is printed beside it.
- **rate** 1 and 10 Mbit/s: a UDP flow 20 % above the rate, so the shaper's queue never runs
  empty; the receiver counts the bytes that arrived over an 8 s window timed by its own clock,
  as the shaper meters them (each datagram with its UDP, IP and Ethernet headers). Within 2 %.
  The receiver's interface counter, the payload alone and the shaper's own byte count (``tc -s
  qdisc``, over its own window) are printed beside it.
- **CPU** of the sidecar at ~10,000 messages/s (its cgroup's cpuacct): figures, not graded.
- **load** 1 and 10 ms under pipelining load clients (``load.py``): the probe's added round
  trip against the same probe under the same load unimpaired, the engine's release lateness
  p99 and its CPU per packet (sidecar's cgroup / server's sent packets), all graded.

Prints a table and writes results/fidelity.json (rows, host, preflight, backends, date).

    .venv/bin/python benchmarks/fidelity.py [--quick] [--only delay,loss] [--clock kernel|user|spin]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import load
import observe
import verdict
from verdict import Row

from harness import Lab, LabSpec, Workload, images
from harness.containers import output_of
from harness.faults import Applied, Report, parse_duration, parse_rate, preflight

KINDS = ("delay", "jitter", "loss", "rate", "cpu", "load")
IDLE_MATCHED = "the idle-matched baseline"
BACK_TO_BACK = "the back-to-back baseline"
LEGEND = (
    "delay, jitter: round trips timed by a probe client (TCP_NODELAY, one request in flight),",
    "  ended by the reply's kernel receive timestamp unless --clock says otherwise;",
    "  graded against the idle-matched baseline (the same probe unimpaired, pausing as long",
    "  before each request); the back-to-back baseline (no pause: what a user of this host",
    "  sees) is printed beside it, not graded",
    "loss, rate: UDP datagrams from the server's namespace, counted by a receiver on the lab",
    "  network; the engine's and the shaper's own counters are printed, never graded",
)


@dataclass
class Context:
    lab: Lab
    args: argparse.Namespace
    back_to_back: list[float]


def engine_of(applied: Applied) -> dict[str, Any]:
    """The engine's last counters (after the ``with``), or {} for a kernel-only fault."""
    return next(iter(applied.engine_stats().values()), {}) or {}


def bench_delay(ctx: Context, backend: str, configured: float) -> Row:
    n = max(30, min(ctx.args.count, int(15_000 / configured)))  # 500 ms: 30 exchanges, 15 s
    idle = observe.rtts(ctx.lab, n, configured / 1e3, clock=ctx.args.clock)
    with ctx.lab.impair("server", delay=f"{configured:g}ms", backend=backend) as applied:
        impaired = observe.rtts(ctx.lab, n, clock=ctx.args.clock)
    e = engine_of(applied)
    notes = (
        [
            f"engine's own log (not graded): held p50 {e.get('held_us_p50')} us, p90 "
            f"{e.get('held_us_p90')} us; released late p50 {e.get('late_us_p50')} us, p99 "
            f"{e.get('late_us_p99')} us"
        ]
        if e
        else []
    )
    return verdict.delay_row(
        applied.mechanism,
        configured,
        impaired,
        (IDLE_MATCHED, idle),
        (BACK_TO_BACK, ctx.back_to_back),
        notes,
    ) | {"engine": e}


def bench_jitter(ctx: Context, backend: str) -> Row:
    delay, jitter, gap, n = 20.0, 5.0, 0.030, 400  # 30 ms idle: no packet waits for another
    idle = observe.rtts(ctx.lab, n, gap + delay / 1e3, clock=ctx.args.clock)
    with ctx.lab.impair("server", delay="20ms", jitter="5ms", seed=7, backend=backend) as applied:
        impaired = observe.rtts(ctx.lab, n, gap, clock=ctx.args.clock)
    e = engine_of(applied)
    notes = (
        [
            f"engine's own log (not graded): drawn stdev {(e.get('drawn_us_std') or 0) / 1e3:.3f} "
            f"ms, held stdev {(e.get('held_us_std') or 0) / 1e3:.3f} ms"
        ]
        if e
        else []
    )
    row = verdict.jitter_row(
        applied.mechanism, delay, jitter, impaired, (IDLE_MATCHED, idle), notes
    )
    return row | {"engine": e}


def qdisc_counts(applied: Applied) -> dict[str, Any]:
    """The root qdisc's own counters (``tc -s qdisc``) in the target: the shaper's bookkeeping,
    printed beside what the receiver saw, never graded."""
    sidecar = applied.sidecars[0].container
    assert sidecar is not None
    code, out = sidecar.exec_run(["tc", "-s", "qdisc", "show", "dev", "eth0"])
    words = output_of(out).decode().split() if code == 0 else []
    if "Sent" not in words:
        return {}
    at = words.index("Sent")
    dropped = words[at + 6].rstrip(",") if words[at + 5] == "(dropped" else "?"
    return {"bytes": int(words[at + 1]), "packets": int(words[at + 3]), "dropped": dropped}


def bench_loss(ctx: Context, backend: str, percent: float) -> Row:
    packets = ctx.args.packets
    with ctx.lab.impair("server", loss=f"{percent:g}%", seed=11, backend=backend) as applied:
        flow = observe.count_datagrams(ctx.lab, packets, ctx.args.pps)
        qdisc = qdisc_counts(applied) if applied.backend.name == "netem" else {}
    tx, rx = flow.sender, flow.receiver
    sent, received = int(tx["sent"]), int(rx["received"])
    observed = 100.0 * (1 - received / sent) if sent else 100.0
    enough = sent >= packets
    notes = [
        f"sender (server's namespace): {sent} sent at {ctx.args.pps:g}/s, refused {tx['errors']}"
        f", kernel OutDatagrams +{tx['kernel']['OutDatagrams']}",
        f"receiver: {received} distinct numbers, {rx['duplicates']} duplicates; kernel "
        f"InDatagrams +{rx['kernel']['InDatagrams']}, RcvbufErrors +{rx['kernel']['RcvbufErrors']}"
        f", InErrors +{rx['kernel']['InErrors']}",
    ]
    if not enough:
        notes.append(f"fewer than {packets} datagrams sent: not enough to grade")
    e = engine_of(applied)
    if e.get("seen"):
        notes.append(
            f"engine's own count (not graded): dropped {e['dropped']} of {e['seen']} packets "
            f"seen = {100 * e['dropped'] / e['seen']:.2f} %"
        )
    if qdisc:
        notes.append(f"netem's own count (not graded): {qdisc}")
    return verdict.row(
        "loss",
        applied.mechanism,
        f"{percent:g} %",
        f"{observed:.2f} % lost ({sent - received} of {sent} datagrams, receiver's count)",
        "+-1 pt",
        enough and abs(observed - percent) <= 1.0,
        notes,
        observed_pct=round(observed, 3),
        sender=tx,
        receiver=rx,
        engine=e,
        qdisc=qdisc,
    )


# Runs in the sidecar: the root qdisc's byte count over a window timed there (so docker exec's
# own latency is not in it).
WINDOW = r"""
import json, subprocess, sys, time
def sent():
    argv = ["tc", "-s", "qdisc", "show", "dev", "eth0"]
    words = subprocess.run(argv, capture_output=True, text=True).stdout.split()
    return time.monotonic(), int(words[words.index("Sent") + 1])
t0, b0 = sent()
time.sleep(float(sys.argv[1]))
t1, b1 = sent()
print(json.dumps({"seconds": t1 - t0, "bytes": b1 - b0}))
"""


def bench_rate(ctx: Context, backend: str, rate: str) -> Row:
    bits = parse_rate(rate)
    skip, window = 2.0, 8.0  # past the shaper's initial burst; ~700 datagrams at 1 Mbit/s
    with ctx.lab.impair("server", rate=rate, backend=backend) as applied:
        sidecar = applied.sidecars[0].container
        assert sidecar is not None

        def shaper() -> dict[str, Any]:
            time.sleep(skip)
            code, out = sidecar.exec_run(["python3", "-c", WINDOW, str(window)])
            return dict(json.loads(output_of(out).decode().splitlines()[-1])) if code == 0 else {}

        flow, counted = observe.rate_window(ctx.lab, bits, skip, window, shaper)
    own = counted or {}
    rx = flow.receiver
    frames = rx["payload_bytes"] + rx["datagrams"] * observe.UDP_FRAME_OVERHEAD
    observed = frames * 8 / rx["seconds"]
    interface = rx["rx_bytes"] * 8 / rx["seconds"]
    payload = rx["payload_bytes"] * 8 / rx["seconds"]
    own_bits = own["bytes"] * 8 / own["seconds"] if own else None
    notes = [
        f"receiver's count: {rx['datagrams']} datagrams in {rx['seconds']:.3f} s, each with "
        "its UDP, IPv4 and Ethernet headers as the shaper meters it; its interface's "
        f"rx_bytes at the same instants {interface / 1e6:.4f} Mbit/s; payload alone "
        f"{payload / 1e6:.4f} Mbit/s; RcvbufErrors +{rx['kernel']['RcvbufErrors']}",
        f"sender: {flow.sender['sent']} sent in {flow.sender['seconds']:.1f} s (20 % above "
        f"the rate), refused {flow.sender['errors']}",
        f"{applied.mechanism}'s own byte count (not graded): "
        + (f"{own_bits / 1e6:.4f} Mbit/s over its {own['seconds']:.2f} s" if own_bits else "n/a"),
    ]
    return verdict.row(
        "rate",
        applied.mechanism,
        f"{bits / 1e6:g} Mbit/s",
        f"{observed / 1e6:.4f} Mbit/s received (datagrams + 42 B headers)",
        "+-2 %",
        abs(observed - bits) <= 0.02 * bits,
        notes,
        received_bit_s=round(observed),
        interface_bit_s=round(interface),
        payload_bit_s=round(payload),
        shaper_bit_s=None if own_bits is None else round(own_bits),
        receiver=rx,
        sender=flow.sender,
    )


def _engine_seen(applied: Applied) -> int | None:
    """Packets the engine has seen so far (None for a kernel-only fault: no engine counts)."""
    if applied.sidecars[0].plan.engine is None:
        return None
    return int(next(iter(applied.status().values()))["seen"])


def bench_cpu(
    ctx: Context, backend: str, label: str, delay: str = "0", rate: str | None = None
) -> Row:
    """The sidecar's CPU over a window, and (with an engine) the packets it handled in that
    window: a starved run handles fewer and reads low, so the cost per packet is the figure
    that compares."""
    clients, per_client, seconds = 4, 2500.0, 6.0
    workload = Workload(count=int(per_client * seconds), rate=per_client, pipeline=8, timeout=600)
    with ctx.lab.impair("server", delay=delay, rate=rate, backend=backend) as applied:
        sidecar = applied.sidecars[0].container
        assert sidecar is not None
        run = ctx.lab.start_clients(clients, workload)
        time.sleep(1.5)
        t0, c0, p0 = time.monotonic(), observe.cpu_ns(sidecar), _engine_seen(applied)
        time.sleep(3.0)
        t1, c1, p1 = time.monotonic(), observe.cpu_ns(sidecar), _engine_seen(applied)
        result = run.wait()
    result.assert_ok()
    cpu = (c1 - c0) / 1e9 / (t1 - t0)
    pps = None if p0 is None or p1 is None else (p1 - p0) / (t1 - t0)
    per_packet = f", {cpu / pps * 1e6:.0f} us/packet at {pps:,.0f} packets/s" if pps else ""
    return verdict.row(
        "cpu",
        applied.mechanism,
        f"{label} at {clients * per_client:,.0f} msg/s",
        f"sidecar {100 * cpu:.1f} % of a core{per_packet}",
        "(figure)",
        None,
        cpu_cores=round(cpu, 4),
        packets_per_s=None if pps is None else round(pps),
    )


Measure = Callable[[Context, str], Row]


def measurements(args: argparse.Namespace) -> list[tuple[str, str, str, Measure]]:
    """(kind, configured, what the nfqueue backend needs of the host, how to measure it)."""

    def delay(ms: float) -> Measure:
        return lambda c, b: bench_delay(c, b, ms)

    def loss(pct: float) -> Measure:
        return lambda c, b: bench_loss(c, b, pct)

    def rate(r: str) -> Measure:
        return lambda c, b: bench_rate(c, b, r)

    found = [
        ("delay", f"{ms:g} ms", "nfqueue", delay(ms))
        for ms in (parse_duration(d) * 1e3 for d in args.delays.split(","))
    ]
    found.append(("jitter", "20 +- 5 ms", "nfqueue", bench_jitter))
    found += [("loss", f"{pct:g} %", "nfqueue", loss(pct)) for pct in (1.0, 10.0)]
    found += [
        ("rate", f"{parse_rate(r) / 1e6:g} Mbit/s", "tbf", rate(r)) for r in ("1mbit", "10mbit")
    ]
    found.append(
        ("cpu", "delay 1 ms", "nfqueue", lambda c, b: bench_cpu(c, b, "delay 1 ms", "1ms"))
    )
    found.append(
        (
            "cpu",
            "rate 100 Mbit/s",
            "tbf",
            lambda c, b: bench_cpu(c, b, "rate 100 Mbit/s", rate="100mbit"),
        )
    )
    shape = load.Load(clients=args.load_clients, rate=args.load_rate)

    def under_load(ms: float) -> Measure:
        return lambda c, b: load.bench_load(c.lab, b, ms, shape, c.back_to_back)

    found += [("load", f"{ms:g} ms", "nfqueue", under_load(ms)) for ms in (1.0, 10.0)]
    return [m for m in found if m[0] in args.kinds]


def unusable(report: Report, backend: str, needs: str) -> str | None:
    """Why this host cannot apply a row on ``backend`` (the preflight's words), or None."""
    check = report.netem if backend == "netem" else getattr(report, needs)
    name = "netem" if backend == "netem" else needs
    return None if check.ok else f"skipped: this host has no usable {name}: {check.detail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--count", type=int, default=300, help="exchanges per delay (at most)")
    parser.add_argument("--delays", default="1ms,10ms,100ms,500ms")
    parser.add_argument("--packets", type=int, default=10_000, help="loss: datagrams sent")
    parser.add_argument("--pps", type=float, default=2000.0, help="loss: datagrams per second")
    parser.add_argument("--quick", action="store_true", help="delays and jitter only")
    parser.add_argument("--only", default=",".join(KINDS), help="kinds to measure")
    parser.add_argument("--load-clients", type=int, default=load.Load.clients)
    parser.add_argument("--load-rate", type=float, default=load.Load.rate, help="msg/s each")
    parser.add_argument(
        "--clock",
        choices=observe.CLOCKS,
        default="kernel",
        help="what ends a probe's round trip: the reply's arrival in the client's kernel "
        "(default), recv returning to the sleeping probe, or a polling probe",
    )
    parser.add_argument("--out", default="results/fidelity.json")
    args = parser.parse_args()
    quick = {"loss", "rate", "cpu", "load"}
    args.kinds = set(args.only.split(",")) - (quick if args.quick else set())
    started, began, cpu0 = verdict.now(), time.monotonic(), verdict.cpu_times()
    rows: list[Row] = []
    spec = LabSpec(name="fidelity", clients=1, workload=Workload(count=args.count))
    with Lab(spec) as lab:
        report = preflight(lab.docker, images.tag_for(lab.docker, "engine"))
        host = verdict.host_facts(lab.docker)
        print(f"kernel {host['kernel']}, {host['cpus']} cpus; preflight:\n{report}")
        back_to_back = observe.rtts(lab, args.count, clock=args.clock)
        stats = verdict.summary_of(back_to_back)
        observed = f"median rtt {stats['median_ms']:.3f} ms, p90 {stats['p90_ms']:.3f} ms"
        notes = [f"probe back to back, {stats['n']} exchanges"]
        rows.append(verdict.row("baseline", "none", "no fault", observed, "-", None, notes))
        ctx = Context(lab, args, back_to_back)
        chosen: dict[str, list[str]] = {}
        for backend in ("netem", "nfqueue"):
            for kind, configured, needs, measure in measurements(args):
                why = unusable(report, backend, needs)
                if why:
                    rows.append(verdict.unmeasured(kind, backend, configured, "skipped", why))
                    continue
                chosen.setdefault(backend, []).append(f"{kind} {configured}")
                verdict.guard(rows, kind, backend, configured, partial(measure, ctx, backend))
    title = "packet backends: configured vs observed (observers: not the backend)"
    verdict.print_table(title, rows, LEGEND)
    summary, code = verdict.summarize(rows)
    elapsed, busy = time.monotonic() - began, verdict.busy_since(cpu0)
    verdict.print_summary(summary, code, elapsed, busy)
    verdict.write(
        args.out,
        {
            "benchmark": "fidelity",
            "date": started,
            "elapsed_s": round(elapsed, 1),
            "host_busy_pct": busy,
            "host": host,
            "preflight": report.as_dict(),
            "backends": chosen,
            "args": {k: v for k, v in vars(args).items() if k != "kinds"},
            "rows": rows,
            "summary": summary,
            "exit_code": code,
        },
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
