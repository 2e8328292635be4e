"""``python3 -m echolab_fault_engine run --delay-us 20000 ...``, ``... idle`` or ``... probe``.

A running engine (``run`` or ``idle``) is driven through its control socket with the one client
of every sidecar: ``python3 -m echolab_control '{"op": "set", "delay_us": 50000}'``.
"""

from __future__ import annotations

import argparse
import sys

from echolab_control import PATH

SPIN_US = {"python": 200, "compiled": 0}  # --spin-us by loop


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python3 -m echolab_fault_engine")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="hold and release the packets of an NFQUEUE")
    run.add_argument("--queue", type=int, default=0)
    run.add_argument("--delay-us", type=int, default=0)
    run.add_argument("--jitter-us", type=int, default=0)
    run.add_argument("--correlation", type=float, default=0.0)
    run.add_argument(
        "--distribution",
        choices=("uniform", "normal", "pareto", "paretonormal"),
        default="uniform",
        help="of jitter, as netem's tables",
    )
    run.add_argument("--loss", type=float, default=0.0, help="probability 0..1")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--reorder", action="store_true", help="let jitter reorder packets")
    run.add_argument(
        "--spin-us",
        type=int,
        default=None,
        help="the longest poll before a deadline (us); default: 200 for the Python loop, 0 for "
        "the compiled one, whose timer wakes without slack and whose spin would cost more CPU "
        "than it saves lateness",
    )
    run.add_argument(
        "--fixed-spin",
        action="store_true",
        help="always poll --spin-us, do not learn the spin from select's wake-ups",
    )
    run.add_argument("--max-len", type=int, default=10000, help="packets the kernel may queue")
    run.add_argument(
        "--kernel-clock", action="store_true", help="count the delay from the kernel's stamp"
    )
    run.add_argument(
        "--loop",
        choices=("compiled", "python"),
        default="compiled",
        help="the packet loop: in C (echolab_fastloop) or the reference one in Python",
    )
    run.add_argument(
        "--no-realtime",
        dest="realtime",
        action="store_false",
        help="do not ask for SCHED_FIFO (to compare; the status says what the kernel granted)",
    )
    sub.add_parser("probe", help="which faults this kernel can apply (JSON)")
    idle = sub.add_parser(
        "idle", help="answer note/status until SIGTERM (kernel-only faults are exec'd into this)"
    )
    for command in (run, idle):
        command.add_argument("--control", default=PATH, help="the control socket's path")
    args = top.parse_args(argv)
    if args.command == "idle":
        from echolab_fault_engine.idle import run as run_idle

        return run_idle(args.control)
    if args.command == "probe":
        from echolab_fault_engine.probe import main as probe_main

        return probe_main()
    from echolab_fault_engine.engine import run as run_engine
    from echolab_fault_engine.schedule import Schedule

    schedule = Schedule(
        delay_s=args.delay_us / 1e6,
        jitter_s=args.jitter_us / 1e6,
        correlation=args.correlation,
        loss=args.loss,
        seed=args.seed,
        keep_order=not args.reorder,
        distribution=args.distribution,
    )
    return run_engine(
        schedule,
        args.queue,
        max_len=args.max_len,
        spin_s=(args.spin_us if args.spin_us is not None else SPIN_US[args.loop]) / 1e6,
        kernel_clock=args.kernel_clock,
        adaptive_spin=not args.fixed_spin,
        control_path=args.control,
        loop=args.loop,
        realtime=args.realtime,
    )


if __name__ == "__main__":
    sys.exit(main())
