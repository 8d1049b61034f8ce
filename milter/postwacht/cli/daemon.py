"""`postwacht serve`, `reload` and `status`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from postwacht import defaults
from postwacht.adapters.control import ControlError, ask
from postwacht.cli.common import ExitCode, add_state_option


def add_parsers(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the filter (milter) for Postfix")
    serve.add_argument("--policy", required=True, metavar="POLICY", help="policy file")
    serve.add_argument("--milter", default=defaults.MILTER_SOCKET, metavar="SOCKET",
                       help=f"libmilter socket (default {defaults.MILTER_SOCKET})")
    serve.add_argument("--metrics", default=defaults.METRICS_LISTEN, metavar="HOST:PORT",
                       help=f"Prometheus listener, '' for none (default "
                            f"{defaults.METRICS_LISTEN})")
    serve.add_argument("--socketmap", default=defaults.SOCKETMAP_LISTEN, metavar="HOST:PORT",
                       help=f"Postfix socketmap tables (transport, tls), '' for none "
                            f"(default {defaults.SOCKETMAP_LISTEN})")
    add_state_option(serve)
    serve.add_argument("--check-interval", type=float, default=defaults.POLICY_CHECK_INTERVAL,
                       metavar="SECONDS", help="how often the policy file is checked for changes")
    serve.set_defaults(run=_serve)

    for name, text in (("reload", "load the policy file again in the running daemon"),
                       ("status", "show the running daemon's policy")):
        parser = sub.add_parser(name, help=text)
        add_state_option(parser, "the daemon's state directory")
        parser.add_argument("--json", action="store_true", help="print the reply as JSON")
        parser.set_defaults(run=_control, request=name)


def _serve(args: argparse.Namespace) -> int:
    from postwacht.cli.serve import serve  # noqa: PLC0415 - pymilter only where it is needed

    return serve(args.policy, args.milter, args.metrics or None, args.socketmap or None,
                 args.state, args.check_interval)


def _control(args: argparse.Namespace) -> int:
    try:
        reply = ask(args.state, args.request)
    except ControlError as exc:
        print(f"postwacht {args.request}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    if args.json:
        print(json.dumps(reply))
    elif reply.get("ok"):
        done = {"reload": "reloaded" if reply.get("changed") else "unchanged",
                "status": "running"}[args.request]
        print(f"{done}: {reply.get('summary', '')}")
    for problem in reply.get("problems", []):
        print(problem, file=sys.stderr)
    if not reply.get("ok"):
        print(f"postwacht {args.request}: refused; the running policy stays", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
