"""`postwacht serve`, `reload` and `status`."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

from postwacht import defaults
from postwacht.adapters.control import ControlError, ask
from postwacht.cli.common import (
    ExitCode,
    UsageError,
    add_records_options,
    add_state_option,
    mta_name,
    records_spec,
)
from postwacht.notices.sendmail import SENDMAIL


def add_parsers(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the filter (milter) for Postfix")
    serve.add_argument("--policy", required=True, metavar="POLICY", help="policy file")
    serve.add_argument("--milter", default=defaults.MILTER_SOCKET, metavar="SOCKET",
                       help=f"libmilter socket: inet:PORT@HOST or unix:PATH (made 0660) "
                            f"(default {defaults.MILTER_SOCKET})")
    serve.add_argument("--milter-timeout", type=_positive_int, default=defaults.MILTER_TIMEOUT,
                       metavar="SECONDS",
                       help=f"close a milter connection that waits this long for Postfix's "
                            f"next command (default {defaults.MILTER_TIMEOUT})")
    serve.add_argument("--metrics", default=defaults.METRICS_LISTEN, metavar="HOST:PORT",
                       help=f"Prometheus listener, '' for none (default "
                            f"{defaults.METRICS_LISTEN})")
    serve.add_argument("--socketmap", default=defaults.SOCKETMAP_LISTEN,
                       metavar="HOST:PORT|unix:PATH",
                       help=f"Postfix socketmap tables (transport, tls), '' for none; a UNIX "
                            f"socket is made 0660 (default {defaults.SOCKETMAP_LISTEN})")
    serve.add_argument("--socketmap-idle-timeout", type=_positive_float,
                       default=defaults.SOCKETMAP_IDLE_TIMEOUT, metavar="SECONDS",
                       help=f"close a socketmap connection that sends no complete request for "
                            f"this long (default {defaults.SOCKETMAP_IDLE_TIMEOUT:g})")
    serve.add_argument("--socketmap-max-connections", type=_positive_int,
                       default=defaults.SOCKETMAP_MAX_CONNECTIONS, metavar="N",
                       help=f"socketmap connections served at once; beyond, the one idle longest "
                            f"is closed (default {defaults.SOCKETMAP_MAX_CONNECTIONS})")
    add_state_option(serve)
    serve.add_argument("--check-interval", type=float, default=defaults.POLICY_CHECK_INTERVAL,
                       metavar="SECONDS", help="how often the policy file is checked for changes")
    serve.add_argument("--mta", type=mta_name, metavar="NAME",
                       help="this MTA instance's name in the records: review requests on the "
                            "messages it holds come to it (default: the host name)")
    add_records_options(serve)
    serve.add_argument("--postfix-config", metavar="DIR",
                       help="configuration directory of the Postfix this filter serves, whose "
                            "hold queue the records follow (default: Postfix's own)")
    serve.add_argument("--sendmail", default=SENDMAIL, metavar="PATH",
                       help="sendmail(1) that notices to senders and reviewers are handed "
                            f"to, with -C from --postfix-config when given (default {SENDMAIL})")
    serve.add_argument("--release-helper", type=Path, metavar="PATH",
                       help=f"the release helper's socket (default "
                            f"STATE/{defaults.RELEASE_HELPER_SOCKET})")
    serve.add_argument("--requests-interval", type=_positive_float,
                       default=defaults.REQUESTS_INTERVAL, metavar="SECONDS",
                       help=f"how often review requests for this MTA are looked for (default "
                            f"{defaults.REQUESTS_INTERVAL:g})")
    serve.add_argument("--sync-interval", type=_positive_float, default=defaults.SYNC_INTERVAL,
                       metavar="SECONDS",
                       help=f"how often held mail is expired (policy quarantine.retention_days) "
                            f"and records of messages that left the hold queue otherwise are "
                            f"closed (default {defaults.SYNC_INTERVAL:g})")
    serve.set_defaults(run=_serve)

    for name, text in (("reload", "load the policy file again in the running daemon"),
                       ("status", "show the running daemon's policy")):
        parser = sub.add_parser(name, help=text)
        add_state_option(parser, "the daemon's state directory")
        parser.add_argument("--json", action="store_true", help="print the reply as JSON")
        parser.set_defaults(run=_control, request=name)


def _serve(args: argparse.Namespace) -> int:
    from postwacht.adapters.socketmap import ConnectionLimits  # noqa: PLC0415 - as below
    from postwacht.app import MtaSettings  # noqa: PLC0415 - as below
    from postwacht.cli.serve import serve  # noqa: PLC0415 - pymilter only where it is needed

    limits = ConnectionLimits(idle_timeout=args.socketmap_idle_timeout,
                              max_connections=args.socketmap_max_connections)
    mta = MtaSettings(
        name=args.mta or _host_name(), records=records_spec(args),
        postfix_config=args.postfix_config, requests_interval=args.requests_interval,
        sync_interval=args.sync_interval, sendmail=args.sendmail)
    return serve(args.policy, args.milter, args.metrics or None, args.socketmap or None,
                 args.state, args.check_interval, args.milter_timeout, limits, mta,
                 args.release_helper)


def _host_name() -> str:
    name = socket.gethostname()
    try:
        return mta_name(name)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"the host name cannot name this MTA: {exc}; give --mta") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


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
