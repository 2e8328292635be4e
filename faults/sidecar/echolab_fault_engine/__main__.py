"""``python3 -m echolab_fault_engine run --delay-us 20000 ...``, ``... idle``, ``... probe``, or
``... ctl '{"op": "set", "delay_us": 50000}'`` (a request to the running engine; prints its answer).
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import sys
from types import FrameType
from typing import Any


def idle() -> int:
    """Wait for SIGTERM; answer ``note``/``status`` on the control socket (kernel-only faults)."""
    from echolab_fault_engine.control import Control

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    note: dict[str, Any] = {}

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "note":
            note.clear()
            note.update(request["note"])
        elif request.get("op") != "status":
            raise ValueError(f"the idle engine takes 'note' and 'status', not {request['op']!r}")
        return {"note": note}

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    control = Control(handle)
    print(json.dumps({"event": "ready", "engine": "idle"}), flush=True)
    try:
        while True:
            select.select([control], [], [])
            control.serve()
    finally:
        control.close()


def ctl(message: str) -> int:
    from echolab_fault_engine.control import request

    answer = request(json.loads(message))
    print(json.dumps(answer), flush=True)
    return 0 if answer.get("ok") else 1


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
        "--spin-us", type=int, default=200, help="the longest poll before a deadline (us)"
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
    sub.add_parser("probe", help="which faults this kernel can apply (JSON)")
    sub.add_parser("idle", help="wait for SIGTERM (kernel-only faults are exec'd into this)")
    control = sub.add_parser("ctl", help="send one JSON request to the running engine")
    control.add_argument("message")
    args = top.parse_args(argv)
    if args.command == "ctl":
        return ctl(args.message)
    if args.command == "idle":
        return idle()
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
        spin_s=args.spin_us / 1e6,
        kernel_clock=args.kernel_clock,
        adaptive_spin=not args.fixed_spin,
    )


if __name__ == "__main__":
    sys.exit(main())
