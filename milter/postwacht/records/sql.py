"""The records in SQL, written once for every backend.

The schema, every statement and the audit chain live here; a backend (SQLite,
PostgreSQL) adds only its `Dialect` (placeholders, the identity column, how the audit
head is locked) and how it opens, guards and runs one transaction. A state change and
the audit entry that records it are one transaction, and a transaction that appends to
the audit locks the head (the newest seq and hash) before it reads or changes anything
else: entries are chained in the order their changes commit, whichever thread, process
or MTA wrote them, and of two requests on one record exactly one finds it held.

Every time is stored as `audit.stamp` text (UTC, microseconds): one fixed-width form
that sorts as it reads, in both backends. Text from outside (addresses, a client, a
reviewer's name and reason) is stored escaped and bounded (`core.text.printable`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from postwacht.core.decide import RecipientVerdict
from postwacht.core.roles import Permission, Role, allows
from postwacht.core.text import QUEUE_ID_MAX, ROUTE_MAX, printable
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.audit import GENESIS, entry_hash, stamp
from postwacht.records.store import (
    CORRESPONDENTS_MAX,
    OPEN,
    POSTWACHT,
    Attachment,
    AuditAction,
    AuditEntry,
    ConflictError,
    HeldContent,
    Hold,
    Published,
    QuarantineRecord,
    RecordsError,
    ReleaseMode,
    Request,
    RetiredSender,
    Review,
    Session,
    Status,
    User,
)

audit_log = logging.getLogger("postwacht.audit")
T = TypeVar("T")

SCHEMA_VERSION = 5
"""1: one quarantine row per queue id (SQLite only). 2: one row per hold (SQLite only).
3: records keyed by MTA and a key that never repeats, review requests, a chained audit
trail, reviewers; the same in SQLite and PostgreSQL. 4: accounts with roles (reviewers
become users), web sessions, sign-in failures, four-eyes approval of requests, the
detector that found a message sensitive, captured content, daemons' reports, claims.
5: who has been mailed (keyed hashes of correspondents, when each was last seen) and the
fingerprint of the key that hashed them."""
# Bounds for text from outside.
SENDER_MAX = 320
CLIENT_MAX = 300
REASON_MAX = 1000
ACTOR_MAX = 128
NAME_MAX = 255
"""An MTA's name, a policy's, a hold key."""
CAPTURE_CANDIDATES = 1000
"""Records without content read per look, oldest first (the daemon captures a few)."""
TEXT_MAX = 300_000
"""Characters of a held message's text as review may see it."""
SIGN_IN_KEPT = dt.timedelta(days=1)
"""How long failed sign-ins and idle sessions are kept (rate limits look back less)."""
CLAIMS_KEPT = dt.timedelta(days=30)
REVIEWING = tuple(role.value for role in Role if allows(role, Permission.ACT))
"""The roles that may review, as the core ranks them."""

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE quarantine (
        id         {identity},
        mta        TEXT NOT NULL,
        queue_id   TEXT NOT NULL,
        hold_key   TEXT NOT NULL UNIQUE,
        held_at    TEXT NOT NULL,
        sender     TEXT NOT NULL,
        recipients TEXT NOT NULL,
        rule       TEXT NOT NULL,
        reason     TEXT NOT NULL,
        policy     TEXT NOT NULL,
        client     TEXT NOT NULL DEFAULT '',
        route      TEXT,
        status     TEXT NOT NULL,
        closed_at  TEXT
    )""",
    "CREATE INDEX quarantine_mta_queue_id ON quarantine (mta, queue_id)",
    "CREATE INDEX quarantine_status ON quarantine (status)",
    """CREATE TABLE requests (
        id           {identity},
        record_id    BIGINT NOT NULL REFERENCES quarantine (id),
        action       TEXT NOT NULL,
        mode         TEXT NOT NULL,
        actor        TEXT NOT NULL,
        reason       TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        done_at      TEXT,
        outcome      TEXT NOT NULL DEFAULT '',
        detail       TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX requests_record_id ON requests (record_id)",
    "CREATE INDEX requests_outcome ON requests (outcome)",
    """CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        mta       TEXT NOT NULL,
        queue_id  TEXT NOT NULL,
        record_id BIGINT NOT NULL,
        rule      TEXT NOT NULL,
        domains   TEXT NOT NULL,
        reason    TEXT NOT NULL,
        override  INTEGER NOT NULL,
        detail    TEXT NOT NULL,
        prev      TEXT NOT NULL,
        hash      TEXT NOT NULL
    )""",
    "CREATE INDEX audit_at ON audit (at)",
    """CREATE TABLE audit_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TABLE retired_attempts (
        at     TEXT NOT NULL,
        sender TEXT NOT NULL,
        client TEXT NOT NULL,
        domain TEXT NOT NULL
    )""",
    "CREATE INDEX retired_attempts_at ON retired_attempts (at)",
    """CREATE TABLE reviewers (
        name     TEXT PRIMARY KEY,
        added_at TEXT NOT NULL,
        added_by TEXT NOT NULL
    )""",
)
_UPGRADE_4 = (
    "ALTER TABLE quarantine ADD COLUMN detected TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE requests ADD COLUMN needs_approval TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE requests ADD COLUMN approved_by TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE requests ADD COLUMN approved_at TEXT",
    """CREATE TABLE users (
        name       TEXT PRIMARY KEY,
        role       TEXT NOT NULL,
        email      TEXT NOT NULL DEFAULT '',
        password   TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    )""",
    # Reviewers of schema 3 become users who may review, without a web password.
    "INSERT INTO users (name, role, email, password, created_at, created_by) "
    "SELECT name, 'reviewer', '', '', added_at, added_by FROM reviewers",
    "DROP TABLE reviewers",
    """CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        csrf       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        seen_at    TEXT NOT NULL
    )""",
    """CREATE TABLE sign_in_failures (
        at     TEXT NOT NULL,
        name   TEXT NOT NULL,
        client TEXT NOT NULL
    )""",
    "CREATE INDEX sign_in_failures_at ON sign_in_failures (at)",
    """CREATE TABLE content (
        record_id   BIGINT PRIMARY KEY REFERENCES quarantine (id),
        captured_at TEXT NOT NULL,
        headers     TEXT NOT NULL,
        body        TEXT NOT NULL,
        attachments TEXT NOT NULL,
        notes       TEXT NOT NULL
    )""",
    """CREATE TABLE published (
        mta  TEXT NOT NULL,
        kind TEXT NOT NULL,
        at   TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (mta, kind)
    )""",
    """CREATE TABLE claims (
        what TEXT PRIMARY KEY,
        at   TEXT NOT NULL,
        mta  TEXT NOT NULL
    )""",
)
_UPGRADE_5 = (
    # Only keyed hashes (records.correspondents): the store never names a correspondent.
    """CREATE TABLE correspondents (
        hash      TEXT PRIMARY KEY,
        last_seen TEXT NOT NULL
    )""",
    "CREATE INDEX correspondents_last_seen ON correspondents (last_seen)",
    # An attempt whose retired domain was only monitored: that mail left.
    "ALTER TABLE retired_attempts ADD COLUMN monitored INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE correspondents_key (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        fingerprint TEXT NOT NULL
    )""",
)
_UPGRADES = {4: _UPGRADE_4, 5: _UPGRADE_5}
"""The statements that take a store of the schema before to each version."""
TABLES = ("schema_version", "quarantine", "requests", "audit", "audit_head",
          "retired_attempts", "users", "sessions", "sign_in_failures", "content",
          "published", "claims", "correspondents", "correspondents_key")
LEGACY_TABLES = ("reviewers",)
"""Tables of an older schema only."""

_RECORD = (
    "SELECT q.id, q.mta, q.queue_id, q.hold_key, q.held_at, q.sender, q.recipients, q.rule, "
    "q.reason, q.policy, q.status, q.client, q.route, q.closed_at, q.detected, r.id, "
    "r.action, r.mode, r.actor, r.reason, r.requested_at, r.done_at, r.outcome, r.detail, "
    "r.needs_approval, r.approved_by, r.approved_at FROM quarantine q "
)
# Statements are built from these constants only, never from values (S608).
_WITH_NEWEST_REQUEST = (
    _RECORD + "LEFT JOIN requests r ON r.id = "  # noqa: S608
    "(SELECT MAX(n.id) FROM requests n WHERE n.record_id = q.id) "
)
_REQUEST = ("SELECT id, record_id, action, mode, actor, reason, requested_at, done_at, "
            "outcome, detail, needs_approval, approved_by, approved_at FROM requests ")
_USER = "SELECT name, role, email, password, created_at, created_by FROM users "
_AWAITING = "r.outcome = '' AND r.needs_approval <> '' AND r.approved_by = ''"
_AUDIT = ("SELECT seq, at, actor, action, mta, queue_id, record_id, rule, domains, reason, "
          "override, detail, prev, hash FROM audit ")
_DONE = {Review.RELEASE: AuditAction.RELEASED, Review.DELETE: AuditAction.DELETED,
         Review.EXPIRE: AuditAction.EXPIRED}
_ASKED = {Review.RELEASE: AuditAction.RELEASE_REQUESTED,
          Review.DELETE: AuditAction.DELETE_REQUESTED,
          Review.EXPIRE: AuditAction.EXPIRE_REQUESTED}


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL of two backends, and nothing else."""

    placeholder: str
    """How a statement marks a parameter (statements here are written with `?`)."""
    identity: str
    """The column type of a key the database assigns."""
    lock_head: str
    """Appended to the SELECT of the audit head in a transaction that appends to it."""
    tables: str
    """A query for the names of the tables in the store."""


class Cursor(Protocol):
    """What the statements need of a DB-API cursor (sqlite3's and psycopg's both fit)."""

    @property
    def rowcount(self) -> int: ...
    def execute(self, sql: str, params: Sequence[Any], /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class Tx:
    """One transaction: statements written with `?`, and the audit entries it appends
    (logged once it commits)."""

    def __init__(self, cursor: Cursor, dialect: Dialect, where: str) -> None:
        self._cursor = cursor
        self._dialect = dialect
        self._where = where
        self.head: tuple[int, str] | None = None
        self.appended: list[AuditEntry] = []

    def _sql(self, sql: str) -> str:
        return sql if self._dialect.placeholder == "?" else sql.replace(
            "?", self._dialect.placeholder)

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows it changed."""
        self._cursor.execute(self._sql(sql), params)
        return self._cursor.rowcount

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), params)
        return [tuple(row) for row in self._cursor.fetchall()]

    def row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cursor.execute(self._sql(sql), params)
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def lock_head(self) -> tuple[int, str]:
        """Take the audit head for this transaction: first, before any other statement
        of a transaction that appends (one lock order, so no deadlock)."""
        row = self.row("SELECT seq, hash FROM audit_head WHERE id = 1"  # noqa: S608
                       + self._dialect.lock_head)
        if row is None:
            raise RecordsError(f"the audit trail in {self._where} has no head row "
                               "(audit_head, id 1): it was tampered with")
        self.head = (int(row[0]), str(row[1]))
        return self.head


def redact(url: str) -> str:
    """A records URL fit to show: any password in it replaced by ***."""
    url = re.sub(r"(://[^/@]*:)[^/]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _optional_time(text: object) -> dt.datetime | None:
    return None if text is None else parse_time(str(text))


class SqlRecords:
    """`RecordStore` over SQL; a backend subclass supplies `_execute` and `close`."""

    where: str
    """The store as an error message names it (a path, or a redacted URL)."""

    def __init__(self, dialect: Dialect, mta: str) -> None:
        self.mta = printable(mta, NAME_MAX)
        self._dialect = dialect

    # What a backend supplies.

    def _execute(self, what: str, work: Callable[[Cursor], T], write: bool) -> T:
        """Run `work` in one transaction (`write`: one that changes the store), or raise
        RecordsError naming `what` could not be done."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _legacy_version(self, tx: Tx) -> int:
        """The schema of a store that has tables but no schema_version table."""
        raise RecordsError(f"{self.where} has tables but no schema_version: it is not a "
                           "Postwacht records store")

    def _migrate(self, tx: Tx, version: int) -> None:
        raise RecordsError(f"{self.where} has schema {version}, which this Postwacht "
                           f"cannot migrate to {SCHEMA_VERSION}")

    def _schema_written(self, tx: Tx) -> None:
        """Called inside the transaction that created or migrated the schema."""

    # The schema.

    def _run(self, what: str, work: Callable[[Tx], T], *, write: bool = False) -> T:
        done: list[Tx] = []

        def attempt(cursor: Cursor) -> T:
            tx = Tx(cursor, self._dialect, self.where)
            done[:] = [tx]
            return work(tx)

        result = self._execute(what, attempt, write)
        for entry in done[-1].appended if done else ():
            audit_log.info("%s", audit_line(entry))
        return result

    def _stored_version(self, tx: Tx) -> int:
        tables = {str(row[0]) for row in tx.rows(self._dialect.tables)}
        if "schema_version" in tables:
            row = tx.row("SELECT MAX(version) FROM schema_version")
            return int(row[0]) if row and row[0] is not None else 0
        if tables & {*TABLES, *LEGACY_TABLES}:
            return self._legacy_version(tx)
        return 0

    def _prepare(self, tx: Tx) -> None:
        """Create or migrate the schema (inside one transaction), or refuse a newer one."""
        version = self._stored_version(tx)
        if version > SCHEMA_VERSION:
            raise RecordsError(f"{self.where} has schema {version}, newer than this "
                               f"Postwacht's {SCHEMA_VERSION}: upgrade Postwacht")
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            self._create_schema(tx)
        elif version in (3, 4):
            self._upgrade_from(tx, version)
        else:
            self._migrate(tx, version)
        self._schema_written(tx)

    def _create_schema(self, tx: Tx) -> None:
        """Schema 3, then each upgrade: a new store and an upgraded one are the same."""
        for statement in _SCHEMA:
            tx.run(statement.format(identity=self._dialect.identity))
        tx.run("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", (GENESIS,))
        tx.run("INSERT INTO schema_version (version) VALUES (?)", (3,))
        self._upgrade_from(tx, 3)

    def _upgrade_from(self, tx: Tx, version: int) -> None:
        """Schema `version` (3 or later) to the current one, a version at a time, in the
        caller's transaction."""
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _UPGRADES[step]:
                tx.run(statement)
        tx.run("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # The audit trail.

    def _append(self, tx: Tx, at: dt.datetime, actor: str, action: AuditAction, *,
                mta: str, queue_id: str = "", record_id: int = 0, rule: str = "",
                domains: Sequence[str] = (), reason: str = "", override: bool = False,
                detail: str = "") -> None:
        if tx.head is None:
            raise AssertionError("an audit entry appended without the head locked first")
        seq, prev = tx.head[0] + 1, tx.head[1]
        actor, reason = printable(actor, ACTOR_MAX), printable(reason, REASON_MAX)
        detail = printable(detail, REASON_MAX)
        digest = entry_hash(seq, at, actor, action.value, mta, queue_id, record_id, rule,
                            domains, reason, override, detail, prev)
        tx.run("INSERT INTO audit (seq, at, actor, action, mta, queue_id, record_id, rule, "
               "domains, reason, override, detail, prev, hash) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (seq, stamp(at), actor, action.value, mta, queue_id, record_id, rule,
                json.dumps(list(domains)), reason, int(override), detail, prev, digest))
        tx.run("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, digest))
        tx.head = (seq, digest)
        tx.appended.append(AuditEntry(seq, at, actor, action, mta, queue_id, record_id, rule,
                                      tuple(domains), reason, override, detail, prev, digest))

    def _append_on(self, tx: Tx, at: dt.datetime, actor: str, action: AuditAction,
                   record: QuarantineRecord, *, reason: str = "", override: bool = False,
                   detail: str = "") -> None:
        self._append(tx, at, actor, action, mta=record.mta, queue_id=record.queue_id,
                     record_id=record.record_id, rule=record.rule.value,
                     domains=record.domains, reason=reason, override=override, detail=detail)

    def audit_entries(self, since: dt.datetime | None = None) -> list[AuditEntry]:
        def work(tx: Tx) -> list[tuple[Any, ...]]:
            if since is None:
                return tx.rows(_AUDIT + "ORDER BY seq")
            return tx.rows(_AUDIT + "WHERE at >= ? ORDER BY seq", (stamp(since),))

        return [_entry(row) for row in self._run("read the audit trail", work)]

    def audit_head(self) -> tuple[int, str]:
        row = self._run("read the audit trail",
                        lambda tx: tx.row("SELECT seq, hash FROM audit_head WHERE id = 1"))
        if row is None:
            raise RecordsError(f"the audit trail in {self.where} has no head row")
        return int(row[0]), str(row[1])

    # The milter.

    def record_quarantine(self, hold: Hold) -> QuarantineRecord:
        recipients = json.dumps([
            {"address": printable(r.address, SENDER_MAX),
             "domains": [printable(d, SENDER_MAX) for d in r.domains],
             "action": r.action.value, "rule": r.rule.value,
             "reason": printable(r.reason, REASON_MAX),
             "matched": printable(r.matched, SENDER_MAX) if r.matched else r.matched}
            for r in hold.recipients
        ])

        def work(tx: Tx) -> QuarantineRecord:
            tx.lock_head()
            at = now()
            row = tx.row(
                "INSERT INTO quarantine (mta, queue_id, hold_key, held_at, sender, recipients, "
                "rule, reason, policy, client, route, status, detected) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (printable(hold.mta, NAME_MAX), printable(hold.queue_id, QUEUE_ID_MAX),
                 printable(hold.key, NAME_MAX), stamp(at), printable(hold.sender, SENDER_MAX),
                 recipients, hold.rule.value, printable(hold.reason, REASON_MAX),
                 printable(hold.policy, NAME_MAX), printable(hold.client, CLIENT_MAX),
                 None if hold.route is None else printable(hold.route, ROUTE_MAX),
                 Status.HELD.value, printable(hold.detected, NAME_MAX)))
            assert row is not None
            record = self._record_in(tx, int(row[0]))
            self._append_on(tx, at, POSTWACHT, AuditAction.HELD, record, reason=record.reason,
                            detail=f"key {record.key}, policy {record.policy}")
            return record

        return self._run("write the quarantine record", work, write=True)

    def record_retired_attempt(self, sender: str, client: str, domain: str,
                               monitored: bool = False) -> None:
        """One attempt to mail a retired domain: who and from where, never the content."""
        self._run("write a retired-domain attempt", lambda tx: tx.run(
            "INSERT INTO retired_attempts (at, sender, client, domain, monitored) "
            "VALUES (?, ?, ?, ?, ?)",
            (stamp(now()), printable(sender, SENDER_MAX), printable(client, CLIENT_MAX),
             printable(domain, SENDER_MAX), 1 if monitored else 0)), write=True)

    def retired_attempts(self, since: dt.datetime) -> list[RetiredSender]:
        """Who still mails retired domains since `since`, most frequent first."""
        rows = self._run("read retired-domain attempts", lambda tx: tx.rows(
            "SELECT sender, client, domain, COUNT(*), MIN(at), MAX(at), SUM(monitored) "
            "FROM retired_attempts "
            "WHERE at >= ? GROUP BY sender, client, domain ORDER BY COUNT(*) DESC, MAX(at) DESC",
            (stamp(since),)))
        return [RetiredSender(str(r[0]), str(r[1]), str(r[2]), int(r[3]), parse_time(r[4]),
                              parse_time(r[5]), int(r[6] or 0)) for r in rows]

    def held_summary(self, mta: str | None = None) -> tuple[int, dt.datetime | None]:
        sql = "SELECT COUNT(*), MIN(held_at) FROM quarantine WHERE status IN (?, ?)"
        params: list[Any] = [s.value for s in OPEN]
        if mta is not None:
            sql += " AND mta = ?"
            params.append(mta)
        row = self._run("read quarantine records", lambda tx: tx.row(sql, params))
        assert row is not None
        return int(row[0]), _optional_time(row[1])

    # Review.

    def quarantine_records(self, statuses: Collection[Status] | None = OPEN,
                           mta: str | None = None) -> list[QuarantineRecord]:
        where: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            if not statuses:
                return []
            where.append(f"q.status IN ({', '.join('?' for _ in statuses)})")
            params += [Status(s).value for s in statuses]
        if mta is not None:
            where.append("q.mta = ?")
            params.append(mta)
        sql = (_WITH_NEWEST_REQUEST + (f"WHERE {' AND '.join(where)} " if where else "")
               + "ORDER BY q.held_at, q.id")
        return [_record(row) for row in self._run("read quarantine records",
                                                  lambda tx: tx.rows(sql, params))]

    def record(self, record_id: int) -> QuarantineRecord:
        return self._run("read a quarantine record", lambda tx: self._record_in(tx, record_id))

    def _record_in(self, tx: Tx, record_id: int) -> QuarantineRecord:
        row = tx.row(_WITH_NEWEST_REQUEST + "WHERE q.id = ?", (record_id,))
        if row is None:
            raise RecordsError(f"there is no quarantine record {record_id} in {self.where}")
        return _record(row)

    def records_of(self, queue_id: str, mta: str | None = None) -> list[QuarantineRecord]:
        sql, params = _WITH_NEWEST_REQUEST + "WHERE q.queue_id = ?", [queue_id]
        if mta is not None:
            sql += " AND q.mta = ?"
            params.append(mta)
        rows = self._run("read quarantine records",
                         lambda tx: tx.rows(sql + " ORDER BY q.held_at, q.id", params))
        return [_record(row) for row in rows]

    def request(self, record_id: int, action: Review, mode: ReleaseMode, actor: str,
                reason: str, needs_approval: str = "") -> Request:
        actor, reason = printable(actor, ACTOR_MAX), printable(reason, REASON_MAX)
        needs_approval = printable(needs_approval, REASON_MAX)

        def work(tx: Tx) -> Request:
            tx.lock_head()
            at = now()
            if tx.run("UPDATE quarantine SET status = ? WHERE id = ? AND status = ?",
                      (Status.REQUESTED.value, record_id, Status.HELD.value)) != 1:
                raise ConflictError(_not_held(self._record_in(tx, record_id), "request"))
            row = tx.row("INSERT INTO requests (record_id, action, mode, actor, reason, "
                         "requested_at, needs_approval) VALUES (?, ?, ?, ?, ?, ?, ?) "
                         "RETURNING id", (record_id, action.value, mode.value, actor, reason,
                                          stamp(at), needs_approval))
            assert row is not None
            record = self._record_in(tx, record_id)
            waits = f"; awaits approval: {needs_approval}" if needs_approval else ""
            self._append_on(tx, at, actor, _ASKED[action], record, reason=reason,
                            override=mode is ReleaseMode.OVERRIDE,
                            detail=f"mode {mode}{waits}")
            return Request(int(row[0]), record_id, action, mode, actor, reason, at,
                           needs_approval=needs_approval)

        return self._run("write the review request", work, write=True)

    def request_of(self, request_id: int) -> Request:
        return self._run("read a review request", lambda tx: self._request_in(tx, request_id))

    def _request_in(self, tx: Tx, request_id: int) -> Request:
        row = tx.row(_REQUEST + "WHERE id = ?", (request_id,))
        if row is None:
            raise RecordsError(f"there is no review request {request_id} in {self.where}")
        return _request(row)

    def dismiss(self, record_id: int, actor: str, reason: str) -> None:
        def work(tx: Tx) -> None:
            tx.lock_head()
            at = now()
            if tx.run("UPDATE quarantine SET status = ? WHERE id = ? AND status = ?",
                      (Status.DISMISSED.value, record_id, Status.GONE.value)) != 1:
                record = self._record_in(tx, record_id)
                raise ConflictError(f"record {record_id} ({record.queue_id} on {record.mta}) is "
                               f"{record.status}: only a record whose message is gone can be "
                               "dismissed")
            self._append_on(tx, at, actor, AuditAction.DISMISSED,
                            self._record_in(tx, record_id), reason=reason)

        self._run("dismiss the record", work, write=True)

    # The daemon on the MTA that holds the message.

    def pending_requests(self, mta: str) -> list[tuple[Request, QuarantineRecord]]:
        rows = self._run("read pending review requests", lambda tx: tx.rows(
            _RECORD + "JOIN requests r ON r.record_id = q.id WHERE r.outcome = ? AND "
            "q.mta = ? AND (r.needs_approval = '' OR r.approved_by <> '') "
            "ORDER BY r.requested_at, r.id", ("", mta)))
        return _with_request(rows)

    def finish_request(self, request_id: int, ok: bool, detail: str,
                       queue_id: str | None = None) -> None:
        detail = printable(detail, REASON_MAX)

        def work(tx: Tx) -> None:
            tx.lock_head()
            at = now()
            asked = self._request_in(tx, request_id)
            if asked.outcome:
                raise ConflictError(f"request {request_id} is {asked.outcome} already "
                               f"({stamp(asked.done_at) if asked.done_at else 'no time'})")
            record = self._record_in(tx, asked.record_id)
            new_id = printable(queue_id, QUEUE_ID_MAX) if queue_id else record.queue_id
            status = asked.action.status if ok else Status.HELD
            if tx.run("UPDATE quarantine SET status = ?, closed_at = ?, queue_id = ? "
                      "WHERE id = ? AND status = ?",
                      (status.value, stamp(at) if ok else None, new_id,
                       record.record_id, Status.REQUESTED.value)) != 1:
                raise ConflictError(f"cannot finish request {request_id}: record "
                               f"{record.record_id} ({record.queue_id} on {record.mta}) is "
                               f"{record.status}, not requested")
            tx.run("UPDATE requests SET done_at = ?, outcome = ?, detail = ? WHERE id = ?",
                   (stamp(at), "done" if ok else "failed", detail, request_id))
            if ok:  # content is kept only while the message is held
                tx.run("DELETE FROM content WHERE record_id = ?", (record.record_id,))
            told = [f"mode {asked.mode}" if asked.mode is not ReleaseMode.PLAIN else "",
                    detail if ok else f"{asked.action} failed: {detail}",
                    f"new queue id {new_id}" if new_id != record.queue_id else ""]
            self._append_on(tx, at, asked.actor, _DONE[asked.action] if ok else
                            AuditAction.FAILED, record, reason=asked.reason,
                            override=asked.mode is ReleaseMode.OVERRIDE,
                            detail="; ".join(t for t in told if t))

        self._run("write the outcome of a review request", work, write=True)

    def close_gone(self, record_id: int, detail: str) -> None:
        def work(tx: Tx) -> None:
            tx.lock_head()
            at = now()
            if tx.run("UPDATE quarantine SET status = ?, closed_at = ? WHERE id = ? AND "
                      "status = ?", (Status.GONE.value, stamp(at), record_id,
                                     Status.HELD.value)) != 1:
                raise ConflictError(_not_held(self._record_in(tx, record_id), "close"))
            tx.run("DELETE FROM content WHERE record_id = ?", (record_id,))
            self._append_on(tx, at, POSTWACHT, AuditAction.GONE,
                            self._record_in(tx, record_id), detail=detail)

        self._run("close the record", work, write=True)

    # Four eyes.

    def approve(self, request_id: int, actor: str, reason: str) -> Request:
        actor, reason = printable(actor, ACTOR_MAX), printable(reason, REASON_MAX)

        def work(tx: Tx) -> Request:
            tx.lock_head()
            at = now()
            asked = self._request_in(tx, request_id)
            if not asked.awaiting_approval:
                raise ConflictError(_not_awaiting(asked, "approve"))
            if asked.actor == actor:
                raise ConflictError(f"{actor} asked for request {request_id}: nobody approves "
                                    "their own request; another approver must")
            tx.run("UPDATE requests SET approved_by = ?, approved_at = ? WHERE id = ? AND "
                   "approved_by = '' AND outcome = ''", (actor, stamp(at), request_id))
            self._append_on(tx, at, actor, AuditAction.APPROVED,
                            self._record_in(tx, asked.record_id), reason=reason,
                            override=asked.mode is ReleaseMode.OVERRIDE,
                            detail=f"request {request_id} by {asked.actor}: "
                                   f"{asked.action}, mode {asked.mode}")
            return dataclasses.replace(asked, approved_by=actor, approved_at=at)

        return self._run("approve the request", work, write=True)

    def decline(self, request_id: int, actor: str, reason: str) -> None:
        actor, reason = printable(actor, ACTOR_MAX), printable(reason, REASON_MAX)

        def work(tx: Tx) -> None:
            tx.lock_head()
            at = now()
            asked = self._request_in(tx, request_id)
            if not asked.awaiting_approval:
                raise ConflictError(_not_awaiting(asked, "decline"))
            tx.run("UPDATE requests SET outcome = ?, done_at = ?, detail = ? WHERE id = ?",
                   ("declined", stamp(at), f"declined by {actor}: {reason}", request_id))
            tx.run("UPDATE quarantine SET status = ? WHERE id = ? AND status = ?",
                   (Status.HELD.value, asked.record_id, Status.REQUESTED.value))
            withdrawn = " (withdrawn by its requester)" if actor == asked.actor else ""
            self._append_on(tx, at, actor, AuditAction.DECLINED,
                            self._record_in(tx, asked.record_id), reason=reason,
                            detail=f"request {request_id} by {asked.actor}{withdrawn}")

        self._run("decline the request", work, write=True)

    def awaiting_approval(self) -> list[tuple[Request, QuarantineRecord]]:
        rows = self._run("read requests awaiting approval", lambda tx: tx.rows(
            _RECORD + "JOIN requests r ON r.record_id = q.id WHERE " + _AWAITING
            + " ORDER BY r.requested_at, r.id"))
        return _with_request(rows)

    # Content.

    def save_content(self, record_id: int, content: HeldContent) -> None:
        headers = json.dumps([[printable(n, NAME_MAX), printable(v, REASON_MAX)]
                              for n, v in content.headers])
        attachments = json.dumps([[printable(a.name, NAME_MAX),
                                   printable(a.content_type, NAME_MAX), int(a.size)]
                                  for a in content.attachments])
        notes = json.dumps([printable(n, REASON_MAX) for n in content.notes])
        text = content.text[:TEXT_MAX]

        def work(tx: Tx) -> None:
            record = self._record_in(tx, record_id)
            if record.status not in OPEN:
                raise ConflictError(f"record {record_id} is {record.status}: content is kept "
                                    "only while a message is held")
            tx.run("DELETE FROM content WHERE record_id = ?", (record_id,))
            tx.run("INSERT INTO content (record_id, captured_at, headers, body, attachments, "
                   "notes) VALUES (?, ?, ?, ?, ?, ?)",
                   (record_id, stamp(now()), headers, text, attachments, notes))

        self._run("write a held message's content", work, write=True)

    def content(self, record_id: int) -> HeldContent | None:
        row = self._run("read a held message's content", lambda tx: tx.row(
            "SELECT captured_at, headers, body, attachments, notes FROM content "
            "WHERE record_id = ?", (record_id,)))
        if row is None:
            return None
        try:
            return HeldContent(
                tuple((str(n), str(v)) for n, v in json.loads(str(row[1]))), str(row[2]),
                tuple(Attachment(str(n), str(t), int(z)) for n, t, z in json.loads(str(row[3]))),
                tuple(str(n) for n in json.loads(str(row[4]))), parse_time(str(row[0])))
        except (ValueError, TypeError) as exc:
            raise RecordsError(f"the content of record {record_id} cannot be read: "
                               f"{exc}") from None

    def without_content(self, mta: str) -> list[QuarantineRecord]:
        # A release that waits for approval is still in the hold queue, and its approver
        # should read what they approve.
        rows = self._run("read quarantine records", lambda tx: tx.rows(
            _WITH_NEWEST_REQUEST + "WHERE q.mta = ? AND (q.status = ? OR (q.status = ? AND "  # noqa: S608
            + _AWAITING + ")) AND NOT EXISTS "
            "(SELECT 1 FROM content c WHERE c.record_id = q.id) ORDER BY q.held_at, q.id "
            "LIMIT ?", (mta, Status.HELD.value, Status.REQUESTED.value, CAPTURE_CANDIDATES)))
        return [_record(row) for row in rows]

    # Audit entries that change no record, and the trail searched.

    def note(self, actor: str, action: AuditAction, record_id: int = 0,
             detail: str = "") -> None:
        def work(tx: Tx) -> None:
            tx.lock_head()
            at = now()
            if record_id:
                self._append_on(tx, at, actor, action, self._record_in(tx, record_id),
                                detail=detail)
            else:
                self._append(tx, at, actor, action, mta=self.mta, detail=detail)

        self._run("write an audit entry", work, write=True)

    def audit_search(self, *, actor: str | None = None, action: AuditAction | None = None,
                     record_id: int | None = None, since: dt.datetime | None = None,
                     before_seq: int | None = None, limit: int = 200) -> list[AuditEntry]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("actor = ?", actor),
                              ("action = ?", None if action is None else action.value),
                              ("record_id = ?", record_id),
                              ("at >= ?", None if since is None else stamp(since)),
                              ("seq < ?", before_seq)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (_AUDIT + (f"WHERE {' AND '.join(where)} " if where else "")
               + "ORDER BY seq DESC LIMIT ?")
        params.append(max(1, min(limit, 10_000)))
        return [_entry(row) for row in self._run("read the audit trail",
                                                 lambda tx: tx.rows(sql, params))]

    # Accounts.

    def users(self) -> list[User]:
        return [_user(row) for row in self._run(
            "read the users", lambda tx: tx.rows(_USER + "ORDER BY name"))]

    def user(self, name: str) -> User | None:
        row = self._run("read a user", lambda tx: tx.row(_USER + "WHERE name = ?", (name,)))
        return None if row is None else _user(row)

    def password_hash(self, name: str) -> str:
        row = self._run("read a user", lambda tx: tx.row(
            "SELECT password FROM users WHERE name = ?", (name,)))
        return "" if row is None else str(row[0])

    def add_user(self, name: str, role: Role, email: str, password_hash: str,
                 actor: str, *, action: AuditAction = AuditAction.USER_ADDED) -> None:
        name = printable(name, ACTOR_MAX)

        def work(tx: Tx) -> None:
            tx.lock_head()
            at = now()
            if tx.row("SELECT name FROM users WHERE name = ?", (name,)) is not None:
                raise ConflictError(f"there is a user {name} already")
            tx.run("INSERT INTO users (name, role, email, password, created_at, created_by) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (name, Role(role).value, printable(email, SENDER_MAX), password_hash,
                    stamp(at), printable(actor, ACTOR_MAX)))
            what = "reviewer" if action is AuditAction.REVIEWER_ADDED else "user"
            self._append(tx, at, actor, action, mta=self.mta,
                         detail=f"{what} {name}, role {Role(role)}")

        self._run("add a user", work, write=True)

    def remove_user(self, name: str, actor: str, *,
                    action: AuditAction = AuditAction.USER_REMOVED,
                    roles: Collection[str] | None = None) -> None:
        def work(tx: Tx) -> None:
            tx.lock_head()
            row = tx.row("SELECT role FROM users WHERE name = ?", (name,))
            if row is None or (roles is not None and str(row[0]) not in roles):
                what = "a reviewer" if action is AuditAction.REVIEWER_REMOVED else "a user"
                raise ConflictError(f"{printable(name, ACTOR_MAX)} is not {what}")
            tx.run("DELETE FROM users WHERE name = ?", (name,))
            tx.run("DELETE FROM sessions WHERE name = ?", (name,))
            what = "reviewer" if action is AuditAction.REVIEWER_REMOVED else "user"
            self._append(tx, now(), actor, action, mta=self.mta,
                         detail=f"{what} {name}, role {row[0]}")

        self._run("remove a user", work, write=True)

    def set_role(self, name: str, role: Role, actor: str) -> None:
        def work(tx: Tx) -> None:
            tx.lock_head()
            row = tx.row("SELECT role FROM users WHERE name = ?", (name,))
            if row is None:
                raise ConflictError(f"{printable(name, ACTOR_MAX)} is not a user")
            tx.run("UPDATE users SET role = ? WHERE name = ?", (Role(role).value, name))
            self._append(tx, now(), actor, AuditAction.ROLE_CHANGED, mta=self.mta,
                         detail=f"user {name}: {row[0]} -> {Role(role)}")

        self._run("change a user's role", work, write=True)

    def set_password(self, name: str, password_hash: str, actor: str) -> None:
        def work(tx: Tx) -> None:
            tx.lock_head()
            if tx.run("UPDATE users SET password = ? WHERE name = ?",
                      (password_hash, name)) != 1:
                raise ConflictError(f"{printable(name, ACTOR_MAX)} is not a user")
            tx.run("DELETE FROM sessions WHERE name = ?", (name,))  # signed out everywhere
            self._append(tx, now(), actor, AuditAction.PASSWORD_CHANGED, mta=self.mta,
                         detail=f"user {name}")

        self._run("change a user's password", work, write=True)

    # Who may review, as schema 3 knew it: users who may review.

    def reviewers(self) -> list[str]:
        rows = self._run("read the reviewers", lambda tx: tx.rows(
            "SELECT name FROM users WHERE role IN ("  # noqa: S608 (placeholders only)
            + ", ".join("?" for _ in REVIEWING) + ") ORDER BY name", REVIEWING))
        return [str(row[0]) for row in rows]

    def add_reviewer(self, name: str, actor: str) -> None:
        self.add_user(name, Role.REVIEWER, "", "", actor, action=AuditAction.REVIEWER_ADDED)

    def remove_reviewer(self, name: str, actor: str) -> None:
        self.remove_user(name, actor, action=AuditAction.REVIEWER_REMOVED, roles=REVIEWING)

    # Web sessions and failed sign-ins.

    def open_session(self, token_hash: str, name: str, csrf: str) -> None:
        def work(tx: Tx) -> None:
            at = now()
            tx.run("DELETE FROM sessions WHERE seen_at < ?", (stamp(at - SIGN_IN_KEPT),))
            tx.run("INSERT INTO sessions (token_hash, name, csrf, created_at, seen_at) "
                   "VALUES (?, ?, ?, ?, ?)", (token_hash, name, csrf, stamp(at), stamp(at)))

        self._run("open a session", work, write=True)

    def session(self, token_hash: str, idle: dt.timedelta,
                lifetime: dt.timedelta) -> Session | None:
        def work(tx: Tx) -> Session | None:
            row = tx.row("SELECT s.name, u.role, s.csrf, s.created_at, s.seen_at FROM "
                         "sessions s JOIN users u ON u.name = s.name WHERE s.token_hash = ?",
                         (token_hash,))
            if row is None:
                return None
            at = now()
            created, seen = parse_time(str(row[3])), parse_time(str(row[4]))
            if at - seen > idle or at - created > lifetime:
                tx.run("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
                return None
            tx.run("UPDATE sessions SET seen_at = ? WHERE token_hash = ?",
                   (stamp(at), token_hash))
            return Session(str(row[0]), Role(str(row[1])), str(row[2]), created, at)

        return self._run("read a session", work, write=True)

    def close_session(self, token_hash: str) -> None:
        self._run("close a session", lambda tx: tx.run(
            "DELETE FROM sessions WHERE token_hash = ?", (token_hash,)), write=True)

    def sign_in_failed(self, name: str, client: str) -> None:
        def work(tx: Tx) -> None:
            at = now()
            tx.run("DELETE FROM sign_in_failures WHERE at < ?", (stamp(at - SIGN_IN_KEPT),))
            tx.run("INSERT INTO sign_in_failures (at, name, client) VALUES (?, ?, ?)",
                   (stamp(at), printable(name, ACTOR_MAX), printable(client, CLIENT_MAX)))

        self._run("write a failed sign-in", work, write=True)

    def sign_in_failures(self, since: dt.datetime, name: str | None = None,
                         client: str | None = None) -> int:
        sql, params = "SELECT COUNT(*) FROM sign_in_failures WHERE at >= ?", [stamp(since)]
        if name is not None:
            sql += " AND name = ?"
            params.append(printable(name, ACTOR_MAX))
        if client is not None:
            sql += " AND client = ?"
            params.append(printable(client, CLIENT_MAX))
        row = self._run("read failed sign-ins", lambda tx: tx.row(sql, params))
        return int(row[0]) if row else 0

    # Who has been mailed: keyed hashes only (records.correspondents), no audit entries
    # (they record no decision). Rows are written in one order (sorted), so that two MTAs
    # learning overlapping sets at once never wait on each other in a circle.

    def remember_correspondents(self, hashes: Collection[str], at: dt.datetime) -> None:
        chosen = _correspondent_hashes(hashes)
        seen = stamp(at)

        def work(tx: Tx) -> None:
            for chunk in _chunks(chosen):
                tx.run("INSERT INTO correspondents (hash, last_seen) VALUES "  # noqa: S608
                       + ", ".join("(?, ?)" for _ in chunk)
                       + " ON CONFLICT (hash) DO UPDATE SET last_seen = excluded.last_seen "
                       "WHERE excluded.last_seen > correspondents.last_seen",
                       [value for h in chunk for value in (h, seen)])

        if chosen:
            self._run("remember correspondents", work, write=True)

    def known_correspondents(self, hashes: Collection[str], since: dt.datetime) -> set[str]:
        chosen = _correspondent_hashes(hashes)

        def work(tx: Tx) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(chosen):
                found.update(str(row[0]) for row in tx.rows(
                    "SELECT hash FROM correspondents WHERE last_seen >= ? AND hash IN ("  # noqa: S608
                    + ", ".join("?" for _ in chunk) + ")", [stamp(since), *chunk]))
            return found

        return self._run("read correspondents", work) if chosen else set()

    def forget_correspondents(self, hashes: Collection[str]) -> int:
        chosen = _correspondent_hashes(hashes)

        def work(tx: Tx) -> int:
            return sum(tx.run("DELETE FROM correspondents WHERE hash IN ("  # noqa: S608
                              + ", ".join("?" for _ in chunk) + ")", chunk)
                       for chunk in _chunks(chosen))

        return self._run("forget correspondents", work, write=True) if chosen else 0

    def expire_correspondents(self, before: dt.datetime) -> int:
        return self._run("expire correspondents", lambda tx: tx.run(
            "DELETE FROM correspondents WHERE last_seen < ?", (stamp(before),)), write=True)

    def correspondents_count(self) -> int:
        row = self._run("count correspondents",
                        lambda tx: tx.row("SELECT COUNT(*) FROM correspondents"))
        return int(row[0]) if row else 0

    def correspondents_key(self, fingerprint: str) -> bool:
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise ValueError("a key's fingerprint is 16 to 64 lower-case hex digits")

        def work(tx: Tx) -> bool:
            tx.run("INSERT INTO correspondents_key (id, fingerprint) VALUES (1, ?) "
                   "ON CONFLICT (id) DO NOTHING", (fingerprint,))
            row = tx.row("SELECT fingerprint FROM correspondents_key WHERE id = 1")
            return row is not None and str(row[0]) == fingerprint

        return self._run("check the correspondents' key", work, write=True)

    # Daemons' reports, and claims.

    def publish(self, kind: str, body: str) -> None:
        def work(tx: Tx) -> None:
            tx.run("DELETE FROM published WHERE mta = ? AND kind = ?", (self.mta, kind))
            tx.run("INSERT INTO published (mta, kind, at, body) VALUES (?, ?, ?, ?)",
                   (self.mta, kind, stamp(now()), body))

        self._run(f"publish the {kind} report", work, write=True)

    def published(self, kind: str) -> list[Published]:
        rows = self._run(f"read the {kind} reports", lambda tx: tx.rows(
            "SELECT mta, kind, at, body FROM published WHERE kind = ? ORDER BY mta", (kind,)))
        return [Published(str(r[0]), str(r[1]), parse_time(str(r[2])), str(r[3]))
                for r in rows]

    def claim(self, what: str) -> bool:
        def work(tx: Tx) -> bool:
            at = now()
            tx.run("DELETE FROM claims WHERE at < ?", (stamp(at - CLAIMS_KEPT),))
            return tx.run("INSERT INTO claims (what, at, mta) VALUES (?, ?, ?) "
                          "ON CONFLICT (what) DO NOTHING",
                          (printable(what, NAME_MAX), stamp(at), self.mta)) == 1

        return self._run("claim a task", work, write=True)


_CORRESPONDENT_HASH = re.compile(r"[0-9a-f]{64}")
_FINGERPRINT = re.compile(r"[0-9a-f]{16,64}")
_CHUNK = 400
"""Rows per statement: under either backend's limit on parameters (SQLite's was 999)."""


def _correspondent_hashes(hashes: Collection[str]) -> list[str]:
    """Each hash once, sorted; ValueError for too many, or for anything that is not a
    hex SHA-256 (so that no address can ever be stored here by mistake)."""
    if len(hashes) > CORRESPONDENTS_MAX:
        raise ValueError(f"{len(hashes)} correspondent hashes in one call; at most "
                         f"{CORRESPONDENTS_MAX}")
    if not all(isinstance(h, str) and _CORRESPONDENT_HASH.fullmatch(h) for h in hashes):
        raise ValueError("a correspondent hash is 64 lower-case hex digits (HMAC-SHA256)")
    return sorted(set(hashes))


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def audit_line(entry: AuditEntry) -> str:
    """An audit entry as one JSON line (for the log, and for an export)."""
    return json.dumps({
        "seq": entry.seq, "at": stamp(entry.at), "actor": entry.actor,
        "action": entry.action.value, "mta": entry.mta, "queue_id": entry.queue_id,
        "record_id": entry.record_id, "rule": entry.rule, "domains": list(entry.domains),
        "reason": entry.reason, "override": entry.override, "detail": entry.detail,
        "prev": entry.prev, "hash": entry.hash,
    }, separators=(",", ":"))


def _not_held(record: QuarantineRecord, what: str) -> str:
    where = f"record {record.record_id} ({record.queue_id} on {record.mta})"
    asked = record.request
    if record.status is Status.REQUESTED and asked is not None and not asked.outcome:
        return (f"cannot {what} {where}: {asked.actor} requested {asked.action} at "
                f"{asked.requested_at:%Y-%m-%d %H:%M:%S} UTC (reason: {asked.reason})")
    return f"cannot {what} {where}: it is {record.status}, not held"


def _not_awaiting(asked: Request, what: str) -> str:
    if not asked.needs_approval:
        return f"request {asked.request_id} needs no approval"
    if asked.outcome:
        return f"request {asked.request_id} is {asked.outcome} already"
    return (f"cannot {what} request {asked.request_id}: {asked.approved_by} approved it "
            f"at {asked.approved_at:%Y-%m-%d %H:%M:%S} UTC" if asked.approved_at else
            f"cannot {what} request {asked.request_id}: it was approved already")


def _with_request(rows: list[tuple[Any, ...]]) -> list[tuple[Request, QuarantineRecord]]:
    """Rows of records joined with one request each, as (request, record) pairs."""
    pairs = []
    for row in rows:
        record = _record(row)
        assert record.request is not None
        pairs.append((record.request, record))
    return pairs


def _user(row: Sequence[Any]) -> User:
    name, role, email, password, created_at, created_by = row
    try:
        return User(str(name), Role(str(role)), str(email), bool(password),
                    parse_time(str(created_at)), str(created_by))
    except (ValueError, TypeError) as exc:
        raise RecordsError(f"user {printable(str(name), 64)} cannot be read: {exc}") from None


def _request(row: Sequence[Any]) -> Request:
    (request_id, record_id, action, mode, actor, reason, requested_at, done_at, outcome,
     detail, needs_approval, approved_by, approved_at) = row
    try:
        return Request(int(request_id), int(record_id), Review(action), ReleaseMode(mode),
                       str(actor), str(reason), parse_time(requested_at),
                       _optional_time(done_at), str(outcome), str(detail),
                       str(needs_approval), str(approved_by), _optional_time(approved_at))
    except (ValueError, TypeError) as exc:
        raise RecordsError(f"review request {request_id} cannot be read: {exc}") from None


def _record(row: Sequence[Any]) -> QuarantineRecord:
    (record_id, mta, queue_id, key, held_at, sender, recipients, rule, reason, policy,
     status, client, route, closed_at, detected) = row[:15]
    try:
        verdicts = tuple(
            RecipientVerdict(r["address"], tuple(r["domains"]), Action(r["action"]),
                             Rule(r["rule"]), r["reason"], r.get("matched"))
            for r in json.loads(str(recipients))
        )
        return QuarantineRecord(
            int(record_id), str(mta), str(queue_id), str(key), parse_time(held_at),
            str(sender), verdicts, Rule(rule), str(reason), str(policy), Status(status),
            str(client), None if route is None else str(route), _optional_time(closed_at),
            None if row[15] is None else _request((row[15], record_id, *row[16:])),
            str(detected),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordsError(f"record {record_id} ({printable(str(queue_id), 64)}) cannot be "
                           f"read: {exc}") from None


def _entry(row: Sequence[Any]) -> AuditEntry:
    (seq, at, actor, action, mta, queue_id, record_id, rule, domains, reason, override,
     detail, prev, digest) = row
    try:
        names = json.loads(str(domains))
    except ValueError:
        names = None
    if not isinstance(names, list):
        raise RecordsError(f"audit entry {seq} cannot be read (edited?): domains "
                           f"{printable(str(domains), 64)!r} is not a JSON list")
    try:
        return AuditEntry(int(seq), parse_time(str(at)), str(actor), AuditAction(action),
                          str(mta), str(queue_id), int(record_id), str(rule),
                          tuple(str(n) for n in names), str(reason), bool(override),
                          str(detail), str(prev), str(digest))
    except (ValueError, TypeError) as exc:
        raise RecordsError(f"audit entry {seq} cannot be read (edited?): {exc}") from None
