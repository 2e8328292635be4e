"""``python3 -m echolab_proxy serve --listen 0.0.0.0:8899 --upstream server:8899``.

The running proxy is driven through its control socket with the one client of every sidecar:
``python3 -m echolab_control '{"op": "add", "toxic": {...}}'`` (inside the proxy's container).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import sys

from echolab_control import PATH, Control

from .control import handle
from .link import Relay, say
from .toxics import ToxicSpec


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host, int(port)


async def serve(args: argparse.Namespace) -> int:
    proxy = Relay(upstream=args.upstream, seed=args.seed)
    for text in args.toxic:
        proxy.add(ToxicSpec.from_dict(json.loads(text)))
    listener = await asyncio.start_server(proxy.handle, *args.listen)
    control = Control(functools.partial(handle, proxy), args.control)
    loop = asyncio.get_running_loop()
    loop.add_reader(control.fileno(), control.serve)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    say(
        "ready",
        listen=list(args.listen),
        upstream=list(args.upstream),
        seed=args.seed,
        toxics=[spec.as_dict() for spec in proxy.toxics.values()],
        control=control.path,
    )
    try:
        await stop.wait()
    finally:
        loop.remove_reader(control.fileno())
        control.close()
        listener.close()
    for link in list(proxy.links.values()):
        link.close("proxy stopped")
    say("stats", **proxy.stats())
    return 0


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python3 -m echolab_proxy")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the proxy")
    run.add_argument("--listen", type=_address, default=("0.0.0.0", 8899))
    run.add_argument("--upstream", type=_address, default=("server", 8899))
    run.add_argument("--control", default=PATH, help=f"the control socket (default {PATH})")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--toxic", action="append", default=[], help="a toxic as JSON (repeat)")
    args = top.parse_args(argv)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
