"""`postwacht correspondents import|count|forget|expire`: the first-recipient guard's
memory of who has been mailed, kept in the records store as keyed hashes.

`import maillog` seeds it from Postfix's mail log, so that a new guard does not hold
mail to everyone the organisation already writes to. Nothing here prints an address
that is not on the command line: the store holds none, and the log's stay in memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import sys
import zlib
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from typing import Any, TextIO

from postwacht.cli.common import ExitCode, load_policy
from postwacht.cli.review import add_store_options, run_with_store
from postwacht.core.policy import Policy
from postwacht.records.correspondents import Correspondents, domain_of, normal_address
from postwacht.records.maillog import MailLog, Tally, lines
from postwacht.records.secret import derive, load_secret, secret_path
from postwacht.records.store import CORRESPONDENTS_MAX, RecordStore

BATCH = CORRESPONDENTS_MAX // 4
"""Deliveries learnt per call of the store (four hashes each)."""
DISTINCT_MAX = 1_000_000
"""Senders and pairs counted for the summary; beyond, it says "at least"."""
STDIN = "-"


def days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a number of days (1 or more)")
    return int(text)


def add_parsers(sub: Any) -> None:
    group = sub.add_parser(
        "correspondents", help="who has been mailed (the first-recipient guard's memory)")
    actions = group.add_subparsers(dest="correspondents", required=True, metavar="ACTION")
    seed = actions.add_parser("import", help="learn who has been mailed from a log")
    sources = seed.add_subparsers(dest="source", required=True, metavar="SOURCE")
    maillog = sources.add_parser(
        "maillog", help="Postfix's mail log: what internal senders delivered outside",
        description="Learns every recipient outside the policy's owned domains that the "
                    "SMTP or LMTP client delivered mail to from a sender in an owned domain. "
                    "Give rotated logs oldest first (mail.log.1 before mail.log); .gz files "
                    "are read too; - reads standard input. Makes the key "
                    "(STATE/postwacht.key) when there is none.")
    maillog.add_argument("files", nargs="+", metavar="FILE")
    maillog.add_argument("--policy", required=True, metavar="POLICY",
                         help="the policy whose owned domains say who is internal")
    count = actions.add_parser("count", help="how many entries the store keeps")
    forget = actions.add_parser(
        "forget", help="unlearn a recipient (mail that went to the wrong address)",
        description="With --from: what that sender's mail taught (the address and its "
                    "domain). Without: what the organisation's mail taught (the address "
                    "and its domain). Other senders' entries stay: name each with --from.")
    forget.add_argument("--to", required=True, metavar="RECIPIENT")
    forget.add_argument("--from", dest="sender", metavar="SENDER")
    expire = actions.add_parser("expire", help="forget entries not used for a while")
    expire.add_argument("--days", required=True, type=days, metavar="N",
                        help="remove entries not used in the last N days")
    for action in (maillog, count, forget, expire):
        add_store_options(action)
    group.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    what = f"correspondents {args.correspondents}"
    if args.correspondents == "import":
        policy = load_policy(args.policy)
        if policy is None:
            return ExitCode.FAILED
        return run_with_store(args, what, lambda store: _import(args, store, policy))
    return run_with_store(args, what, lambda store: _act(args, store))


def _keyed(args: argparse.Namespace, store: RecordStore, *, create: bool) -> Correspondents:
    secret = load_secret(args.state, create=create)
    correspondents = Correspondents(store, derive(secret, "correspondents"),
                                    key_file=secret_path(args.state))
    correspondents.check_key()
    return correspondents


def _act(args: argparse.Namespace, store: RecordStore) -> int:
    match args.correspondents:
        case "count":
            print(f"{store.correspondents_count()} entries (keyed hashes; each delivered "
                  "recipient makes up to four)")
        case "forget":
            gone = _keyed(args, store, create=False).forget(args.sender, args.to)
            print(f"forgot {gone} {'entry' if gone == 1 else 'entries'}")
        case "expire":
            before = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days)
            gone = store.expire_correspondents(before)
            print(f"expired {gone} {'entry' if gone == 1 else 'entries'} not used in "
                  f"{args.days} days")
    return ExitCode.OK


def _import(args: argparse.Namespace, store: RecordStore, policy: Policy) -> int:
    correspondents = _keyed(args, store, create=True)

    def outside(address: str) -> bool:
        domain = domain_of(address)
        return bool(domain) and not policy.owns(domain)

    log = MailLog(lambda sender: policy.owns(domain_of(sender)), outside)
    at = dt.datetime.now(dt.UTC)
    failed = False
    for name in args.files:
        shown = "standard input" if name == STDIN else name
        start = log.tally.lines
        try:
            with _opened(name) as stream:
                summary = _learn(correspondents, log, lines(stream), at, shown)
        except (OSError, EOFError, zlib.error) as exc:
            read = log.tally.lines - start
            print(f"postwacht correspondents import: {shown}: cannot read it"
                  f"{f' (after line {read})' if read else ''}: "
                  f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            failed = True
            continue
        print(summary)
    return ExitCode.FAILED if failed else ExitCode.OK


def _learn(correspondents: Correspondents, log: MailLog, read: Iterator[str],
           at: dt.datetime, shown: str) -> str:
    """Learn what `read` delivered, in batches; the summary of it."""
    before = Tally(log.tally.lines, log.tally.skipped, log.tally.delivered)
    senders: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    batch: list[tuple[str, str]] = []
    for sender, recipient in log.pairs(read):
        batch.append((sender, recipient))
        if len(pairs) < DISTINCT_MAX:  # only counted, and held in memory only
            pairs.add((normal_address(sender), normal_address(recipient)))
            senders.add(normal_address(sender))
        if len(batch) == BATCH:
            correspondents.learn_pairs(batch, at)
            batch.clear()
    correspondents.learn_pairs(batch, at)
    delivered = log.tally.delivered - before.delivered
    skipped = log.tally.skipped - before.skipped
    return (f"learned {_counted(pairs, 'correspondent')} of {_counted(senders, 'sender')} "
            f"from {_some(delivered, 'delivered recipient')} in {shown} "
            f"({_some(skipped, 'line')} skipped)")


def _counted(values: Sized, what: str) -> str:
    counted = _some(len(values), what)
    return f"at least {counted}" if len(values) >= DISTINCT_MAX else counted


def _some(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


@contextmanager
def _opened(name: str) -> Iterator[TextIO]:
    """The log as text, undecodable bytes replaced (never an error); gzip by its name."""
    if name == STDIN:
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        try:
            yield stream
        finally:
            stream.detach()  # standard input stays open for whoever else reads it
        return
    if name.endswith(".gz"):
        with gzip.open(name, "rt", encoding="utf-8", errors="replace") as packed:
            yield packed
        return
    with open(name, encoding="utf-8", errors="replace") as plain:
        yield plain
