"""What the engine asks of the kernel for itself: timely wake-ups (timer slack, a short slice),
and what its thread cost (CPU, run-queue wait, context switches)."""

from __future__ import annotations

import ctypes
from typing import Any

PR_SET_TIMERSLACK = 29


def set_timer_slack(nanoseconds: int = 1) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
SLICE_NS = 100_000  # the shortest slice EEVDF takes (0.1 ms)


class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    ]


def set_slice(nanoseconds: int = SLICE_NS) -> bool:
    """Ask the fair scheduler for a short slice (``sched_setattr``, SCHED_OTHER with
    ``sched_runtime``; no privilege needed). On EEVDF kernels (Linux 6.12 on) a task with a
    shorter slice than the running one preempts it when it wakes, and the cgroup's entity takes
    its shortest child's slice: the engine gets a core when its timer fires instead of waiting
    out a busy client's slice, which is what made it late under load. A kernel that ignores the
    slice ignores it; one that refuses says False."""
    import platform

    number = SYS_SCHED_SETATTR.get(platform.machine())
    if number is None:
        return False
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=0, sched_runtime=nanoseconds)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(number, 0, ctypes.byref(attr), 0)) == 0
    except (OSError, AttributeError):
        return False


RT_PRIORITY = 50  # above every default-policy task, below the kernel's own threads (99)


def set_realtime(priority: int = RT_PRIORITY) -> str | None:
    """Ask for ``SCHED_FIFO``: a woken real-time thread takes a core from any fair-scheduled
    task at once, so a busy workload cannot make the engine late, however short the slice.
    Needs ``CAP_SYS_NICE`` and, where the kernel groups real-time time (cgroup v1 with
    ``CONFIG_RT_GROUP_SCHED``), a real-time budget for the container (``--cpu-rt-runtime``,
    which the daemon's own ``cpu-rt-runtime`` makes possible); the budget also bounds what the
    engine can take from the workload. None when granted, else the kernel's reason."""
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as e:
        return e.strerror or str(e)
    return None


def thread_cost() -> dict[str, Any]:
    """The calling thread's CPU and scheduling as the kernel counts them: time on a CPU and
    time runnable but waiting for one (``/proc/thread-self/schedstat``: the run-queue wait is
    what makes a woken engine late), and its context switches. Read in the loop's thread (the
    control socket is served there), so it is the packet loop's own."""
    import resource

    cost: dict[str, Any] = {}
    try:
        with open("/proc/thread-self/schedstat") as f:
            run_ns, wait_ns, slices = (int(v) for v in f.read().split()[:3])
        cost |= {"run_ms": round(run_ns / 1e6, 1), "runq_wait_ms": round(wait_ns / 1e6, 1)}
        cost["slices"] = slices
    except (OSError, ValueError):
        pass
    usage = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
    cost |= {"voluntary_switches": usage.ru_nvcsw, "involuntary_switches": usage.ru_nivcsw}
    return cost
