"""The audit trail's chain: each entry carries the hash of the one before, so an edited,
deleted or reordered entry breaks it where it happened.

The hash covers every field of an entry and the previous hash, in one canonical JSON
form that both backends produce alike. The newest seq and hash are also kept apart from
the entries (the head), so that removing the newest entries is seen too. A chain proves
that nothing changed since each entry was written by someone who could not also rewrite
every later hash: for that, export it (`postwacht audit export`) to a SIEM, whose copy
the database's owner cannot change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

from postwacht.records.store import AuditEntry

GENESIS = "0" * 64
"""The `prev` of the first entry."""


def entry_hash(seq: int, at: dt.datetime, actor: str, action: str, mta: str, queue_id: str,
               record_id: int, rule: str, domains: Sequence[str], reason: str,
               override: bool, detail: str, prev: str) -> str:
    canonical = json.dumps(
        [seq, stamp(at), actor, action, mta, queue_id, record_id, rule, list(domains),
         reason, override, detail, prev],
        ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def stamp(at: dt.datetime) -> str:
    """The one text form of an audit time (UTC, microseconds), in the hash and the store."""
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def hash_of(entry: AuditEntry) -> str:
    return entry_hash(entry.seq, entry.at, entry.actor, entry.action.value, entry.mta,
                      entry.queue_id, entry.record_id, entry.rule, entry.domains,
                      entry.reason, entry.override, entry.detail, entry.prev)


def verify(entries: Sequence[AuditEntry], head: tuple[int, str]) -> list[str]:
    """Every break in the chain, each naming the entry (empty: the trail is intact).
    `entries` must be the whole trail in seq order."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    for entry in entries:
        where = f"entry {entry.seq} ({stamp(entry.at)} {entry.action.value})"
        if entry.seq != expected_seq:
            problems.append(f"entry {expected_seq}"
                            + (f" to {entry.seq - 1}" if entry.seq - 1 > expected_seq else "")
                            + f" missing: the trail jumps to {where}")
        if entry.prev != prev:
            problems.append(f"{where}: does not follow the entry before it (deleted, "
                            "reordered or edited entries before it)")
        if hash_of(entry) != entry.hash:
            problems.append(f"{where}: edited after it was written (its hash does not "
                            "match its content)")
        prev = entry.hash
        expected_seq = entry.seq + 1
    head_seq, head_hash = head
    last_seq = entries[-1].seq if entries else 0
    if head_seq != last_seq or (entries and head_hash != prev):
        problems.append(f"the newest entry is {last_seq} but the trail's head says "
                        f"{head_seq}: entries after {last_seq} were deleted, or the head "
                        "was changed")
    return problems
