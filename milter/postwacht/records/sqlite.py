"""The embedded records store: one SQLite file in the state directory.

Postfix keeps the held message; Postfix ignores a quarantine reason, so the reason, the
rule and the policy that decided live here, under the queue id. Written from many milter
threads through one lock.

A record is never replaced: Postfix reuses short queue ids, and anyone who can reach the
milter port can claim any queue id, so every hold is a row of its own and review reads
all rows of a queue id. The store refuses to work once its file was deleted, replaced or
damaged while open (`RecordsError`, and the milter tempfails instead of holding
unrecorded) until the daemon is restarted on a good file. The file holds addresses: it is
created 0640 in a 0750 directory whatever the umask, and looser modes are tightened.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from postwacht import defaults
from postwacht.core.decide import RecipientVerdict
from postwacht.core.text import printable
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.store import (
    AuditRecord,
    QuarantineRecord,
    RecordsError,
    RetiredSender,
    Review,
)

log = logging.getLogger("postwacht.records")

DB_NAME = defaults.RECORDS_FILE
SCHEMA_VERSION = 2
"""1 (user_version 0): one quarantine row per queue id, replaced on reuse. 2: one row per
hold, and the client each came from."""
DIRECTORY_MODE = 0o750
FILE_MODE = 0o640
QUICK_CHECK_INTERVAL = 300.0
"""Seconds between integrity checks of the open file (also run at open)."""
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_MAGIC = b"SQLite format 3\x00"
# Bounds for text from outside: the sender and client of an attempt, a reviewer's reason.
SENDER_MAX = 320
CLIENT_MAX = 300
REASON_MAX = 1000

_QUARANTINE_COLUMNS = """(
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id   TEXT NOT NULL,
    held_at    TEXT NOT NULL,
    sender     TEXT NOT NULL,
    recipients TEXT NOT NULL,
    rule       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    policy     TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'held',
    client     TEXT NOT NULL DEFAULT ''
)"""
"""Schema 2: every hold its own row; the same columns for a new file and a migrated one."""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS quarantine {_QUARANTINE_COLUMNS};
CREATE INDEX IF NOT EXISTS quarantine_queue_id ON quarantine (queue_id);
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

_COPY_VERSION_1 = """
INSERT INTO quarantine (queue_id, held_at, sender, recipients, rule, reason, policy, status)
    SELECT queue_id, held_at, sender, recipients, rule, reason, policy, status
    FROM quarantine_v1 ORDER BY held_at, queue_id;
DROP TABLE quarantine_v1;
"""
_FROM_VERSION_1 = f"""
ALTER TABLE quarantine RENAME TO quarantine_v1;
CREATE TABLE quarantine {_QUARANTINE_COLUMNS};
{_COPY_VERSION_1}"""

class SqliteRecords:
    """The `RecordStore` in one SQLite file under the state directory; thread-safe.

    `create=False` (review commands) opens an existing store only: a missing file is an
    error, never silently replaced by an empty one.
    """

    def __init__(self, directory: str | Path, *, create: bool = True,
                 check_interval: float = QUICK_CHECK_INTERVAL) -> None:
        self.path = Path(directory) / DB_NAME
        self._lock = threading.Lock()
        self._lost: str | None = None
        self._check_interval = check_interval
        self._checked = time.monotonic()
        self._fd: int | None = None
        if not create and not self.path.exists():
            raise RecordsError(f"no records store at {self.path} (has the daemon run with "
                               "this --state?)")
        try:
            _private_directory(Path(directory), create)
            if create and not self.path.exists():  # 0640 from the start, whatever the umask
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE))
            self._db = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True,
                                       check_same_thread=False, timeout=5)
        except (OSError, sqlite3.Error) as exc:
            raise RecordsError(f"cannot open the records store {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._quick_check()
            self._upgrade()
            # Kept open for the life of the store, to compare with what the path names and
            # to read the header: closing any descriptor of the file would drop SQLite's
            # POSIX locks on it, so this one is closed only after the connection.
            self._fd = os.open(self.path, os.O_RDONLY)
            for path in (self.path, *_companions(self.path)):
                _private_file(path)
        except (OSError, sqlite3.Error, RecordsError) as exc:
            self.close()
            if isinstance(exc, RecordsError):
                raise
            raise RecordsError(f"cannot open the records store {self.path}: {exc}") from exc

    def _upgrade(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RecordsError(f"{self.path} has schema {version}, newer than this "
                               f"Postwacht's {SCHEMA_VERSION}: upgrade Postwacht")
        with self._db:
            old = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'"
            ).fetchone()
            if old and version < SCHEMA_VERSION:
                # One transaction: every row is copied, or nothing changes.
                self._db.execute("BEGIN IMMEDIATE")
                for statement in _FROM_VERSION_1.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                log.info("records store %s: migrated to schema %d", self.path, SCHEMA_VERSION)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _quick_check(self) -> None:
        self._db.execute("PRAGMA shrink_memory")  # read the file, not this connection's cache
        result = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        self._checked = time.monotonic()
        if result != ["ok"]:
            raise RecordsError(f"{self.path} is damaged: {'; '.join(result[:3])}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _lose(self, why: str) -> RecordsError:
        """From now on every operation fails: nothing more is held on a store that lost
        records, or that someone else put in its place."""
        if self._lost is None:
            self._lost = why
            log.error("records store lost: %s; holds tempfail until the daemon is restarted "
                      "on a good records file", why)
        return RecordsError(f"the records store is unusable: {self._lost}")

    def _ensure_intact(self) -> None:
        if self._lost is not None:
            raise self._lose(self._lost)
        if self._fd is None:
            raise RecordsError(f"the records store {self.path} is closed")
        try:
            named = _identity(os.stat(self.path))
        except OSError as exc:
            raise self._lose(f"{self.path} is gone ({exc.strerror})") from None
        magic = os.pread(self._fd, len(_MAGIC), 0)
        if named != _identity(os.fstat(self._fd)):
            raise self._lose(f"{self.path} was replaced by another file")
        if magic != _MAGIC:
            raise self._lose(f"{self.path} was overwritten (no SQLite header)")
        if time.monotonic() - self._checked >= self._check_interval:
            try:
                self._quick_check()
            except RecordsError as exc:
                raise self._lose(str(exc)) from None

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._ensure_intact()
                with self._db:
                    yield self._db
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT:
                    raise self._lose(f"{self.path}: {exc}") from exc
                raise RecordsError(f"cannot {what} in {self.path}: {exc}") from exc

    def record_quarantine(
        self,
        queue_id: str,
        sender: str,
        recipients: Sequence[RecipientVerdict],
        rule: Rule,
        reason: str,
        policy: str,
        client: str = "",
    ) -> None:
        """Add the record before the message is held; raises RecordsError if it cannot.

        Text from outside (addresses, the client) is stored escaped and bounded.
        """
        rows = [
            {"address": printable(r.address, SENDER_MAX),
             "domains": [printable(d, SENDER_MAX) for d in r.domains],
             "action": r.action.value, "rule": r.rule.value,
             "reason": printable(r.reason, REASON_MAX),
             "matched": printable(r.matched, SENDER_MAX) if r.matched else r.matched}
            for r in recipients
        ]
        with self._transaction("write the quarantine record") as db:
            db.execute(
                "INSERT INTO quarantine (queue_id, held_at, sender, recipients, rule, reason, "
                "policy, status, client) VALUES (?, ?, ?, ?, ?, ?, ?, 'held', ?)",
                (printable(queue_id, 64), _now(), printable(sender, SENDER_MAX),
                 json.dumps(rows), rule.value, printable(reason, REASON_MAX),
                 printable(policy, 128), printable(client, CLIENT_MAX)),
            )

    def quarantine_records(self, status: str | None = "held") -> list[QuarantineRecord]:
        with self._transaction("read quarantine records") as db:
            rows = db.execute(
                "SELECT id, queue_id, held_at, sender, recipients, rule, reason, policy, "
                "status, client FROM quarantine WHERE ? IS NULL OR status = ? "
                "ORDER BY held_at, id", (status, status)).fetchall()
        return [_record(row) for row in rows]

    def records_of(self, queue_id: str) -> list[QuarantineRecord]:
        """Every record under `queue_id`, oldest first, whatever its status."""
        with self._transaction("read quarantine records") as db:
            rows = db.execute(
                "SELECT id, queue_id, held_at, sender, recipients, rule, reason, policy, "
                "status, client FROM quarantine WHERE queue_id = ? ORDER BY id",
                (queue_id,)).fetchall()
        return [_record(row) for row in rows]

    def resolve(self, queue_id: str, review: Review, actor: str, reason: str) -> None:
        """Record a review action (release, delete) on every held record of the queue id,
        and its audit line, together."""
        with self._transaction("write the audit record") as db:
            db.execute("UPDATE quarantine SET status = ? WHERE queue_id = ? AND status = 'held'",
                       (review.status, queue_id))
            db.execute(
                "INSERT INTO audit (at, actor, action, queue_id, reason) VALUES (?, ?, ?, ?, ?)",
                (_now(), printable(actor, 128), review.value, printable(queue_id, 64),
                 printable(reason, REASON_MAX)),
            )

    def record_retired_attempt(self, sender: str, client: str, domain: str) -> None:
        """One attempt to mail a retired domain: who and from where, never the content."""
        with self._transaction("write a retired-domain attempt") as db:
            db.execute("INSERT INTO retired_attempts (at, sender, client, domain) "
                       "VALUES (?, ?, ?, ?)",
                       (_now(), printable(sender, SENDER_MAX), printable(client, CLIENT_MAX),
                        printable(domain, SENDER_MAX)))

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
        """How many holds Postwacht's records show, and since when the oldest."""
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


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _companions(path: Path) -> list[Path]:
    return [p for p in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
            if p.exists()]


def _private_directory(directory: Path, create: bool) -> None:
    """The state directory: made 0750 whatever the umask; an existing one that others can
    read or anyone but its owner can write is tightened when it is ours, else named."""
    if create and not directory.exists():
        directory.mkdir(mode=DIRECTORY_MODE, parents=True)
        return
    st = directory.stat()
    loose = stat.S_IMODE(st.st_mode) & 0o027
    if not loose:
        return
    if st.st_uid == os.geteuid() and not st.st_mode & stat.S_ISVTX:
        directory.chmod(stat.S_IMODE(st.st_mode) & ~0o027)
        log.warning("state directory %s was mode %o; tightened to %o", directory,
                    stat.S_IMODE(st.st_mode), stat.S_IMODE(st.st_mode) & ~0o027)
    else:
        log.warning("state directory %s is mode %o (not ours to change): other users can "
                    "see or change what is in it", directory, stat.S_IMODE(st.st_mode))


def _private_file(path: Path) -> None:
    """A records file readable by its owner and group only (0640 at most)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & ~FILE_MODE:
        return
    try:
        path.chmod(mode & FILE_MODE)
    except OSError as exc:
        log.warning("records file %s is mode %o and cannot be tightened: %s", path, mode,
                    exc.strerror)
    else:
        log.warning("records file %s was mode %o; tightened to %o", path, mode,
                    mode & FILE_MODE)


def _record(row: tuple[object, ...]) -> QuarantineRecord:
    record_id, queue_id, held_at, sender, recipients, rule, reason, policy, status, client = row
    try:
        verdicts = tuple(
            RecipientVerdict(
                r["address"], tuple(r["domains"]), Action(r["action"]), Rule(r["rule"]),
                r["reason"], r.get("matched"),
            )
            for r in json.loads(str(recipients))
        )
        return QuarantineRecord(
            str(queue_id), dt.datetime.fromisoformat(str(held_at)), str(sender), verdicts,
            Rule(str(rule)), str(reason), str(policy), str(status), int(str(record_id)),
            str(client),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordsError(f"the record of {printable(str(queue_id), 64)} cannot be read: "
                           f"{exc}") from None
