"""``python3 -m echolab_control '{"op": "status"}' [--path P] [--timeout S]``: one request.

Prints the reply as one JSON line. Exit status: 0 when the sidecar answered ok, 1 when it
refused (or the message is not a JSON object, refused here the way the sidecar would), 2 when
nothing answered; the harness tells "not up yet" from "said no" by it.
"""

from __future__ import annotations

import argparse
import json
import sys

from echolab_control import PATH, decode, refusal, request

OK, REFUSED, SILENT = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m echolab_control", description="send one request to a sidecar"
    )
    parser.add_argument("message", help='a JSON object, e.g. \'{"op": "status"}\'')
    parser.add_argument("--path", default=PATH, help=f"the control socket (default {PATH})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    args = parser.parse_args(argv)
    try:
        message = decode(args.message)
    except ValueError as error:
        return say(refusal(f"not a request: {error}"), REFUSED)
    try:
        reply = request(message, args.path, args.timeout)
    except OSError as error:
        return say(refusal(f"no control socket at {args.path}: {error}"), SILENT)
    except ValueError as error:
        return say(refusal(f"no valid reply from {args.path}: {error}"), SILENT)
    return say(reply, OK if reply.get("ok") is True else REFUSED)


def say(reply: dict[str, object], code: int) -> int:
    print(json.dumps(reply), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
