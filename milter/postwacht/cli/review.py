"""`postwacht quarantine list|show|release|delete|dismiss|audit` and `report retired`:
review of held mail with access to the records store only (no shell on the MTA)."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from postwacht.cli.common import (
    ExitCode,
    UsageError,
    add_records_options,
    add_state_option,
    records_spec,
)
from postwacht.core.text import one_word, printable, terminal_text
from postwacht.records.locate import open_records
from postwacht.records.queue import Postfix, PostfixError
from postwacht.records.review import (
    ReviewError,
    approve,
    ask,
    decline,
    dismiss,
    find,
    note,
    release_mode,
    wait,
)
from postwacht.records.store import (
    TO_REVIEW,
    AuditAction,
    QuarantineRecord,
    RecordsError,
    RecordStore,
    ReleaseMode,
    Request,
    Review,
)

SYSLOG = "/dev/log"
ACTOR_MAX = 64
WAIT_DEFAULT = 30.0


def actor(text: str) -> str:
    """Who reviews, as kept in the audit trail: one printable word, bounded."""
    if not one_word(text, ACTOR_MAX):
        raise argparse.ArgumentTypeError(
            f"{printable(text, ACTOR_MAX)!r}: an actor is a login name or an address: "
            f"printable, no spaces, 1 to {ACTOR_MAX} characters")
    return text


def add_store_options(parser: argparse.ArgumentParser) -> None:
    add_state_option(parser)
    add_records_options(parser)


def _store_options_after(action: argparse.ArgumentParser) -> None:
    """The same options after the action too (`quarantine list --state DIR`), where a
    postmaster writes them; given before it, they are not overwritten (SUPPRESS)."""
    action.add_argument("--state", default=argparse.SUPPRESS, metavar="DIR",
                        help="as before the action")
    for name, metavar in (("--records", "URL"), ("--records-file", "FILE"),
                          ("--mta", "NAME")):
        action.add_argument(name, default=argparse.SUPPRESS, metavar=metavar,
                            help=argparse.SUPPRESS)


def add_parsers(sub: Any) -> None:
    quarantine = sub.add_parser("quarantine", help="review held mail")
    add_store_options(quarantine)
    quarantine.add_argument("--mta", metavar="NAME",
                            help="only the MTA of this name (by default: every MTA)")
    actions = quarantine.add_subparsers(dest="review", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="held messages with rule and reason")
    listing.add_argument("--all", action="store_true",
                         help="also released, deleted, expired and dismissed ones")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="the record of one held message")
    show.add_argument("ref", metavar="ID", help="queue id, or record number #N")
    show.add_argument("--message", action="store_true",
                      help="also print the message's headers (on the MTA that holds it, "
                           "as root)")
    show.add_argument("--body", action="store_true", help="with --message: the body too")
    show.add_argument("--postfix-config", metavar="DIR",
                      help="Postfix configuration directory for --message")
    for name, text in (("release", "deliver a held message"),
                       ("delete", "delete a held message"),
                       ("approve", "approve another person's release that needs a second "
                                   "pair of eyes"),
                       ("decline", "decline a release that waits for approval (or withdraw "
                                   "your own)"),
                       ("dismiss", "close the record of a message that is gone")):
        action = actions.add_parser(name, help=text)
        action.add_argument("ref", metavar="ID", help="queue id, or record number #N")
        action.add_argument("--reason", required=True, help="why (kept in the audit trail)")
        action.add_argument("--actor", type=actor, help="who (default: your login)")
        if name not in ("dismiss", "decline"):
            action.add_argument("--wait", type=float, default=WAIT_DEFAULT, metavar="SECONDS",
                                help="wait this long for the MTA to carry it out "
                                     f"(default {WAIT_DEFAULT:g})")
        if name == "release":
            how = action.add_mutually_exclusive_group()
            how.add_argument("--route", action="store_true",
                             help="held for insecure transport: send it through the "
                                  "policy's secure route")
            how.add_argument("--override", "--force", action="store_true", dest="override",
                             help="release although a rule holds it (recorded as an "
                                  "override)")
    actions.add_parser("audit", help="the audit trail: who did what, when and why")
    for action in actions.choices.values():
        _store_options_after(action)
    quarantine.set_defaults(run=_review)

    report = sub.add_parser("report", help="reports from Postwacht's records")
    reports = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    retired = reports.add_parser(
        "retired", help="who and what still mails retired domains, most frequent first")
    retired.add_argument("--since", type=float, default=30.0, metavar="DAYS",
                         help="look back this many days (default 30)")
    add_store_options(retired)
    retired.add_argument("--json", action="store_true")
    retired.set_defaults(run=_report_retired)


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[RecordStore]:
    """The store the options name (never created here); RecordsError when it cannot be."""
    store = open_records(records_spec(args), args.state, create=False,
                         mta=getattr(args, "mta", None) or socket.gethostname())
    try:
        yield store
    finally:
        store.close()


def run_with_store(args: argparse.Namespace, what: str,
                   work: Callable[[RecordStore], int]) -> int:
    audit_to_syslog()
    try:
        with opened(args) as store:
            return work(store)
    except (ReviewError, RecordsError, PostfixError) as exc:
        # Messages quote text from the store, which any of its writers may have put there.
        print(f"postwacht {what}: {printable(str(exc))}", file=sys.stderr)
        return ExitCode.FAILED


def audit_to_syslog() -> None:
    """The audit entries this command writes (requests, dismissals, reviewers) go to the
    system log as one JSON line each, as the daemon's go to its log: a SIEM that reads
    the logs of the MTAs and of the reviewers' hosts sees every entry."""
    audit = logging.getLogger("postwacht.audit")
    if audit.handlers or not os.path.exists(SYSLOG):
        return
    try:
        handler = logging.handlers.SysLogHandler(
            SYSLOG, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
    except OSError:
        return  # no system log to write to: the entries are in the store all the same
    handler.setFormatter(logging.Formatter("postwacht-audit: %(message)s"))
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)


def _report_retired(args: argparse.Namespace) -> int:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.since)
    return run_with_store(args, "report retired", lambda store: _print_retired(
        args, store.retired_attempts(since)))


def _print_retired(args: argparse.Namespace, rows: list[Any]) -> int:
    if args.json:
        print(json.dumps([
            {"sender": r.sender, "client": r.client, "domain": r.domain,
             "attempts": r.attempts, "monitored": r.monitored,
             "first": r.first.isoformat(), "last": r.last.isoformat()}
            for r in rows]))
        return ExitCode.OK
    if not rows:
        print(f"no attempts to mail a retired domain in the last {args.since:g} days")
        return ExitCode.OK
    print(f"attempts to mail retired domains, last {args.since:g} days (most frequent first):")
    for r in rows:
        left = f"; {r.monitored} LEFT (monitor mode)" if r.monitored else ""
        print(f"{r.attempts:6d}  {printable(r.domain)}  from {printable(r.sender)} via "
              f"{printable(r.client)}  "
              f"(first {r.first:%Y-%m-%d %H:%M}, last {r.last:%Y-%m-%d %H:%M} UTC{left})")
    return ExitCode.OK


def login_actor() -> str:
    """Who is reviewing: asked only when a review action runs (not to build the parser)."""
    login = os.environ.get("SUDO_USER") or getpass.getuser()
    try:
        return actor(login)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"your login cannot be kept as the actor: {exc}; "
                         "give --actor") from None


def _review(args: argparse.Namespace) -> int:
    return run_with_store(args, f"quarantine {args.review}", lambda store: _act(args, store))


def _act(args: argparse.Namespace, store: RecordStore) -> int:
    match args.review:
        case "list":
            records = store.quarantine_records(None if args.all else TO_REVIEW, args.mta)
            if args.json:
                print(json.dumps([_record_json(r, records) for r in records]))
            else:
                _print_list(records)
        case "show":
            record = find(store, args.ref, args.mta)
            _print_record(record)
            if args.message:
                postfix = Postfix(args.postfix_config)
                shown = postfix.show(record.queue_id, args.body)
                # Reading a held message is audited, whichever way it is read.
                store.note(login_actor(), AuditAction.VIEWED, record.record_id,
                           "headers and body (postcat)" if args.body else "headers (postcat)")
                print(terminal_text(shown), end="")
        case "release" | "delete":
            return _request(args, store)
        case "approve":
            record = find(store, args.ref, args.mta)
            asked = approve(store, record, args.actor or login_actor(), args.reason)
            return _outcome(args, store, record, asked)
        case "decline":
            record = find(store, args.ref, args.mta)
            decline(store, record, args.actor or login_actor(), args.reason)
            print(f"{printable(record.queue_id)} (#{record.record_id}): the release was "
                  "declined; the message is held")
        case "dismiss":
            record = find(store, args.ref, args.mta)
            dismiss(store, record, args.actor or login_actor(), args.reason)
            print(f"{printable(record.queue_id)} (#{record.record_id}): dismissed")
        case "audit":
            for entry in store.audit_entries():
                print(f"{entry.seq:6d} {entry.at:%Y-%m-%d %H:%M:%S} {printable(entry.actor)} "
                      f"{entry.action} {printable(entry.queue_id)} on {printable(entry.mta)}"
                      f"{' (override)' if entry.override else ''} "
                      f"{printable(entry.reason)!r}")
    return ExitCode.OK


def _request(args: argparse.Namespace, store: RecordStore) -> int:
    record = find(store, args.ref, args.mta)
    action = Review(args.review)
    mode = release_mode(args.route, args.override) if action is Review.RELEASE \
        else ReleaseMode.PLAIN
    asked = ask(store, record, action, mode, args.actor or login_actor(), args.reason)
    name = f"{printable(record.queue_id)} (#{record.record_id}) on {printable(record.mta)}"
    if asked.awaiting_approval:
        print(f"{name}: {action} requested (request {asked.request_id}); it needs a second "
              f"person because {printable(asked.needs_approval)}: an approver runs "
              f"`postwacht quarantine approve '#{record.record_id}' --reason ...`")
        return ExitCode.PENDING
    return _outcome(args, store, record, asked)


def _outcome(args: argparse.Namespace, store: RecordStore, record: QuarantineRecord,
             asked: Request) -> int:
    """Wait for the MTA's daemon to carry out the request, and say how it went."""
    action, mode = asked.action, asked.mode
    done = wait(store, asked.request_id, max(0.0, args.wait))
    name = f"{printable(record.queue_id)} (#{record.record_id}) on {printable(record.mta)}"
    if done.outcome == "done":
        print(f"{name}: {action.status}{' as an override' if mode is ReleaseMode.OVERRIDE else ''}"
              f" ({printable(done.detail)})")
        return ExitCode.OK
    if done.outcome == "failed":
        print(f"postwacht quarantine {action}: {name}: not {action.status}: "
              f"{printable(done.detail)}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"{name}: {action} requested (request {done.request_id}); the daemon on "
          f"{printable(record.mta)} has not carried it out within {args.wait:g} s. "
          f"`postwacht quarantine show '#{record.record_id}'` tells the outcome.")
    return ExitCode.PENDING


def _record_json(record: QuarantineRecord, records: list[QuarantineRecord]) -> dict[str, Any]:
    request = record.request
    return {
        "record": record.record_id, "mta": record.mta, "queue_id": record.queue_id,
        "held_at": record.held_at.isoformat(), "status": str(record.status),
        "sender": record.sender, "recipients": [r.address for r in record.recipients],
        "domains": list(record.domains), "rule": str(record.rule), "reason": record.reason,
        "route": record.route, "needs_override": record.needs_force,
        "request": None if request is None else {
            "action": str(request.action), "mode": str(request.mode), "actor": request.actor,
            "reason": request.reason, "requested_at": request.requested_at.isoformat(),
            "outcome": request.outcome, "detail": request.detail,
            "needs_approval": request.needs_approval, "approved_by": request.approved_by},
        "detected": record.detected,
        "note": note(record, _same_queue_id(record, records)),
    }


def _same_queue_id(record: QuarantineRecord,
                   records: list[QuarantineRecord]) -> list[QuarantineRecord]:
    return [r for r in records if r.queue_id == record.queue_id and r.mta == record.mta
            and r.record_id != record.record_id and r.status in TO_REVIEW]


def _print_list(records: list[QuarantineRecord]) -> None:
    if not records:
        print("no held messages")
        return
    now = dt.datetime.now(dt.UTC)
    for r in records:
        age = (now - r.held_at).total_seconds() / 3600
        recipients = ", ".join(printable(v.address) for v in r.recipients)
        print(f"#{r.record_id}  {printable(r.queue_id)} on {printable(r.mta)}  {r.status}  "
              f"age {age:.1f}h  from {printable(r.sender) or '<>'}  to {recipients}")
        print(f"    rule: {r.rule}  reason: {printable(r.reason)}")
        if text := note(r, _same_queue_id(r, records)):
            print(f"    note: {printable(text)}")


def _print_record(record: QuarantineRecord) -> None:
    print(f"record:  #{record.record_id}, {printable(record.queue_id)} on "
          f"{printable(record.mta)} ({record.status})")
    print(f"held:    {record.held_at.isoformat()}")
    print(f"rule:    {record.rule}\nreason:  {printable(record.reason)}")
    print(f"sender:  {printable(record.sender) or '<>'}")
    if record.client:
        print(f"client:  {printable(record.client)}")
    if record.route:
        print(f"route:   {printable(record.route)} (release --route sends it there)")
    if record.detected:
        print(f"found:   sensitive by detector {printable(record.detected)} (a release needs "
              "a second person)")
    print(f"policy:  {printable(record.policy[:12])}")
    for r in record.recipients:
        print(f"  {printable(r.address)}: {r.action.value} ({r.rule}) {printable(r.reason)}")
    if record.request is not None:
        q = record.request
        print(f"request: {q.action} ({q.mode}) by {printable(q.actor)} at "
              f"{q.requested_at:%Y-%m-%d %H:%M:%S} UTC: {printable(q.reason)!r}; "
              f"{q.outcome or 'pending'} {printable(q.detail)}")
        if q.needs_approval:
            print(f"four eyes: {printable(q.needs_approval)}; " + (
                f"approved by {printable(q.approved_by)}" if q.approved_by else
                "waiting for an approver" if not q.outcome else "not approved"))
    if text := note(record):
        print(f"note:    {printable(text)}")
