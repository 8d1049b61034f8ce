"""`postwacht release-helper`: the one part of Postwacht that runs as root.

It does nothing but carry out review requests that the records store says are pending
for this MTA (`records.queue.carry_out`), and capture what review may see of the messages
held under this MTA's open records (`records.queue.capture`), when the daemon asks over
its socket (`adapters.releasehelper`). Deploy it with deploy/systemd/postwacht-release.service.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import grp
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from postwacht.adapters.releasehelper import (
    DEFAULT_GROUP,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    HelperLimits,
    ReleaseHelperServer,
)
from postwacht.cli.common import (
    ExitCode,
    add_records_options,
    add_state_option,
    mta_name,
    records_spec,
)
from postwacht.records.locate import open_records
from postwacht.records.queue import Postfix, capture, carry_out
from postwacht.records.store import RecordsError

log = logging.getLogger("postwacht.release")


def add_parsers(sub: Any) -> None:
    helper = sub.add_parser(
        "release-helper",
        help="carry out release and delete requests on this MTA, and capture held "
             "messages for review (runs as root)")
    helper.add_argument("--socket", required=True, type=Path, metavar="PATH",
                        help="UNIX socket the daemon asks on (made 0660)")
    helper.add_argument("--mta", required=True, type=mta_name, metavar="NAME",
                        help="this MTA's name, as the daemon's --mta gives it: only records "
                             "held here are acted on")
    add_state_option(helper, "the daemon's state directory (for the SQLite store)")
    add_records_options(helper)
    helper.add_argument("--postfix-config", metavar="DIR",
                        help="Postfix configuration directory (default: Postfix's own)")
    helper.add_argument("--socket-group", default=DEFAULT_GROUP, metavar="GROUP",
                        help=f"group that may connect: the daemon's (default {DEFAULT_GROUP})")
    helper.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT,
                        metavar="SECONDS", help="close a connection that sends no request "
                                                f"for this long (default {IDLE_TIMEOUT:g})")
    helper.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                        help=f"connections served at once (default {MAX_CONNECTIONS})")
    helper.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = _problem(args)
    if problem:
        log.error("not starting: %s", problem)
        return ExitCode.USAGE
    if os.geteuid() != 0:
        log.error("not starting: the release helper must run as root (postsuper is "
                  "reserved for the superuser); see deploy/systemd/postwacht-release.service")
        return ExitCode.FAILED
    spec = records_spec(args)
    # Threads inherit this mask: the main thread alone waits for the stop signal.
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        store = open_records(spec, args.state, create=False, mta=args.mta)
    except RecordsError as exc:
        log.error("not starting: %s", exc)
        return ExitCode.FAILED
    with contextlib.ExitStack() as running:
        running.callback(store.close)
        postfix = Postfix(args.postfix_config)
        try:
            server = ReleaseHelperServer(
                args.socket, functools.partial(carry_out, store, postfix, args.mta),
                functools.partial(capture, store, postfix, args.mta),
                args.socket_group or None,
                HelperLimits(args.idle_timeout, args.max_connections))
        except OSError as exc:
            log.error("not starting: socket %s: %s", args.socket, exc.strerror or exc)
            return ExitCode.FAILED
        running.callback(server.stop)
        server.start()
        log.info("release helper for MTA %r on %s (group %s), Postfix %s", args.mta,
                 args.socket, grp.getgrgid(args.socket.stat().st_gid).gr_name,
                 args.postfix_config or "default configuration")
        received = signal.sigwait(stop_signals)
        log.info("stopping on %s", signal.Signals(received).name)
    return ExitCode.OK


def _problem(args: argparse.Namespace) -> str:
    if not args.socket.is_absolute():
        return f"--socket {args.socket}: give an absolute path"
    if not 0 < args.idle_timeout < float("inf"):
        return f"--idle-timeout {args.idle_timeout}: give a number of seconds above 0"
    if args.max_connections < 1:
        return f"--max-connections {args.max_connections}: give at least 1"
    return ""
