"""Review of held mail: Postfix's hold queue joined with Postwacht's records.

Postfix holds the message (`postqueue -j`, `postcat`, `postsuper -H`/`-d`); Postwacht
holds the reason. A held message without a record, and a record whose message is no
longer held, are both shown, marked, so nothing held goes unseen.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from dataclasses import dataclass
from typing import Any

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
    record: QuarantineRecord | None
    in_hold_queue: bool

    @property
    def note(self) -> str:
        if self.record is None:
            return "held by Postfix, no Postwacht record"
        if not self.in_hold_queue:
            return "record only: the message is no longer in the hold queue"
        return ""


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
        result = self._run("postcat", *flags, "-q", queue_id)
        if result.returncode != 0:
            raise ReviewError(f"postcat: {result.stderr.strip() or 'no such message'}")
        return result.stdout

    def postsuper(self, flag: str, queue_id: str) -> None:
        """Run `postsuper FLAG ID hold` on a message that must be in the hold queue."""
        if not any(e["queue_id"] == queue_id for e in self.hold_queue()):
            raise ReviewError(f"{queue_id} is not in the hold queue")
        result = self._run("postsuper", flag, queue_id, "hold")
        if result.returncode != 0 or any(e["queue_id"] == queue_id for e in self.hold_queue()):
            raise ReviewError(f"postsuper {flag} {queue_id} failed: {result.stderr.strip()}")

    def deliver_now(self, queue_id: str) -> None:
        """A released message waits in the deferred queue; ask for delivery now."""
        self._run("postqueue", "-i", queue_id)


def held_messages(store: RecordStore, postfix: Postfix) -> list[HeldMessage]:
    records = {r.queue_id: r for r in store.quarantine_records("held")}
    out: list[HeldMessage] = []
    for entry in postfix.hold_queue():
        queue_id = entry["queue_id"]
        arrival = entry.get("arrival_time")
        out.append(HeldMessage(
            queue_id,
            dt.datetime.fromtimestamp(arrival, dt.UTC) if arrival else None,
            entry.get("sender", ""),
            tuple(r["address"] for r in entry.get("recipients", [])),
            records.pop(queue_id, None),
            True,
        ))
    for record in records.values():
        out.append(HeldMessage(
            record.queue_id, record.held_at, record.sender,
            tuple(r.address for r in record.recipients), record, False,
        ))
    return out


def release(
    store: RecordStore, postfix: Postfix, queue_id: str, actor: str, reason: str, force: bool
) -> None:
    record = store.quarantine_record(queue_id)
    retired = [r for r in (record.recipients if record else ()) if r.rule is Rule.RETIRED]
    if retired and not force:
        domains = ", ".join(sorted({r.matched or r.domains[0] for r in retired}))
        raise ReviewError(
            f"{queue_id} is addressed to retired domain {domains}: whoever holds it now "
            "would receive it; add --force to release it anyway"
        )
    postfix.postsuper("-H", queue_id)
    store.resolve(queue_id, Review.RELEASE, actor, reason)
    postfix.deliver_now(queue_id)


def delete(store: RecordStore, postfix: Postfix, queue_id: str, actor: str, reason: str) -> None:
    postfix.postsuper("-d", queue_id)
    store.resolve(queue_id, Review.DELETE, actor, reason)
