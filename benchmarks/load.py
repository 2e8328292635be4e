"""The load row of ``make fidelity``: a delay applied while pipelining clients keep the host busy.

A fault engine in user space is only as exact as the CPU it gets: idle, it wakes on time; with
the host busy it competes with the very clients it delays. So a backend is graded again under
load: ``clients`` client containers, each paced at ``rate`` messages/s with ``pipeline`` in
flight (deep enough to keep the pace through a 10 ms delay), beside a paced probe
(``observe.PROBE``, one request in flight, a pause before each).

Graded, all at once (one verdict per delay):

- the probe's added round trip: the shift of its median and p90 against *the same probe under
  the same load, unimpaired* (taken just before the fault), within 0.2 ms + 1 % of the delay;
- the engine's release lateness p99 (its own count: how late after its deadline it let each
  packet go), within 0.2 ms;
- the engine's CPU per packet within 10 us: its sidecar's cgroup CPU time (``cpuacct``, read
  through the Docker API) over the packets the server's interface sent meanwhile (the kernel's
  counter, read the same way); both are observers that are not the engine.

Printed, not graded: the engine's own account of where its time went (``loop_costs``) and the
server container's CPU per packet unimpaired and impaired (``carried``), and the host's timer
floor over the same window (``observe.TIMER``): how late a thread that does nothing but sleep,
with the engine's CPU weight, woke meanwhile. No engine in user space is on time more often than
that thread; where the floor itself is above the bound, the host, not the engine, sets it.

A kernel backend (netem) has no sidecar process on the path: its lateness and CPU are n/a and
its row is graded on the probe alone. The load must cover the whole window: a client that
exited before it ended fails the row, as would a rate far below the one asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import observe
import verdict
from docker.models.containers import Container
from verdict import Row

from harness import Lab, Workload
from harness.clients import running
from harness.containers import name_of
from harness.faults.sidecar import engine_scheduling

LATE_BOUND_US = 200.0
CPU_BOUND_US = 10.0


@dataclass(frozen=True)
class Load:
    clients: int = 6
    rate: float = 2000.0  # messages/s per client
    pipeline: int = 32
    probes: int = 300
    gap_s: float = 0.005  # the probe's pause before each request: 200 requests/s at most


def counters(sidecar: Container | None, server: Container) -> dict[str, float]:
    """Now: the sidecar's CPU (total, user, kernel; ns) and the server's sent packets."""
    out: dict[str, float] = {"t": time.monotonic()}
    if sidecar is not None:
        stats: dict[str, Any] = sidecar.stats(stream=False, one_shot=True)  # type: ignore[assignment]
        usage = stats["cpu_stats"]["cpu_usage"]
        out |= {
            "cpu": usage["total_usage"],
            "user": usage.get("usage_in_usermode", 0),
            "kernel": usage.get("usage_in_kernelmode", 0),
        }
    served: dict[str, Any] = server.stats(stream=False, one_shot=True)  # type: ignore[assignment]
    out["server_cpu"] = served["cpu_stats"]["cpu_usage"]["total_usage"]
    out["tx_packets"] = sum(n["tx_packets"] for n in (served.get("networks") or {}).values())
    return out


def bench_load(lab: Lab, backend: str, delay_ms: float, load: Load, beside: list[float]) -> Row:
    """One load row (see the module's doc); ``beside``: the idle back-to-back probe."""
    # Long enough for warm-up, the loaded baseline, applying the fault and the window.
    per_probe = load.gap_s + 2 * delay_ms / 1e3 + 0.003
    seconds = 12.0 + 2 * load.probes * per_probe
    workload = Workload(
        count=int(load.rate * seconds),
        rate=load.rate,
        pipeline=load.pipeline,
        timeout=seconds + 120,
    )
    run = lab.start_clients(load.clients, workload)
    names = {name_of(c) for c in run.containers}
    time.sleep(1.5)
    unimpaired = counters(None, lab.server)
    loaded = observe.rtts(lab, load.probes, load.gap_s)
    unimpaired_after = counters(None, lab.server)
    with lab.impair("server", delay=f"{delay_ms:g}ms", backend=backend) as applied:
        sidecar = applied.sidecars[0].container if applied.sidecars[0].plan.engine else None
        time.sleep(1.0)
        floor = None
        if sidecar is not None:
            floor = observe.timer_floor(lab, 0.001, load.probes * per_probe, engine_scheduling())
        before = counters(sidecar, lab.server)
        impaired = observe.rtts(lab, load.probes, load.gap_s)
        after = counters(sidecar, lab.server)
        still = len(running(lab.docker, lab.id, names))
        timer = floor() if floor is not None else {}
    result = run.wait()
    result.assert_ok()
    engine = next(iter(applied.engine_stats().values()), {}) or {}
    row = load_row(
        applied.mechanism, delay_ms, load, impaired, loaded, beside, before, after, still, engine
    )
    if timer:
        row["notes"].append(floor_note(engine, timer))
        row["timer_floor"] = timer
    moved = carried(unimpaired, unimpaired_after, before, after)
    if moved is not None:
        row["notes"].append(moved[0])
        row["server_cpu_us_per_packet"] = moved[1]
    return row


def carried(
    u0: dict[str, float], u1: dict[str, float], i0: dict[str, float], i1: dict[str, float]
) -> tuple[str, dict[str, float]] | None:
    """What the server's container spent per packet it sent, unimpaired (u0..u1) and impaired
    (i0..i1), beside the sidecar's: a verdict carries the accepted packet on through the rest
    of the stack in the engine's thread, so that work leaves the server's account for the
    sidecar's. Printed, not graded: the graded figure stays the sidecar's own."""
    if "cpu" not in i0:
        return None

    def per_packet(a: dict[str, float], b: dict[str, float], key: str) -> float:
        return (b[key] - a[key]) / 1e3 / max(1.0, b["tx_packets"] - a["tx_packets"])

    unimpaired = per_packet(u0, u1, "server_cpu")
    server, sidecar = per_packet(i0, i1, "server_cpu"), per_packet(i0, i1, "cpu")
    figures = {
        "unimpaired": round(unimpaired, 2),
        "impaired": round(server, 2),
        "added_by_engine": round(server + sidecar - unimpaired, 2),
    }
    return (
        f"server's container: {unimpaired:.1f} us of CPU per packet sent unimpaired, {server:.1f}"
        f" us impaired; server + sidecar impaired minus server unimpaired: "
        f"{figures['added_by_engine']:.1f} us per packet (not graded)",
        figures,
    )


def floor_note(engine: dict[str, Any], timer: dict[str, Any]) -> str:
    """The engine's lateness beside the host's timer floor measured at the same time, and the
    scheduling each got: a real-time engine beside a fair-scheduled floor is not a pair."""
    ratio = ""
    if engine.get("late_us_p99") and timer.get("late_us_p99"):
        ratio = f"; the engine's p99 is {engine['late_us_p99'] / timer['late_us_p99']:.2f}x it"
    return (
        f"the host's timer floor meanwhile (a thread that only sleeps to 1 ms deadlines, with "
        f"the engine's CPU weight; not graded): late p50 {timer['late_us_p50']}, p90 "
        f"{timer['late_us_p90']}, p99 {timer['late_us_p99']}, p99.9 {timer['late_us_p99.9']}, "
        f"max {timer['late_us_max']} us over {timer['n']} wakes{ratio}"
        + ("" if timer.get("slice") else " (the kernel refused its short slice)")
        + f"; SCHED_FIFO: engine {realtime_of(engine)}, floor "
        + ("granted" if timer.get("realtime") else "refused")
    )


def realtime_of(engine: dict[str, Any]) -> str:
    """What the kernel granted the engine's thread, from its status."""
    asked = (engine.get("thread") or {}).get("realtime")
    if not isinstance(asked, dict):
        return "not reported"
    return "granted" if "priority" in asked else f"refused ({asked.get('refused')})"


def loop_costs(engine: dict[str, Any]) -> str | None:
    """The engine's own account of where its time went, per packet it saw (whole run): its
    system calls, the time inside its verdict sends (which carry each packet on through the
    rest of the stack), its Python callbacks, and its thread's time waiting for a CPU."""
    calls, thread = engine.get("calls") or {}, engine.get("thread") or {}
    seen = engine.get("seen") or 0
    if not calls or not seen:
        return None
    per = {k: calls[k] / seen for k in ("poll", "timer", "recv", "send", "arm")}
    text = (
        "engine's loop per packet: "
        + ", ".join(f"{v:.2f} {k}" for k, v in per.items())
        + f" calls; {calls['send_s'] / seen * 1e6:.1f} us inside verdict sends, "
        f"{calls['recv_s'] / seen * 1e6:.1f} us in recvmmsg, "
        f"{calls['python_s'] / seen * 1e6:.1f} us in Python"
    )
    text += (
        f"; one verdict send took p50 {engine.get('send_us_p50')} / p99 "
        f"{engine.get('send_us_p99')} us; timer wake-ups came p50 "
        f"{engine.get('wake_late_us_p50')} / p99 {engine.get('wake_late_us_p99')} us late"
    )
    if "run_ms" in thread:
        text += (
            f"; its thread ran {thread['run_ms'] * 1e3 / seen:.1f} us and waited for a CPU "
            f"{thread['runq_wait_ms'] * 1e3 / seen:.1f} us per packet ("
            f"{thread['runq_wait_ms'] * 1e3 / max(1, thread['slices']):.1f} us per wake-up, "
            f"{thread['involuntary_switches']} involuntary switches)"
        )
    return text


def load_row(
    backend: str,
    delay_ms: float,
    load: Load,
    impaired: list[float],
    loaded: list[float],
    beside: list[float],
    before: dict[str, float],
    after: dict[str, float],
    still_running: int,
    engine: dict[str, Any],
) -> Row:
    """The row from what was measured (pure): every bound checked, the figures beside them."""
    seconds = after["t"] - before["t"]
    pps = (after["tx_packets"] - before["tx_packets"]) / seconds
    bound = 0.2 + 0.01 * delay_ms
    med, p90 = verdict.shifts(impaired, loaded)
    probe_ok = abs(med - delay_ms) <= bound and abs(p90 - delay_ms) <= bound
    checks = [f"probe shift median {med:+.3f} ms, p90 {p90:+.3f} ms (+-{bound:.2f})"]
    ok = probe_ok
    cpu_us = late_p99 = None
    user_pct = None
    if "cpu" in before:
        cpu_ns = after["cpu"] - before["cpu"]
        cpu_us = cpu_ns / 1e3 / max(1.0, pps * seconds)
        user_pct = 100 * (after["user"] - before["user"]) / max(1.0, cpu_ns)
        late_p99 = engine.get("late_us_p99")
        ok = ok and late_p99 is not None and late_p99 <= LATE_BOUND_US and cpu_us <= CPU_BOUND_US
        checks.append(f"late p99 {late_p99} us (<= {LATE_BOUND_US:g})")
        checks.append(f"cpu {cpu_us:.1f} us/packet (<= {CPU_BOUND_US:g})")
    covered = still_running == load.clients
    ok = ok and covered
    ref, rtts = verdict.summary_of(loaded), verdict.summary_of(impaired)
    other_med, other_p90 = verdict.shifts(impaired, beside)
    notes = [
        f"load: {load.clients} clients x {load.rate:g} msg/s, {load.pipeline} in flight; "
        f"{pps:,.0f} packets/s sent by the server (its interface's counter) over {seconds:.1f} s",
        "graded: " + "; ".join(checks),
        f"against the same probe under the same load unimpaired: median {ref['median_ms']:.3f},"
        f" p90 {ref['p90_ms']:.3f} ms; impaired: median {rtts['median_ms']:.3f}, p90 "
        f"{rtts['p90_ms']:.3f} ms ({rtts['n']} exchanges, {load.gap_s * 1e3:g} ms apart)",
        f"against the idle back-to-back probe (not graded): shift of median {other_med:+.3f} ms,"
        f" of p90 {other_p90:+.3f} ms",
    ]
    if cpu_us is not None:
        notes.append(
            f"engine's sidecar: {cpu_us:.1f} us of CPU per packet sent ({user_pct:.0f} % of it "
            f"in user space); engine's own log: released late p50 {engine.get('late_us_p50')} "
            f"us, p99 {engine.get('late_us_p99')} us, max {engine.get('late_us_max')} us; "
            f"seen {engine.get('seen')}"
        )
        loop_note = loop_costs(engine)
        if loop_note:
            notes.append(loop_note)
    else:
        notes.append("kernel backend: no engine process on the path (lateness, CPU: n/a)")
    if not covered:
        notes.append(f"only {still_running} of {load.clients} load clients ran to the window's end")
    observed = f"shift {med:+.3f}/{p90:+.3f} ms at {pps:,.0f} pkt/s" + (
        f", late p99 {late_p99} us, {cpu_us:.1f} us/pkt" if cpu_us is not None else ""
    )
    return verdict.row(
        "load",
        backend,
        f"{delay_ms:g} ms under {load.clients}x{load.rate:g} msg/s",
        observed,
        f"+-{bound:.2f} ms, p99<=0.2 ms, <=10 us",
        ok,
        notes,
        shift_median_ms=round(med, 3),
        shift_p90_ms=round(p90, 3),
        bound_ms=round(bound, 3),
        packets_per_s=round(pps),
        cpu_us_per_packet=None if cpu_us is None else round(cpu_us, 2),
        cpu_user_pct=None if user_pct is None else round(user_pct, 1),
        late_us_p99=late_p99,
        reference={"name": "the same probe under the same load", **ref},
        impaired=rtts,
        load={"clients": load.clients, "rate": load.rate, "pipeline": load.pipeline},
        engine=engine,
    )
