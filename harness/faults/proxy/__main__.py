"""``python3 -m echolab_proxy serve --listen 0.0.0.0:8899 --upstream server:8899`` or
``python3 -m echolab_proxy ctl '{"op": "stats"}'`` (inside the proxy's container)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from .control import request, serve_control
from .link import Proxy, say
from .toxics import ToxicSpec


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host, int(port)


async def serve(args: argparse.Namespace) -> int:
    proxy = Proxy(upstream=args.upstream, seed=args.seed)
    for text in args.toxic:
        proxy.add(ToxicSpec.from_dict(json.loads(text)))
    listener = await asyncio.start_server(proxy.handle, *args.listen)
    control = await serve_control(proxy, *args.control)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    say("ready", listen=list(args.listen), upstream=list(args.upstream), seed=args.seed,
        toxics=[spec.as_dict() for spec in proxy.toxics.values()])  # fmt: skip
    await stop.wait()
    listener.close()
    control.close()
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
    run.add_argument("--control", type=_address, default=("127.0.0.1", 8474))
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--toxic", action="append", default=[], help="a toxic as JSON (repeat)")
    ctl = sub.add_parser("ctl", help="send one JSON request to the control channel")
    ctl.add_argument("message")
    ctl.add_argument("--control", type=_address, default=("127.0.0.1", 8474))
    args = top.parse_args(argv)
    if args.command == "serve":
        return asyncio.run(serve(args))
    reply = request(*args.control, json.loads(args.message))
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
