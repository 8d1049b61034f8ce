"""`postwacht audit verify|export` and `postwacht reviewers list|add|remove`."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any

from postwacht.cli.common import ExitCode
from postwacht.cli.review import actor, add_store_options, login_actor, run_with_store
from postwacht.records.audit import verify
from postwacht.records.review import may_review
from postwacht.records.sql import audit_line
from postwacht.records.store import RecordStore


def since(text: str) -> dt.datetime:
    """A date or time (ISO 8601; UTC when no zone is given)."""
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time (e.g. 2026-11-01 or 2026-11-01T08:00)") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def add_parsers(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail: verify its chain, export it")
    add_store_options(audit)
    actions = audit.add_subparsers(dest="audit", required=True, metavar="ACTION")
    actions.add_parser("verify", help="check that no entry was edited, deleted or reordered")
    export = actions.add_parser("export", help="entries as JSON lines, for a SIEM")
    export.add_argument("--since", type=since, metavar="WHEN",
                        help="only entries at or after this date or time (UTC)")
    export.add_argument("--after-seq", type=int, default=0, metavar="N",
                        help="only entries after entry N (the seq of the last line of the "
                             "previous export: nothing is skipped, whatever the clocks)")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    audit.set_defaults(run=_audit)

    reviewers = sub.add_parser("reviewers", help="who may review held mail (audited)")
    add_store_options(reviewers)
    actions = reviewers.add_subparsers(dest="reviewers", required=True, metavar="ACTION")
    actions.add_parser("list", help="the reviewers (none: anyone with access to the store)")
    for name in ("add", "remove"):
        change = actions.add_parser(name, help=f"{name} a reviewer")
        change.add_argument("name", type=actor, metavar="NAME")
        change.add_argument("--actor", type=actor, help="who (default: your login)")
    reviewers.set_defaults(run=_reviewers)


def _audit(args: argparse.Namespace) -> int:
    return run_with_store(args, f"audit {args.audit}", lambda store: _audit_in(args, store))


def _audit_in(args: argparse.Namespace, store: RecordStore) -> int:
    if args.audit == "export":
        try:
            for entry in store.audit_entries(args.since):
                if entry.seq > args.after_seq:
                    print(audit_line(entry), flush=True)
        except BrokenPipeError:  # the reader had enough (| head)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    # The head first: entries committed after it are left for the next verify (each
    # entry and the head move together, so what the head covers is complete).
    head = store.audit_head()
    entries = [e for e in store.audit_entries() if e.seq <= head[0]]
    problems = verify(entries, head)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"audit trail BROKEN: {len(problems)} problem(s) in {len(entries)} entries",
              file=sys.stderr)
        return ExitCode.FAILED
    print(f"audit trail intact: {len(entries)} entries, newest {head[0]} ({head[1][:16]}…)")
    return ExitCode.OK


def _reviewers(args: argparse.Namespace) -> int:
    return run_with_store(args, f"reviewers {args.reviewers}",
                          lambda store: _reviewers_in(args, store))


def _reviewers_in(args: argparse.Namespace, store: RecordStore) -> int:
    match args.reviewers:
        case "list":
            names = store.reviewers()
            print("\n".join(names) if names else
                  "no reviewers listed: anyone who can reach the records store may review")
        case "add":
            who = args.actor or login_actor()
            may_review(store, who)  # once reviewers are listed, only they change the list
            store.add_reviewer(args.name, who)
            print(f"{args.name}: may review held mail")
        case "remove":
            who = args.actor or login_actor()
            may_review(store, who)
            store.remove_reviewer(args.name, who)
            print(f"{args.name}: may no longer review held mail")
    return ExitCode.OK
