"""`postwacht quarantine list|show|release|delete|audit`: review of held mail."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
from typing import Any

from postwacht.cli.common import ExitCode, UsageError, add_state_option
from postwacht.core.text import is_queue_id, printable, terminal_text
from postwacht.records.review import (
    HeldMessage,
    Postfix,
    ReviewError,
    conflict,
    delete,
    held_messages,
    release,
)
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import QuarantineRecord, RecordsError, RecordStore

ACTOR_MAX = 64


def queue_id(text: str) -> str:
    """A queue id from the command line: Postfix's shape only, so that nothing else (an
    option, `ALL`, `-`) can ever reach postcat or postsuper."""
    if not is_queue_id(text):
        raise argparse.ArgumentTypeError(
            f"{printable(text, 64)!r} is not a Postfix queue id (upper-case hex, or a long "
            "queue id of letters and digits)")
    return text


def actor(text: str) -> str:
    """Who reviews, as kept in the audit log: one printable word, bounded."""
    if not text or len(text) > ACTOR_MAX or printable(text) != text or text.split() != [text]:
        raise argparse.ArgumentTypeError(
            f"{printable(text, ACTOR_MAX)!r}: an actor is a login name or an address: "
            f"printable, no spaces, 1 to {ACTOR_MAX} characters")
    return text


def add_parsers(sub: Any) -> None:
    quarantine = sub.add_parser("quarantine", help="review held mail")
    add_state_option(quarantine)
    quarantine.add_argument("--postfix-config", metavar="DIR",
                            help="Postfix configuration directory (default: Postfix's own)")
    actions = quarantine.add_subparsers(dest="review", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="held messages with rule and reason")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="envelope, headers and decision of one message")
    show.add_argument("queue_id", metavar="ID", type=queue_id)
    show.add_argument("--body", action="store_true", help="also print the body")
    for name, text in (("release", "deliver a held message"), ("delete", "delete it")):
        action = actions.add_parser(name, help=text)
        action.add_argument("queue_id", metavar="ID", type=queue_id)
        action.add_argument("--reason", default="", help="why (kept in the audit log)")
        action.add_argument("--actor", type=actor, help="who (default: your login)")
        if name == "release":
            action.add_argument("--force", action="store_true",
                                help="release even when addressed to a retired domain")
    actions.add_parser("audit", help="every review action: who, when, what, why")
    quarantine.set_defaults(run=_review)

    report = sub.add_parser("report", help="reports from Postwacht's records")
    reports = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    retired = reports.add_parser(
        "retired", help="who and what still mails retired domains, most frequent first")
    retired.add_argument("--since", type=float, default=30.0, metavar="DAYS",
                         help="look back this many days (default 30)")
    add_state_option(retired)
    retired.add_argument("--json", action="store_true")
    retired.set_defaults(run=_report_retired)


def _report_retired(args: argparse.Namespace) -> int:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.since)
    try:
        store = SqliteRecords(args.state, create=False)
        try:
            rows = store.retired_attempts(since)
        finally:
            store.close()
    except RecordsError as exc:
        print(f"postwacht report retired: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    if args.json:
        print(json.dumps([
            {"sender": r.sender, "client": r.client, "domain": r.domain,
             "attempts": r.attempts, "first": r.first.isoformat(), "last": r.last.isoformat()}
            for r in rows]))
        return ExitCode.OK
    if not rows:
        print(f"no attempts to mail a retired domain in the last {args.since:g} days")
        return ExitCode.OK
    print(f"attempts to mail retired domains, last {args.since:g} days (most frequent first):")
    for r in rows:
        print(f"{r.attempts:6d}  {printable(r.domain)}  from {printable(r.sender)} via "
              f"{printable(r.client)}  "
              f"(first {r.first:%Y-%m-%d %H:%M}, last {r.last:%Y-%m-%d %H:%M} UTC)")
    return ExitCode.OK


def _actor() -> str:
    """Who is reviewing: asked only when a review action runs (not to build the parser)."""
    login = os.environ.get("SUDO_USER") or getpass.getuser()
    try:
        return actor(login)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"your login cannot be kept as the actor: {exc}; "
                         "give --actor") from None


def _review(args: argparse.Namespace) -> int:
    postfix = Postfix(args.postfix_config)
    try:
        store = SqliteRecords(args.state, create=False)
        try:
            return _act(args, store, postfix)
        finally:
            store.close()
    except (ReviewError, RecordsError) as exc:
        print(f"postwacht quarantine {args.review}: {exc}", file=sys.stderr)
        return ExitCode.FAILED


def _act(args: argparse.Namespace, store: RecordStore, postfix: Postfix) -> int:
    match args.review:
        case "list":
            held = held_messages(store, postfix)
            if args.json:
                print(json.dumps([_held_json(h) for h in held]))
            else:
                _print_held(held)
        case "show":
            _print_records(store.records_of(args.queue_id))
            print(terminal_text(postfix.show(args.queue_id, args.body)), end="")
        case "release":
            release(store, postfix, args.queue_id, args.actor or _actor(),
                    args.reason, args.force)
            print(f"{args.queue_id}: released")
        case "delete":
            delete(store, postfix, args.queue_id, args.actor or _actor(), args.reason)
            print(f"{args.queue_id}: deleted")
        case "audit":
            for entry in store.audit():
                print(f"{entry.at.isoformat()} {printable(entry.actor)} {entry.action} "
                      f"{printable(entry.queue_id)} {printable(entry.reason)!r}")
    return ExitCode.OK


def _print_records(records: list[QuarantineRecord]) -> None:
    """Every record under the queue id: a reviewer sees a conflict, never just one side."""
    if not records:
        print("no Postwacht record for this message (release needs --force)")
    note = conflict([r for r in records if r.status == "held"])
    if note:
        print(f"WARNING: {note}")
    for record in records:
        if len(records) > 1:
            print(f"record #{record.record_id}:")
        print(f"held:    {record.held_at.isoformat()} ({printable(record.status)})")
        print(f"rule:    {record.rule}\nreason:  {printable(record.reason)}")
        print(f"sender:  {printable(record.sender) or '<>'}")
        if record.client:
            print(f"client:  {printable(record.client)}")
        print(f"policy:  {printable(record.policy[:12])}")
        for r in record.recipients:
            print(f"  {printable(r.address)}: {r.action.value} ({r.rule}) "
                  f"{printable(r.reason)}")


def _held_json(h: HeldMessage) -> dict[str, Any]:
    return {
        "queue_id": h.queue_id,
        "arrival": h.arrival.isoformat() if h.arrival else None,
        "sender": h.sender,
        "recipients": list(h.recipients),
        "rule": h.record.rule if h.record else None,
        "reason": h.record.reason if h.record else None,
        "in_hold_queue": h.in_hold_queue,
        "has_record": h.record is not None,
        "records": len(h.records),
        "rules": sorted({str(r.rule) for r in h.records}),
        "note": h.note,
    }


def _print_held(held: list[HeldMessage]) -> None:
    if not held:
        print("no held messages")
        return
    now = dt.datetime.now(dt.UTC)
    for h in held:
        age = f"{(now - h.arrival).total_seconds() / 3600:.1f}h" if h.arrival else "?"
        rule = h.record.rule if h.record else "-"
        reason = printable(h.record.reason) if h.record else "-"
        recipients = ", ".join(printable(r) for r in h.recipients)
        print(f"{printable(h.queue_id)}  age {age}  from {printable(h.sender) or '<>'}  "
              f"to {recipients}")
        print(f"    rule: {rule}  reason: {reason}")
        if h.note:
            print(f"    note: {h.note}")
