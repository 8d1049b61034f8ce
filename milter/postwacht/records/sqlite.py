"""The embedded records store: one SQLite file in the state directory, for one MTA.

The SQL is `records.sql`'s, shared with PostgreSQL; this module opens the file, guards
it and runs each transaction. Written from many milter threads through one connection
and one lock; a review command in another process writes the same file, and every
transaction that changes it starts with BEGIN IMMEDIATE, so writers take turns and each
finds the audit head and a record's status as the one before it left them.

The store refuses to work once its file was deleted, replaced or damaged while open
(`RecordsError`, and the milter tempfails instead of holding unrecorded) until the daemon
is restarted on a good file. The file holds addresses: it is created 0640 in a 0750
directory whatever the umask, and looser modes are tightened. Files of schema 1 and 2
(before records named their MTA) are migrated in place, in one transaction.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postwacht import defaults
from postwacht.core.text import QUEUE_ID_MAX, printable
from postwacht.records.audit import stamp
from postwacht.records.sql import (
    ACTOR_MAX,
    CLIENT_MAX,
    REASON_MAX,
    SCHEMA_VERSION,
    SENDER_MAX,
    Cursor,
    Dialect,
    SqlRecords,
    T,
    Tx,
    parse_time,
)
from postwacht.records.store import MIGRATED_KEY, AuditAction, RecordsError

log = logging.getLogger("postwacht.records")

DB_NAME = defaults.RECORDS_FILE
DIRECTORY_MODE = 0o750
FILE_MODE = 0o640
QUICK_CHECK_INTERVAL = 300.0
"""Seconds between integrity checks of the open file (also run at open)."""
BUSY_TIMEOUT = 5.0
"""Seconds to wait for another process's write to finish."""
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_MAGIC = b"SQLite format 3\x00"
SQLITE = Dialect(
    placeholder="?",
    identity="INTEGER PRIMARY KEY AUTOINCREMENT",
    lock_head="",  # BEGIN IMMEDIATE has locked the whole file for writing
    tables="SELECT name FROM sqlite_master WHERE type = 'table'",
)
_CARRIED = {"release": AuditAction.RELEASED, "delete": AuditAction.DELETED}
"""Review actions of schemas 1 and 2, as audit actions."""


class SqliteRecords(SqlRecords):
    """The `RecordStore` in one SQLite file under the state directory; thread-safe.

    `create=False` (review commands) opens an existing store only: a missing file is an
    error, never silently replaced by an empty one. `mta`: the name records held here
    carry (default: this host's name).
    """

    def __init__(self, directory: str | Path, *, create: bool = True,
                 check_interval: float = QUICK_CHECK_INTERVAL, mta: str | None = None) -> None:
        super().__init__(SQLITE, socket.gethostname() if mta is None else mta)
        self.path = Path(directory) / DB_NAME
        self.where = str(self.path)
        self._lock = threading.Lock()
        self._lost: str | None = None
        self._check_interval = check_interval
        self._checked = time.monotonic()
        self._fd: int | None = None
        self._opening = True
        self._user_version = 0
        if not create and not self.path.exists():
            raise RecordsError(f"no records store at {self.path} (has the daemon run with "
                               "this --state?)")
        try:
            private_directory(Path(directory), create)
            if create and not self.path.exists():  # 0640 from the start, whatever the umask
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE))
            self._db = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True,
                                       check_same_thread=False, timeout=BUSY_TIMEOUT,
                                       isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise RecordsError(f"cannot open the records store {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._quick_check()
            self._run("prepare the records schema", self._prepare, write=True)
            # Kept open for the life of the store, to compare with what the path names and
            # to read the header: closing any descriptor of the file would drop SQLite's
            # POSIX locks on it, so this one is closed only after the connection.
            self._fd = os.open(self.path, os.O_RDONLY)
            # Only the daemon, which made the files, tightens their modes: a review command
            # or the root release helper never changes a mode through a path that the
            # daemon's user could have replaced with a link.
            for path in (self.path, *_companions(self.path)) if create else ():
                _private_file(path)
        except (OSError, sqlite3.Error, RecordsError) as exc:
            self.close()
            if isinstance(exc, RecordsError):
                raise
            raise RecordsError(f"cannot open the records store {self.path}: {exc}") from exc
        self._opening = False

    # The schema: PRAGMA user_version kept in step with the schema_version table.

    def _stored_version(self, tx: Tx) -> int:
        row = tx.row("PRAGMA user_version")
        user_version = int(row[0]) if row else 0
        self._user_version = user_version
        return max(user_version, super()._stored_version(tx))

    def _legacy_version(self, tx: Tx) -> int:
        return 2 if self._user_version == 2 else 1

    def _schema_written(self, tx: Tx) -> None:
        tx.run(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _migrate(self, tx: Tx, version: int) -> None:
        """Schema 1 or 2 to the current one, in the caller's transaction: every row is
        carried over, or nothing changes. Old holds get this store's MTA name and a key
        of their own; old review actions become the first entries of the chained trail."""
        old_id = "rowid" if version == 1 else "id"
        client = "''" if version == 1 else "client"
        holds = tx.rows(f"SELECT {old_id}, queue_id, held_at, sender, recipients, rule, "  # noqa: S608
                        f"reason, policy, status, {client} FROM quarantine "
                        f"ORDER BY held_at, {old_id}")
        tables = {str(r[0]) for r in tx.rows(SQLITE.tables)}
        actions = tx.rows("SELECT at, actor, action, queue_id, reason FROM audit "
                          "ORDER BY id") if "audit" in tables else []
        attempts = tx.rows("SELECT at, sender, client, domain FROM retired_attempts "
                           "ORDER BY rowid") if "retired_attempts" in tables else []
        for table in ("quarantine", "audit", "retired_attempts"):
            tx.run(f"DROP TABLE IF EXISTS {table}")
        self._create_schema(tx)
        domains: dict[int, list[str]] = {}
        for n, queue_id, held_at, sender, recipients, rule, reason, policy, status, came \
                in holds:
            tx.run("INSERT INTO quarantine (id, mta, queue_id, hold_key, held_at, sender, "
                   "recipients, rule, reason, policy, client, status) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (n, self.mta, printable(str(queue_id), QUEUE_ID_MAX), f"{MIGRATED_KEY}{n}",
                    _restamped(held_at, f"record {n}"), printable(str(sender), SENDER_MAX),
                    recipients, rule, printable(str(reason), REASON_MAX), policy,
                    printable(str(came), CLIENT_MAX), status))
            domains[n] = _domains(recipients)
        for at, sender, came, domain in attempts:
            tx.run("INSERT INTO retired_attempts (at, sender, client, domain) "
                   "VALUES (?, ?, ?, ?)", (_restamped(at, "a retired-domain attempt"),
                                           sender, came, domain))
        tx.lock_head()
        for at, actor, action, queue_id, reason in actions:
            when = parse_time(_restamped(at, "an audit line"))
            # The record it acted on: the newest hold of that queue id before it.
            mine = [h for h in holds if h[1] == queue_id and parse_time(
                _restamped(h[2], "a record")) <= when]
            record = mine[-1] if mine else None
            kind = _CARRIED.get(str(action), AuditAction.MIGRATED)
            detail = f"carried over from schema {version}" + (
                f" (action {printable(str(action), 32)})" if kind is AuditAction.MIGRATED
                else "")
            self._append(tx, when, printable(str(actor), ACTOR_MAX), kind, mta=self.mta,
                         queue_id=printable(str(queue_id), QUEUE_ID_MAX),
                         record_id=int(record[0]) if record else 0,
                         rule=str(record[5]) if record else "",
                         domains=domains[int(record[0])] if record else (),
                         reason=str(reason), detail=detail)
        log.info("records store %s: migrated from schema %d to %d (%d records, %d audit "
                 "lines)", self.path, version, SCHEMA_VERSION, len(holds), len(actions))

    # Guarding the file.

    def _quick_check(self) -> None:
        self._db.execute("PRAGMA shrink_memory")  # read the file, not this connection's cache
        result = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        self._checked = time.monotonic()
        if result != ["ok"]:
            raise RecordsError(f"{self.path} is damaged: {'; '.join(result[:3])}")

    def claim_mta(self) -> None:
        """One SQLite file serves one MTA: its state directory is that daemon's own."""

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

    def _execute(self, what: str, work: Callable[[Cursor], T], write: bool) -> T:
        with self._lock:
            try:
                if not self._opening:
                    self._ensure_intact()
                cursor = self._db.cursor()
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = work(cursor)
                    cursor.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT:
                    raise self._lose(f"{self.path}: {exc}") from exc
                raise RecordsError(f"cannot {what} in {self.path}: {exc}") from exc
            return result


def _restamped(text: Any, what: str) -> str:
    """An old store's time in the one form of schema 3."""
    try:
        return stamp(parse_time(str(text)))
    except ValueError:
        raise RecordsError(f"cannot migrate the records store: {what} has the time "
                           f"{printable(str(text), 64)!r}") from None


def _domains(recipients: Any) -> list[str]:
    try:
        seen: dict[str, None] = {}
        for r in json.loads(str(recipients)):
            for d in r["domains"]:
                seen.setdefault(str(d), None)
        return list(seen)
    except (ValueError, KeyError, TypeError):
        return []


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _companions(path: Path) -> list[Path]:
    return [p for p in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
            if p.exists()]


def private_directory(directory: Path, create: bool) -> None:
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
