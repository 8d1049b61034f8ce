"""The embedded records store: one SQLite file in the state directory.

Postfix keeps the held message; Postfix ignores a quarantine reason, so the reason, the
rule and the policy that decided live here, keyed by queue id. Written from many milter
threads through one lock.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from postwacht import defaults
from postwacht.core.decide import RecipientVerdict
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.store import (
    AuditRecord,
    QuarantineRecord,
    RecordsError,
    RetiredSender,
    Review,
)

DB_NAME = defaults.RECORDS_FILE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    queue_id   TEXT PRIMARY KEY,
    held_at    TEXT NOT NULL,
    sender     TEXT NOT NULL,
    recipients TEXT NOT NULL,
    rule       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    policy     TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'held'
);
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    reason   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retired_attempts (
    at       TEXT NOT NULL,
    sender   TEXT NOT NULL,
    client   TEXT NOT NULL,
    domain   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS retired_attempts_at ON retired_attempts (at);
"""


class SqliteRecords:
    """The `RecordStore` in one SQLite file under the state directory; thread-safe."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / DB_NAME
        self._lock = threading.Lock()
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RecordsError(f"cannot open the records store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._db:
                    yield self._db
            except sqlite3.Error as exc:
                raise RecordsError(f"cannot {what} in {self.path}: {exc}") from exc

    def record_quarantine(
        self,
        queue_id: str,
        sender: str,
        recipients: Sequence[RecipientVerdict],
        rule: Rule,
        reason: str,
        policy: str,
    ) -> None:
        """Write the record before the message is held; raises RecordsError if it cannot."""
        rows = [
            {"address": r.address, "domains": list(r.domains), "action": r.action.value,
             "rule": r.rule.value, "reason": r.reason, "matched": r.matched}
            for r in recipients
        ]
        with self._transaction("write the quarantine record") as db:
            db.execute(
                "INSERT OR REPLACE INTO quarantine "
                "(queue_id, held_at, sender, recipients, rule, reason, policy, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'held')",
                (queue_id, _now(), sender, json.dumps(rows), rule.value, reason, policy),
            )

    def quarantine_records(self, status: str | None = "held") -> list[QuarantineRecord]:
        query = "SELECT * FROM quarantine"
        args: tuple[str, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._transaction("read quarantine records") as db:
            rows = db.execute(query + " ORDER BY held_at", args).fetchall()
        return [_record(row) for row in rows]

    def quarantine_record(self, queue_id: str) -> QuarantineRecord | None:
        with self._transaction("read a quarantine record") as db:
            row = db.execute("SELECT * FROM quarantine WHERE queue_id = ?", (queue_id,)).fetchone()
        return _record(row) if row else None

    def resolve(self, queue_id: str, review: Review, actor: str, reason: str) -> None:
        """Record a review action (release, delete) and its audit line, together."""
        with self._transaction("write the audit record") as db:
            db.execute("UPDATE quarantine SET status = ? WHERE queue_id = ?",
                       (review.status, queue_id))
            db.execute(
                "INSERT INTO audit (at, actor, action, queue_id, reason) VALUES (?, ?, ?, ?, ?)",
                (_now(), actor, review.value, queue_id, reason),
            )

    def record_retired_attempt(self, sender: str, client: str, domain: str) -> None:
        """One attempt to mail a retired domain: who and from where, never the content."""
        with self._transaction("write a retired-domain attempt") as db:
            db.execute("INSERT INTO retired_attempts (at, sender, client, domain) "
                       "VALUES (?, ?, ?, ?)", (_now(), sender, client, domain))

    def retired_attempts(self, since: dt.datetime) -> list[RetiredSender]:
        """Who still mails retired domains since `since`, most frequent first."""
        with self._transaction("read retired-domain attempts") as db:
            rows = db.execute(
                "SELECT sender, client, domain, COUNT(*), MIN(at), MAX(at) "
                "FROM retired_attempts WHERE at >= ? GROUP BY sender, client, domain "
                "ORDER BY COUNT(*) DESC, MAX(at) DESC",
                (since.isoformat(timespec="seconds"),),
            ).fetchall()
        return [RetiredSender(r[0], r[1], r[2], r[3], dt.datetime.fromisoformat(r[4]),
                              dt.datetime.fromisoformat(r[5])) for r in rows]

    def held_summary(self) -> tuple[int, dt.datetime | None]:
        """How many messages are held by Postwacht's records, and since when the oldest."""
        with self._transaction("read quarantine records") as db:
            count, oldest = db.execute(
                "SELECT COUNT(*), MIN(held_at) FROM quarantine WHERE status = 'held'"
            ).fetchone()
        return int(count), dt.datetime.fromisoformat(oldest) if oldest else None

    def audit(self) -> list[AuditRecord]:
        with self._transaction("read the audit log") as db:
            rows = db.execute("SELECT at, actor, action, queue_id, reason FROM audit "
                              "ORDER BY id").fetchall()
        return [AuditRecord(dt.datetime.fromisoformat(r[0]), *r[1:]) for r in rows]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _record(row: tuple[str, ...]) -> QuarantineRecord:
    queue_id, held_at, sender, recipients, rule, reason, policy, status = row
    try:
        verdicts = tuple(
            RecipientVerdict(
                r["address"], tuple(r["domains"]), Action(r["action"]), Rule(r["rule"]),
                r["reason"], r.get("matched"),
            )
            for r in json.loads(recipients)
        )
        return QuarantineRecord(
            queue_id, dt.datetime.fromisoformat(held_at), sender, verdicts, Rule(rule), reason,
            policy, status,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordsError(f"the record of {queue_id} cannot be read: {exc}") from None
