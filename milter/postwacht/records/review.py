"""Review of held mail: Postfix's hold queue joined with Postwacht's records.

Postfix holds the message (`postqueue -j`, `postcat`, `postsuper -H`/`-d`); Postwacht
holds the reason. A held message without a record, and a record whose message is no
longer held, are both shown, marked, so nothing held goes unseen.

Records are evidence, not truth: a queue id can carry several (Postfix reuses short ids;
anyone who reaches the milter port can claim one), so review shows them all and acts on
the strictest, and a held message without any record needs --force to be released. A
queue id is checked for Postfix's shape before any Postfix command sees it.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from postwacht.core.text import is_queue_id, printable
from postwacht.core.vocabulary import Rule
from postwacht.records.store import QuarantineRecord, RecordStore, Review


class ReviewError(Exception):
    """A review action that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class HeldMessage:
    queue_id: str
    arrival: dt.datetime | None
    sender: str
    recipients: tuple[str, ...]
    records: tuple[QuarantineRecord, ...]
    """Every held record under this queue id: more than one means a reused or a claimed
    queue id, and review acts on the strictest."""
    in_hold_queue: bool

    @property
    def record(self) -> QuarantineRecord | None:
        return strictest(self.records)

    @property
    def note(self) -> str:
        if not self.records:
            return "held by Postfix, no Postwacht record (release needs --force)"
        if not self.in_hold_queue:
            return "record only: the message is no longer in the hold queue"
        return conflict(self.records)


def strictest(records: Sequence[QuarantineRecord]) -> QuarantineRecord | None:
    """The record review must act on: one that needs --force if any does."""
    forced = [r for r in records if r.needs_force]
    chosen = forced or list(records)
    return chosen[0] if chosen else None


def conflict(records: Sequence[QuarantineRecord]) -> str:
    """A note when several records claim one queue id ("" when there is one)."""
    if len(records) < 2:
        return ""
    rules = ", ".join(sorted({str(r.rule) for r in records}))
    return (f"{len(records)} records claim this queue id (rules: {rules}): a reused or "
            "forged queue id; review acts on the strictest")


def _queue_id(queue_id: str) -> str:
    """Checked before any Postfix command sees it: never an option, never `ALL` or `-`."""
    if not is_queue_id(queue_id):
        raise ReviewError(f"{printable(queue_id, 64)!r} is not a Postfix queue id")
    return queue_id


class Postfix:
    """The Postfix commands review needs, for one configuration directory."""

    def __init__(self, config_dir: str | None = None) -> None:
        self._config = ["-c", config_dir] if config_dir else []

    def _run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [command, *self._config, *args], capture_output=True, text=True,
                timeout=120, check=False,
            )
        except OSError as exc:
            raise ReviewError(f"cannot run {command}: {exc.strerror}") from None

    def hold_queue(self) -> list[dict[str, Any]]:
        result = self._run("postqueue", "-j")
        if result.returncode != 0:
            raise ReviewError(f"postqueue -j failed: {result.stderr.strip()}")
        entries = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return [e for e in entries if e.get("queue_name") == "hold"]

    def show(self, queue_id: str, body: bool) -> str:
        flags = ["-e", "-h"] + (["-b"] if body else [])
        result = self._run("postcat", *flags, "-q", "--", _queue_id(queue_id))
        if result.returncode != 0:
            raise ReviewError(f"postcat: {result.stderr.strip() or 'no such message'}")
        return result.stdout

    def postsuper(self, flag: str, queue_id: str) -> None:
        """Run `postsuper FLAG ID hold` on a message that must be in the hold queue."""
        self.ensure_held(queue_id)
        result = self._run("postsuper", flag, queue_id, "hold")
        if result.returncode != 0 or any(e["queue_id"] == queue_id for e in self.hold_queue()):
            raise ReviewError(f"postsuper {flag} {queue_id} failed: {result.stderr.strip()}")

    def ensure_held(self, queue_id: str) -> None:
        _queue_id(queue_id)
        if not any(e["queue_id"] == queue_id for e in self.hold_queue()):
            raise ReviewError(f"{queue_id} is not in the hold queue")

    def deliver_now(self, queue_id: str) -> None:
        """A released message waits in the deferred queue; ask for delivery now."""
        self._run("postqueue", "-i", _queue_id(queue_id))


def held_messages(store: RecordStore, postfix: Postfix) -> list[HeldMessage]:
    records: dict[str, list[QuarantineRecord]] = {}
    for record in store.quarantine_records("held"):
        records.setdefault(record.queue_id, []).append(record)
    out: list[HeldMessage] = []
    for entry in postfix.hold_queue():
        queue_id = entry["queue_id"]
        arrival = entry.get("arrival_time")
        out.append(HeldMessage(
            queue_id,
            dt.datetime.fromtimestamp(arrival, dt.UTC) if arrival else None,
            entry.get("sender", ""),
            tuple(r["address"] for r in entry.get("recipients", [])),
            tuple(records.pop(queue_id, ())),
            True,
        ))
    for queue_id, mine in records.items():
        first = mine[0]
        out.append(HeldMessage(
            queue_id, first.held_at, first.sender,
            tuple(r.address for r in first.recipients), tuple(mine), False,
        ))
    return out


def release(
    store: RecordStore, postfix: Postfix, queue_id: str, actor: str, reason: str, force: bool
) -> None:
    """Release a held message. Without --force only when no record of it (a message held
    without a record is the strictest case) names a retired domain."""
    postfix.ensure_held(queue_id)
    records = [r for r in store.records_of(queue_id) if r.status == "held"]
    if not force:
        _check_release(queue_id, records)
    postfix.postsuper("-H", queue_id)
    store.resolve(queue_id, Review.RELEASE, actor, reason)
    postfix.deliver_now(queue_id)


def _check_release(queue_id: str, records: Sequence[QuarantineRecord]) -> None:
    if not records:
        raise ReviewError(
            f"{queue_id} has no Postwacht record: why it is held is unknown, and it may be "
            "addressed to a retired domain; check it with `show`, then add --force to "
            "release it anyway")
    unreadable = [v for r in records for v in r.recipients if v.rule is Rule.BAD_ADDRESS]
    if unreadable and not any(v.rule is Rule.RETIRED for r in records for v in r.recipients):
        raise ReviewError(
            f"{queue_id} is addressed to an address the filter cannot read, which Postfix may "
            "route to another domain (a retired one, say); released mail is not checked "
            "again; add --force to release it anyway")
    retired = [v for r in records for v in r.recipients if v.rule is Rule.RETIRED]
    if retired or any(r.needs_force for r in records):
        domains = ", ".join(sorted({v.matched or v.domains[0] for v in retired
                                    if v.matched or v.domains})) or "(unnamed)"
        note = conflict(records)
        raise ReviewError(
            f"{queue_id} is addressed to retired domain {domains}: whoever holds it now "
            "would receive it; add --force to release it anyway"
            + (f" ({note})" if note else ""))


def delete(store: RecordStore, postfix: Postfix, queue_id: str, actor: str, reason: str) -> None:
    postfix.postsuper("-d", queue_id)
    store.resolve(queue_id, Review.DELETE, actor, reason)
