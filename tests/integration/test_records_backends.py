"""One behaviour suite for both records backends: the embedded SQLite file and a real
PostgreSQL 15 (the lab's private cluster). Each test gets an empty store of its own; a
second store opened on the same records stands for another process or MTA."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from postwacht.core.decide import RecipientVerdict
from postwacht.core.roles import Role
from postwacht.core.vocabulary import Action, Rule
from postwacht.records import audit
from postwacht.records import sql as sql_module
from postwacht.records.postgres import PostgresRecords
from postwacht.records.sql import SCHEMA_VERSION, SqlRecords
from postwacht.records.sqlite import DB_NAME, SqliteRecords
from postwacht.records.store import (
    Attachment,
    AuditAction,
    ConflictError,
    HeldContent,
    Hold,
    QuarantineRecord,
    RecordsError,
    ReleaseMode,
    Request,
    Review,
    Status,
)

from tests.labs.postgres import PostgresLab
from tests.labs.util import poll

LOOKALIKE = RecipientVerdict("x@samen-veiIig.nl", ("samen-veiiig.nl",), Action.QUARANTINE,
                             Rule.LOOKALIKE, "looks like ours", "samen-veilig.nl")
INSECURE = RecipientVerdict("y@zorg.example", ("zorg.example",), Action.QUARANTINE,
                            Rule.INSECURE_TRANSPORT, "no DANE, no MTA-STS", None)


@dataclass
class Backend:
    name: str
    open: Callable[[str], SqlRecords]
    """Another store on the same records, as the MTA named (another process)."""
    tamper: Callable[[list[str]], None]
    """Run statements on the records directly, as someone with database access."""
    opened: list[SqlRecords]

    def store(self, mta: str = "mta-a") -> SqlRecords:
        store = self.open(mta)
        self.opened.append(store)
        return store


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        def tamper_file(statements: list[str]) -> None:
            db = sqlite3.connect(tmp_path / DB_NAME)
            with db:
                for statement in statements:
                    db.execute(statement)
            db.close()

        chosen = Backend("sqlite", lambda mta: SqliteRecords(tmp_path, mta=mta), tamper_file, [])
    else:
        lab: PostgresLab = request.getfixturevalue("postgres_lab")
        url = lab.new_database()

        def tamper_database(statements: list[str]) -> None:
            for statement in statements:
                lab.sql(url, statement)

        chosen = Backend("postgresql", lambda mta: PostgresRecords(url, mta=mta),
                         tamper_database, [])
    yield chosen
    for store in chosen.opened:
        store.close()


def hold(store: SqlRecords, queue_id: str = "ABC123", verdict: RecipientVerdict = LOOKALIKE,
         mta: str | None = None) -> QuarantineRecord:
    return store.record_quarantine(Hold(
        mta or store.mta, queue_id, uuid.uuid4().hex, "medewerker@samen-veilig.nl",
        (verdict,), verdict.rule, verdict.reason, "policy-1", "smtp from 127.0.0.1"))


def actions(store: SqlRecords) -> list[AuditAction]:
    return [entry.action for entry in store.audit_entries()]


def test_a_hold_is_a_held_record_with_its_audit_entry(
    backend: Backend, caplog: pytest.LogCaptureFixture,
) -> None:
    store = backend.store()
    caplog.set_level(logging.INFO, logger="postwacht.audit")
    record = hold(store, verdict=INSECURE)
    assert (record.status, record.mta, record.queue_id) == (Status.HELD, "mta-a", "ABC123")
    assert store.record(record.record_id) == record
    [entry] = store.audit_entries()
    assert (entry.seq, entry.action, entry.actor, entry.record_id) == (
        1, AuditAction.HELD, "postwacht", record.record_id)
    assert (entry.rule, entry.domains, entry.reason) == ("insecure-transport",
                                                         ("zorg.example",), record.reason)
    assert store.audit_head() == (1, entry.hash)
    [line] = [r.getMessage() for r in caplog.records if r.name == "postwacht.audit"]
    assert json.loads(line) == {**json.loads(line), "seq": 1, "action": "held",
                                "hash": entry.hash, "domains": ["zorg.example"]}


def race(first: SqlRecords, second: SqlRecords, record_id: int) -> list[object]:
    """Anna (release) and Bram (delete) ask at the same moment, through two stores."""
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def ask(store: SqlRecords, actor: str, action: Review) -> None:
        start.wait()
        try:
            outcomes.append(store.request(record_id, action, ReleaseMode.PLAIN, actor,
                                          "checked"))
        except ConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=ask, args=(first, "anna", Review.RELEASE)),
               threading.Thread(target=ask, args=(second, "bram", Review.DELETE))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def test_of_two_requests_at_once_on_one_record_exactly_one_wins(backend: Backend) -> None:
    first, second = backend.store(), backend.store()
    for n in range(5):
        record = hold(first, f"ABC12{n}")
        outcomes = race(first, second, record.record_id)
        [lost] = [o for o in outcomes if isinstance(o, ConflictError)]
        [won] = [o for o in outcomes if isinstance(o, Request)]
        assert f"{won.actor} requested {won.action} at " in str(lost)
        assert first.record(record.record_id).request == won
    assert actions(second).count(AuditAction.RELEASE_REQUESTED) + actions(second).count(
        AuditAction.DELETE_REQUESTED) == 5
    assert audit.verify(second.audit_entries(), second.audit_head()) == []


def test_holds_on_two_mtas_at_once_make_one_unbroken_chain(backend: Backend) -> None:
    stores = [backend.store("mta-a"), backend.store("mta-b")]
    start = threading.Barrier(6)
    failures: list[Exception] = []

    def hold_many(store: SqlRecords, worker: int) -> None:
        start.wait()
        try:
            for n in range(10):
                hold(store, f"ABC{worker}{n:02d}")
        except RecordsError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=hold_many, args=(stores[w % 2], w)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    entries = stores[0].audit_entries()
    assert [e.seq for e in entries] == list(range(1, 61))
    assert audit.verify(entries, stores[1].audit_head()) == []
    assert {e.mta for e in entries} == {"mta-a", "mta-b"}


def test_a_request_on_a_closed_record_names_its_status(backend: Backend) -> None:
    store = backend.store()
    record = hold(store)
    store.close_gone(record.record_id, "not in the hold queue")
    with pytest.raises(ConflictError, match=r"record \d+ \(ABC123 on mta-a\).* gone, not held"):
        store.request(record.record_id, Review.RELEASE, ReleaseMode.PLAIN, "anna", "ok")
    with pytest.raises(RecordsError, match="no quarantine record 999"):
        store.request(999, Review.RELEASE, ReleaseMode.PLAIN, "anna", "ok")


def test_a_request_done_closes_the_record_and_follows_its_new_queue_id(
    backend: Backend,
) -> None:
    store, daemon = backend.store(), backend.store()
    record = hold(store, verdict=INSECURE)
    asked = store.request(record.record_id, Review.RELEASE, ReleaseMode.OVERRIDE, "anna",
                          "the receiver confirmed by phone")
    [(pending, of)] = daemon.pending_requests("mta-a")
    assert pending == asked
    assert of.status is Status.REQUESTED
    assert daemon.pending_requests("mta-b") == []

    daemon.finish_request(asked.request_id, True, "postsuper -r", queue_id="DEF456")
    done = store.record(record.record_id)
    assert (done.status, done.queue_id) == (Status.RELEASED, "DEF456")
    assert done.closed_at is not None
    assert done.request is not None
    assert (done.request.outcome, done.request.detail) == ("done", "postsuper -r")
    assert daemon.pending_requests("mta-a") == []
    requested, released = store.audit_entries()[1:]
    assert (requested.action, requested.actor, requested.override) == (
        AuditAction.RELEASE_REQUESTED, "anna", True)
    assert (released.action, released.actor, released.override) == (
        AuditAction.RELEASED, "anna", True)
    assert released.reason == "the receiver confirmed by phone"
    assert "new queue id DEF456" in released.detail
    with pytest.raises(ConflictError, match="done already"):
        daemon.finish_request(asked.request_id, True, "again")


def test_a_failed_request_holds_the_record_again(backend: Backend) -> None:
    store = backend.store()
    record = hold(store)
    asked = store.request(record.record_id, Review.DELETE, ReleaseMode.PLAIN, "anna", "spam")
    store.finish_request(asked.request_id, False, "postsuper: no such message")
    again = store.record(record.record_id)
    assert again.status is Status.HELD
    assert again.request is not None
    assert (again.request.outcome, again.request.detail) == (
        "failed", "postsuper: no such message")
    failed = store.audit_entries()[-1]
    assert (failed.action, failed.actor) == (AuditAction.FAILED, "anna")
    assert "postsuper: no such message" in failed.detail
    store.request(record.record_id, Review.RELEASE, ReleaseMode.PLAIN, "bram", "after all")


def test_an_expiry_is_audited_when_it_is_asked_and_when_it_is_done(backend: Backend) -> None:
    store = backend.store()
    record = hold(store)
    asked = store.request(record.record_id, Review.EXPIRE, ReleaseMode.RETURN, "postwacht",
                          "older than 30 days")
    assert actions(store) == [AuditAction.HELD, AuditAction.EXPIRE_REQUESTED]
    store.finish_request(asked.request_id, True, "returned to the sender")
    assert store.record(record.record_id).status is Status.EXPIRED
    assert actions(store) == [AuditAction.HELD, AuditAction.EXPIRE_REQUESTED,
                              AuditAction.EXPIRED]


def test_a_gone_record_can_be_dismissed_and_only_a_gone_one(backend: Backend) -> None:
    store = backend.store()
    gone, held = hold(store, "ABC001"), hold(store, "ABC002")
    with pytest.raises(ConflictError, match="held: only a record whose message is gone"):
        store.dismiss(held.record_id, "anna", "tidy")
    store.close_gone(gone.record_id, "left the hold queue by hand")
    with pytest.raises(ConflictError):
        store.close_gone(gone.record_id, "again")
    assert [r.record_id for r in store.quarantine_records()] == [held.record_id]
    assert store.held_summary()[0] == 1
    store.dismiss(gone.record_id, "anna", "deleted by the postmaster")
    assert store.record(gone.record_id).status is Status.DISMISSED
    with pytest.raises(ConflictError, match="dismissed"):
        store.dismiss(gone.record_id, "anna", "twice")
    gone_entry, dismissed = store.audit_entries()[-2:]
    assert (gone_entry.action, gone_entry.actor, gone_entry.detail) == (
        AuditAction.GONE, "postwacht", "left the hold queue by hand")
    assert (dismissed.action, dismissed.actor, dismissed.reason) == (
        AuditAction.DISMISSED, "anna", "deleted by the postmaster")


def test_listing_filters_by_status_and_mta_and_shows_the_newest_request(
    backend: Backend,
) -> None:
    a, b = backend.store("mta-a"), backend.store("mta-b")
    on_a, on_b = hold(a, "ABC001"), hold(b, "ABC001")
    closed = hold(a, "ABC002")
    first = a.request(closed.record_id, Review.RELEASE, ReleaseMode.PLAIN, "anna", "one")
    a.finish_request(first.request_id, False, "busy")
    second = a.request(closed.record_id, Review.DELETE, ReleaseMode.PLAIN, "bram", "two")
    a.finish_request(second.request_id, True, "deleted")

    assert [r.record_id for r in b.quarantine_records()] == [on_a.record_id, on_b.record_id]
    assert [r.record_id for r in b.quarantine_records(mta="mta-b")] == [on_b.record_id]
    everything = a.quarantine_records(None)
    assert [r.record_id for r in everything] == [on_a.record_id, on_b.record_id,
                                                  closed.record_id]
    assert everything[0].request is None
    assert everything[2].request == a.request_of(second.request_id)
    assert [r.mta for r in a.records_of("ABC001")] == ["mta-a", "mta-b"]
    assert [r.record_id for r in a.records_of("ABC001", mta="mta-b")] == [on_b.record_id]
    assert a.quarantine_records([Status.DELETED]) == [a.record(closed.record_id)]
    count, oldest = a.held_summary()
    assert (count, oldest) == (2, on_a.held_at)
    assert a.held_summary("mta-b") == (1, on_b.held_at)


def test_a_record_follows_its_message_to_a_new_queue_id(backend: Backend) -> None:
    """postsuper -r gives a new queue id; the record takes it, whether the release is done
    or the message landed on hold again (then it is held there, under the new id)."""
    store = backend.store()
    for ok, new_id in ((True, "XYZ789"), (False, "XYZ78A")):
        record = hold(store, queue_id=f"ABC{new_id[-3:]}")
        asked = store.request(record.record_id, Review.RELEASE, ReleaseMode.PLAIN, "po", "ok")
        store.finish_request(asked.request_id, ok, "requeued", new_id)
        assert store.record(record.record_id).queue_id == new_id
        assert store.records_of(new_id) == [store.record(record.record_id)]
        entry = store.audit_entries()[-1]
        assert (entry.queue_id, entry.detail.endswith(f"new queue id {new_id}")) == (
            record.queue_id, True)

def test_reviewers_are_added_and_removed_with_an_audit_entry(backend: Backend) -> None:
    store = backend.store()
    store.add_reviewer("anna", "root")
    store.add_reviewer("bram", "root")
    with pytest.raises(ConflictError, match="there is a user anna already"):
        store.add_reviewer("anna", "root")
    store.remove_reviewer("anna", "root")
    with pytest.raises(ConflictError, match="anna is not a reviewer"):
        store.remove_reviewer("anna", "root")
    assert backend.store().reviewers() == ["bram"]
    entries = store.audit_entries()
    assert [(e.action, e.actor, e.detail) for e in entries] == [
        (AuditAction.REVIEWER_ADDED, "root", "reviewer anna, role reviewer"),
        (AuditAction.REVIEWER_ADDED, "root", "reviewer bram, role reviewer"),
        (AuditAction.REVIEWER_REMOVED, "root", "reviewer anna, role reviewer"),
    ]


def test_retired_attempts_are_counted_per_sender(backend: Backend) -> None:
    store = backend.store()
    before = dt.datetime.now(dt.UTC)
    for _ in range(2):
        store.record_retired_attempt("a@samen-veilig.nl", "smtp", "bjzutrecht.nl")
    store.record_retired_attempt("b\n@samen-veilig.nl", "smtp", "bjzutrecht.nl")
    counted = store.retired_attempts(before)
    assert [(r.sender, r.attempts) for r in counted] == [("a@samen-veilig.nl", 2),
                                                          ("b\\n@samen-veilig.nl", 1)]
    assert store.retired_attempts(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)) == []


def test_audit_entries_since_a_time(backend: Backend) -> None:
    store = backend.store()
    hold(store, "ABC001")
    middle = dt.datetime.now(dt.UTC)
    hold(store, "ABC002")
    assert [e.queue_id for e in store.audit_entries(since=middle)] == ["ABC002"]


def _trail(store: SqlRecords) -> None:
    """Five entries: two holds, a request, its outcome, a reviewer."""
    first, _ = hold(store, "ABC001"), hold(store, "ABC002")
    asked = store.request(first.record_id, Review.RELEASE, ReleaseMode.PLAIN, "anna", "ok")
    store.finish_request(asked.request_id, True, "released")
    store.add_reviewer("bram", "root")


TAMPERING = {
    "edited": (["UPDATE audit SET reason = 'nothing to see' WHERE seq = 3"],
               "entry 3 .* edited after it was written"),
    "deleted": (["DELETE FROM audit WHERE seq = 3"], "entry 3 missing"),
    "newest deleted": (["DELETE FROM audit WHERE seq = 5"],
                       "the newest entry is 4 but the trail's head says 5"),
    "swapped": (["UPDATE audit SET seq = 0 WHERE seq = 2", "UPDATE audit SET seq = 2 WHERE "
                 "seq = 3", "UPDATE audit SET seq = 3 WHERE seq = 0"],
                "entry 2 .* edited after it was written"),
}


def test_an_untouched_audit_trail_verifies(backend: Backend) -> None:
    store = backend.store()
    _trail(store)
    assert audit.verify(store.audit_entries(), store.audit_head()) == []
    assert store.audit_head()[0] == 5


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_tampered_audit_trail_names_the_entry(backend: Backend, how: str) -> None:
    store = backend.store()
    _trail(store)
    statements, named = TAMPERING[how]
    backend.tamper(statements)
    problems = audit.verify(store.audit_entries(), store.audit_head())
    assert problems
    assert any(re.search(named, p) for p in problems), problems


def test_a_store_of_a_newer_postwacht_is_refused(backend: Backend) -> None:
    backend.store().close()
    backend.tamper([f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}"])
    with pytest.raises(RecordsError, match=f"schema {SCHEMA_VERSION + 1}, newer than this "
                                          f"Postwacht.s {SCHEMA_VERSION}"):
        backend.store()


def test_postgresql_stopped_fails_each_call_quickly_and_the_next_call_after_its_return_works(
    postgres_lab: PostgresLab,
) -> None:
    store = PostgresRecords(postgres_lab.new_database(), mta="mta-a")
    try:
        hold(store, "ABC001")
        postgres_lab.stop()
        try:
            for queue_id in ("ABC002", "ABC003"):
                started = time.monotonic()
                with pytest.raises(RecordsError, match="cannot write the quarantine record") \
                        as failed:
                    hold(store, queue_id)
                assert time.monotonic() - started < 5
            # Right after a failed connection, calls fail at once instead of each waiting.
            assert "tried again within" in str(failed.value)
        finally:
            postgres_lab.start()

        def recorded() -> bool:
            try:
                hold(store, "ABC004")
            except RecordsError:
                return False
            return True

        poll(recorded, "a hold recorded once PostgreSQL is back (within a few seconds)")
        assert [r.queue_id for r in store.quarantine_records()] == ["ABC001", "ABC004"]
        assert audit.verify(store.audit_entries(), store.audit_head()) == []
    finally:
        store.close()


def test_daemons_starting_together_create_the_schema_once(postgres_lab: PostgresLab) -> None:
    url = postgres_lab.new_database()
    start = threading.Barrier(4)
    opened: list[object] = []

    def open_store(mta: str) -> None:
        start.wait()
        try:
            opened.append(PostgresRecords(url, mta=mta))
        except RecordsError as exc:
            opened.append(exc)

    threads = [threading.Thread(target=open_store, args=(f"mta-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(isinstance(s, PostgresRecords) for s in opened), opened
    for s in opened:
        assert isinstance(s, PostgresRecords)
        s.close()
    assert postgres_lab.sql(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


SCHEMA_2 = """
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue_id TEXT NOT NULL, held_at TEXT NOT NULL,
    sender TEXT NOT NULL, recipients TEXT NOT NULL, rule TEXT NOT NULL,
    reason TEXT NOT NULL, policy TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'held',
    client TEXT NOT NULL DEFAULT '');
CREATE INDEX quarantine_queue_id ON quarantine (queue_id);
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL, queue_id TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE retired_attempts (at TEXT NOT NULL, sender TEXT NOT NULL,
    client TEXT NOT NULL, domain TEXT NOT NULL);
CREATE INDEX retired_attempts_at ON retired_attempts (at);
PRAGMA user_version = 2;
"""


def test_a_sqlite_store_of_schema_2_is_migrated_into_one_chained_trail(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / DB_NAME)
    old.executescript(SCHEMA_2)
    recipients = json.dumps([{"address": "d@bjzutrecht.nl", "domains": ["bjzutrecht.nl"],
                              "action": "quarantine", "rule": "retired", "reason": "given up",
                              "matched": "bjzutrecht.nl"}])
    for n, (queue_id, status) in enumerate([("ABC001", "held"), ("ABC002", "released"),
                                            ("ABC002", "deleted")]):
        old.execute("INSERT INTO quarantine (queue_id, held_at, sender, recipients, rule, "
                    "reason, policy, status, client) VALUES (?, ?, 's@x.nl', ?, 'retired', "
                    "'given up', 'p', ?, 'smtp')",
                    (queue_id, f"2024-01-0{n + 1}T00:00:00+00:00", recipients, status))
    old.execute("INSERT INTO audit (at, actor, action, queue_id, reason) VALUES "
                "('2024-01-02T12:00:00+00:00', 'anna', 'release', 'ABC002', 'checked')")
    old.execute("INSERT INTO audit (at, actor, action, queue_id, reason) VALUES "
                "('2024-01-03T12:00:00+00:00', 'bram', 'delete', 'ABC002', 'spam')")
    old.execute("INSERT INTO retired_attempts VALUES ('2024-01-01T08:00:00+00:00', 's@x.nl', "
                "'smtp', 'bjzutrecht.nl')")
    old.commit()
    old.close()

    store = SqliteRecords(tmp_path, mta="mta-a")
    records = store.quarantine_records(None)
    assert [(r.record_id, r.queue_id, r.status, r.mta, r.key, r.client) for r in records] == [
        (1, "ABC001", Status.HELD, "mta-a", "migrated-1", "smtp"),
        (2, "ABC002", Status.RELEASED, "mta-a", "migrated-2", "smtp"),
        (3, "ABC002", Status.DELETED, "mta-a", "migrated-3", "smtp"),
    ]
    assert store.held_summary() == (1, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    entries = store.audit_entries()
    assert [(e.seq, e.action, e.actor, e.record_id, e.reason, e.domains) for e in entries] == [
        (1, AuditAction.RELEASED, "anna", 2, "checked", ("bjzutrecht.nl",)),
        (2, AuditAction.DELETED, "bram", 3, "spam", ("bjzutrecht.nl",)),
    ]
    assert {e.detail for e in entries} == {"carried over from schema 2"}
    assert audit.verify(entries, store.audit_head()) == []
    [attempt] = store.retired_attempts(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert attempt.attempts == 1
    added = hold(store, "ABC001")  # new holds go on where the old ids stopped
    assert added.record_id == 4
    store.close()

    check = sqlite3.connect(tmp_path / DB_NAME)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert check.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    check.close()
    again = SqliteRecords(tmp_path, mta="mta-b")  # opening again changes nothing
    assert [r.mta for r in again.quarantine_records(None)] == ["mta-a"] * 4
    assert len(again.audit_entries()) == 3
    again.close()


def test_one_mta_name_is_served_by_one_daemon_at_a_time(postgres_lab: PostgresLab) -> None:
    url = postgres_lab.new_database()
    first = PostgresRecords(url, mta="mx1")
    second = PostgresRecords(url, mta="mx1")
    other = PostgresRecords(url, mta="mx2")
    try:
        first.claim_mta()
        other.claim_mta()
        with pytest.raises(ConflictError, match=r"already serves MTA 'mx1'.*its own --mta"):
            second.claim_mta()
        with pytest.raises(ConflictError, match="already serves MTA 'mx1'"):
            hold(second, "ABC001")  # the second daemon's holds tempfail
        hold(first, "ABC002")
        first.close()  # the first daemon ends: its session, and the claim, go with it
        poll(lambda: _claims(second), "the name free for the second daemon")
        hold(second, "ABC003")
    finally:
        for store in (first, second, other):
            store.close()


def _claims(store: PostgresRecords) -> bool:
    try:
        store.claim_mta()
    except ConflictError:
        return False
    return True


# Schema 4: accounts, sessions, four eyes, content, reports and claims, on both backends.


def test_accounts_have_roles_and_every_change_is_audited(backend: Backend) -> None:
    store = backend.store()
    store.add_user("anna", Role.REVIEWER, "anna@samen-veilig.nl", "$argon2id$x", "root")
    store.add_user("vera", Role.VIEWER, "", "", "root")
    with pytest.raises(ConflictError, match="there is a user anna already"):
        store.add_user("anna", Role.ADMIN, "", "", "root")
    store.set_role("vera", Role.APPROVER, "anna")
    other = backend.store("mta-b")  # another process sees the same accounts
    assert [(u.name, u.role, u.has_password) for u in other.users()] == [
        ("anna", Role.REVIEWER, True), ("vera", Role.APPROVER, False)]
    assert other.password_hash("anna") == "$argon2id$x"
    assert other.reviewers() == ["anna", "vera"]
    store.remove_user("vera", "anna")
    assert store.user("vera") is None
    with pytest.raises(ConflictError, match="vera is not a user"):
        store.set_role("vera", Role.ADMIN, "anna")
    assert actions(store) == [AuditAction.USER_ADDED, AuditAction.USER_ADDED,
                              AuditAction.ROLE_CHANGED, AuditAction.USER_REMOVED]
    assert audit.verify(store.audit_entries(), store.audit_head()) == []


def test_a_session_ends_when_idle_too_long_or_its_user_is_removed(backend: Backend) -> None:
    store = backend.store()
    store.add_user("anna", Role.REVIEWER, "", "", "root")
    store.open_session("h1", "anna", "csrf-1")
    long, short = dt.timedelta(hours=1), dt.timedelta(0)
    session = store.session("h1", long, long)
    assert session is not None
    assert (session.name, session.role, session.csrf) == ("anna", Role.REVIEWER, "csrf-1")
    assert store.session("unknown", long, long) is None
    assert store.session("h1", short, long) is None  # idle: gone for good
    assert store.session("h1", long, long) is None
    store.open_session("h2", "anna", "csrf-2")
    store.set_role("anna", Role.VIEWER, "root")
    second = store.session("h2", long, long)
    assert second is not None
    assert second.role is Role.VIEWER  # the role as it is now, not at sign-in
    store.remove_user("anna", "root")
    assert store.session("h2", long, long) is None


def test_failed_sign_ins_are_counted_per_name_and_per_client(backend: Backend) -> None:
    store = backend.store()
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for name in ("anna", "anna", "bert"):
        store.sign_in_failed(name, "127.0.0.9")
    assert store.sign_in_failures(before, name="anna") == 2
    assert store.sign_in_failures(before, client="127.0.0.9") == 3
    assert store.sign_in_failures(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)) == 0


def test_an_approved_request_is_carried_out_and_a_declined_one_holds_the_message_again(
    backend: Backend,
) -> None:
    store = backend.store()
    first, second = hold(store, "ABC200"), hold(store, "ABC201")
    one = store.request(first.record_id, Review.RELEASE, ReleaseMode.OVERRIDE, "anna",
                        "asked", needs_approval="it overrides the lookalike hold")
    two = store.request(second.record_id, Review.RELEASE, ReleaseMode.OVERRIDE, "anna",
                        "asked", needs_approval="it overrides the lookalike hold")
    assert [r for r, _ in store.awaiting_approval()] == [one, two]
    assert store.pending_requests("mta-a") == []
    with pytest.raises(ConflictError, match="nobody approves their own request"):
        store.approve(one.request_id, "anna", "mine")
    assert store.approve(one.request_id, "bert", "agreed").approved_by == "bert"
    with pytest.raises(ConflictError, match="bert approved it"):
        store.approve(one.request_id, "carl", "too")
    store.decline(two.request_id, "bert", "no")
    assert [r.request_id for r, _ in store.pending_requests("mta-a")] == [one.request_id]
    assert store.record(second.record_id).status is Status.HELD
    assert actions(store)[-2:] == [AuditAction.APPROVED, AuditAction.DECLINED]


def test_content_is_kept_only_while_the_message_is_held(backend: Backend) -> None:
    store = backend.store()
    record = hold(store, "ABC210")
    assert [r.record_id for r in store.without_content("mta-a")] == [record.record_id]
    content = HeldContent((("Subject", "Zorgplan"),), "Beste collega,\n<b>tekst</b>",
                          (Attachment("plan.pdf", "application/pdf", 1234),),
                          ("only an HTML body",))
    store.save_content(record.record_id, content)
    saved = store.content(record.record_id)
    assert saved is not None
    assert (saved.headers, saved.text, saved.attachments, saved.notes) == (
        content.headers, content.text, content.attachments, content.notes)
    assert store.without_content("mta-a") == []
    waits = hold(store, "ABC211")  # its approver should read what they approve
    store.request(waits.record_id, Review.RELEASE, ReleaseMode.OVERRIDE, "anna", "asked",
                  needs_approval="it overrides the lookalike hold")
    assert [r.record_id for r in store.without_content("mta-a")] == [waits.record_id]
    asked = store.request(record.record_id, Review.DELETE, ReleaseMode.PLAIN, "anna", "typo")
    store.finish_request(asked.request_id, True, "deleted")
    assert store.content(record.record_id) is None
    with pytest.raises(ConflictError, match="content is kept only while a message is held"):
        store.save_content(record.record_id, content)


def test_reports_are_replaced_per_mta_and_a_claim_is_won_once(backend: Backend) -> None:
    a, b = backend.store("mta-a"), backend.store("mta-b")
    a.publish("policy", '{"checksum": "1"}')
    a.publish("policy", '{"checksum": "2"}')
    b.publish("policy", '{"checksum": "3"}')
    assert [(p.mta, p.body) for p in a.published("policy")] == [
        ("mta-a", '{"checksum": "2"}'), ("mta-b", '{"checksum": "3"}')]
    assert a.published("domains") == []
    assert [a.claim("digest:2026-11-23T08"), b.claim("digest:2026-11-23T08")] == [True, False]
    assert b.claim("digest:2026-11-23T09")


def test_viewing_is_an_audit_entry_on_the_record(backend: Backend) -> None:
    store = backend.store()
    record = hold(store, "ABC220")
    store.note("anna", AuditAction.VIEWED, record.record_id, "content")
    store.note("anna", AuditAction.SIGNED_IN, detail="from 127.0.0.1")
    [*_, viewed, signed] = store.audit_entries()
    assert (viewed.action, viewed.record_id, viewed.queue_id) == (
        AuditAction.VIEWED, record.record_id, "ABC220")
    assert (signed.action, signed.record_id) == (AuditAction.SIGNED_IN, 0)
    found = store.audit_search(actor="anna", action=AuditAction.VIEWED)
    assert [e.seq for e in found] == [viewed.seq]
    assert [e.seq for e in store.audit_search(limit=1)] == [signed.seq]
    assert [e.seq for e in store.audit_search(before_seq=signed.seq, limit=1)] == [viewed.seq]


def test_schema_3_reviewers_become_reviewer_accounts(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    with db:
        for statement in sql_module._SCHEMA:
            db.execute(statement.format(identity="INTEGER PRIMARY KEY AUTOINCREMENT"))
        db.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", (audit.GENESIS,))
        db.execute("INSERT INTO schema_version (version) VALUES (3)")
        db.execute("INSERT INTO reviewers (name, added_at, added_by) VALUES "
                   "('anna', '2026-01-01T00:00:00.000000+00:00', 'root')")
        db.execute("PRAGMA user_version = 3")
    db.close()
    store = SqliteRecords(tmp_path, mta="mta-a")
    try:
        assert [(u.name, u.role, u.has_password) for u in store.users()] == [
            ("anna", Role.REVIEWER, False)]
        assert store.reviewers() == ["anna"]
    finally:
        store.close()
