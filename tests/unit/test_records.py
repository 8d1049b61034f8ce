"""The SQLite records store: never replaced, never silently lost, private on disk; and
which store a records spec opens. (What both backends do alike:
tests/integration/test_records_backends.py.)"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from postwacht.core.decide import RecipientVerdict
from postwacht.core.nta7516 import route as nta7516_route
from postwacht.core.text import ROUTE_MAX
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.locate import open_records
from postwacht.records.sql import SCHEMA_VERSION, redact
from postwacht.records.sqlite import DB_NAME, SqliteRecords
from postwacht.records.store import Hold, RecordsError, ReleaseMode, Review, Status

LOOKALIKE = RecipientVerdict("x@samen-veiIig.nl", ("samen-veiiig.nl",), Action.QUARANTINE,
                             Rule.LOOKALIKE, "looks like ours", "samen-veilig.nl")
RETIRED = RecipientVerdict("d@bjzutrecht.nl", ("bjzutrecht.nl",), Action.QUARANTINE,
                           Rule.RETIRED, "given up", "bjzutrecht.nl")


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the README's manual start, as root
    yield
    os.umask(old)


def hold(store: SqliteRecords, queue_id: str, verdict: RecipientVerdict,
         sender: str = "a@samen-veilig.nl") -> None:
    store.record_quarantine(Hold(store.mta, queue_id, uuid.uuid4().hex, sender, (verdict,),
                                 verdict.rule, verdict.reason, "abc"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_second_hold_under_one_queue_id_is_added_never_replaces_the_first(
    tmp_path: Path,
) -> None:
    store = SqliteRecords(tmp_path)
    hold(store, "ABCDEF12", RETIRED)
    hold(store, "ABCDEF12", LOOKALIKE)
    records = store.records_of("ABCDEF12")
    assert [r.rule for r in records] == [Rule.RETIRED, Rule.LOOKALIKE]
    assert records[0].needs_force
    assert not records[1].needs_force
    store.request(records[1].record_id, Review.RELEASE, ReleaseMode.PLAIN, "po", "checked")
    assert [r.status for r in store.records_of("ABCDEF12")] == [Status.HELD, Status.REQUESTED]
    store.close()


def test_a_store_of_the_first_schema_is_migrated_in_place_keeping_every_row(
    tmp_path: Path,
) -> None:
    old = sqlite3.connect(tmp_path / DB_NAME)
    old.executescript("""
        CREATE TABLE quarantine (queue_id TEXT PRIMARY KEY, held_at TEXT NOT NULL,
            sender TEXT NOT NULL, recipients TEXT NOT NULL, rule TEXT NOT NULL,
            reason TEXT NOT NULL, policy TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'held');
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
            actor TEXT NOT NULL, action TEXT NOT NULL, queue_id TEXT NOT NULL,
            reason TEXT NOT NULL);
        CREATE TABLE retired_attempts (at TEXT NOT NULL, sender TEXT NOT NULL,
            client TEXT NOT NULL, domain TEXT NOT NULL);
    """)
    rows = json.dumps([{"address": RETIRED.address, "domains": list(RETIRED.domains),
                        "action": "quarantine", "rule": "retired", "reason": "given up",
                        "matched": "bjzutrecht.nl"}])
    for n, status in enumerate(("held", "released", "held")):
        old.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?, 'retired', 'r', 'p', ?)",
                    (f"ABC00{n}", f"2024-01-0{n + 1}T00:00:00+00:00", "s@x.nl", rows, status))
    old.commit()
    old.close()

    store = SqliteRecords(tmp_path, mta="mx1")
    records = store.quarantine_records(None)
    assert [r.queue_id for r in records] == ["ABC000", "ABC001", "ABC002"]
    assert {r.mta for r in records} == {"mx1"}
    assert len({r.key for r in records}) == 3
    assert store.held_summary()[0] == 2
    hold(store, "ABC000", LOOKALIKE)  # the old primary key is gone: a reused id is added
    assert len(store.records_of("ABC000")) == 2
    store.close()
    check = sqlite3.connect(tmp_path / DB_NAME)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check.close()
    SqliteRecords(tmp_path).close()  # opening again changes nothing


def test_a_store_of_a_newer_postwacht_is_refused_and_left_alone(tmp_path: Path) -> None:
    SqliteRecords(tmp_path).close()
    newer = sqlite3.connect(tmp_path / DB_NAME)
    newer.execute("PRAGMA user_version = 7")
    newer.close()
    with pytest.raises(RecordsError, match=f"schema 7, newer than this Postwacht's "
                                          f"{SCHEMA_VERSION}: upgrade"):
        SqliteRecords(tmp_path)
    check = sqlite3.connect(tmp_path / DB_NAME)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 7
    check.close()


def test_a_deleted_store_fails_every_later_write_even_once_a_new_file_appears(
    tmp_path: Path,
) -> None:
    store = SqliteRecords(tmp_path)
    hold(store, "ABC001", LOOKALIKE)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / (DB_NAME + suffix)).unlink(missing_ok=True)
    with pytest.raises(RecordsError, match="is gone"):
        hold(store, "ABC002", LOOKALIKE)
    SqliteRecords(tmp_path).close()  # someone (or something) makes a fresh file
    with pytest.raises(RecordsError, match="unusable"):
        hold(store, "ABC003", LOOKALIKE)
    with pytest.raises(RecordsError):
        store.held_summary()
    store.close()


def test_a_replaced_store_is_not_written(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path)
    other = tmp_path / "other"
    SqliteRecords(other).close()
    os.replace(other / DB_NAME, tmp_path / DB_NAME)
    with pytest.raises(RecordsError, match="replaced"):
        hold(store, "ABC001", LOOKALIKE)
    store.close()


def test_an_overwritten_store_is_not_written(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path)
    hold(store, "ABC001", LOOKALIKE)
    with (tmp_path / DB_NAME).open("r+b") as f:
        f.write(os.urandom(8192))
    with pytest.raises(RecordsError, match="overwritten"):
        hold(store, "ABC002", LOOKALIKE)
    store.close()


def _fill(store: SqliteRecords) -> None:
    for n in range(300):
        hold(store, f"ABC{n:03d}", LOOKALIKE, sender="s" * 200)


def _damage_a_page(path: Path) -> None:
    """Overwrite the start of the quarantine table's root page (read from the file as it
    is: the checkpointed main file, without the daemon's cache)."""
    look = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    root = look.execute("SELECT rootpage FROM sqlite_master WHERE name = 'quarantine'"
                        ).fetchone()[0]
    size = look.execute("PRAGMA page_size").fetchone()[0]
    look.close()
    with path.open("r+b") as f:
        f.seek(size * (root - 1) + 40)
        f.write(b"\xff" * 200)


def test_a_damaged_store_is_refused_at_open(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path)
    _fill(store)
    store.close()  # the last connection checkpoints into the main file
    _damage_a_page(tmp_path / DB_NAME)
    with pytest.raises(RecordsError, match=r"damaged|malformed"):
        SqliteRecords(tmp_path)


def test_damage_while_open_is_found_by_the_periodic_check(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path, check_interval=0)
    _fill(store)
    checkpoint = sqlite3.connect(tmp_path / DB_NAME)
    checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint.close()
    _damage_a_page(tmp_path / DB_NAME)
    with pytest.raises(RecordsError):
        hold(store, "ABD001", LOOKALIKE)
    with pytest.raises(RecordsError, match="unusable"):
        store.held_summary()
    store.close()


def test_review_commands_never_create_a_store(tmp_path: Path) -> None:
    with pytest.raises(RecordsError, match="no records store"):
        SqliteRecords(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()


@pytest.mark.usefixtures("umask_022")
def test_a_new_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = SqliteRecords(state)
    hold(store, "ABC001", LOOKALIKE)
    assert mode(state) == 0o750
    for suffix in ("", "-wal", "-shm"):
        assert mode(state / (DB_NAME + suffix)) == 0o640, suffix
    store.close()


@pytest.mark.usefixtures("umask_022")
def test_a_loose_existing_store_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    SqliteRecords(state).close()
    state.chmod(0o777)
    (state / DB_NAME).chmod(0o666)
    SqliteRecords(state).close()
    assert mode(state) == 0o750
    assert mode(state / DB_NAME) == 0o640


def test_text_from_outside_is_stored_escaped_and_bounded(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path)
    latin1 = b"caf\xe9@samen-veilig.nl".decode("utf-8", "surrogateescape")
    hold(store, "ABC001", LOOKALIKE, sender=latin1)
    store.record_retired_attempt("x\n2024-01-01 forged", "smtp from 10.0.0.1" + "x" * 900,
                                 "bjzutrecht.nl")
    [record] = store.records_of("ABC001")
    assert record.sender == "caf\\xe9@samen-veilig.nl"
    [attempt] = store.retired_attempts(record.held_at.replace(year=2000))
    assert attempt.sender == "x\\n2024-01-01 forged"
    assert len(attempt.client) < 400
    store.close()


def test_no_records_spec_is_the_sqlite_file_under_the_state_directory(tmp_path: Path) -> None:
    store = open_records(None, tmp_path, create=True, mta="mx1")
    assert isinstance(store, SqliteRecords)
    assert (store.path, store.mta) == (tmp_path / DB_NAME, "mx1")
    store.close()
    with pytest.raises(RecordsError, match="no records store"):
        open_records(None, tmp_path / "none", create=False, mta="mx1")


def test_an_unknown_records_spec_is_named_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(RecordsError) as refused:
        open_records("mysql://po:s3cret@db.example/records", tmp_path, create=True, mta="mx1")
    assert "mysql://po:***@db.example/records" in str(refused.value)
    assert "postgresql://USER@HOST" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_an_unreachable_postgresql_fails_quickly_and_hides_the_password(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    for url in ("postgresql://po:s3cret@127.0.0.1:1/records",
                "postgres://po@127.0.0.1:1/records?password=s3cret&sslmode=disable"):
        with pytest.raises(RecordsError, match="cannot prepare the records schema") as failed:
            open_records(url, tmp_path, create=True, mta="mx1")
        assert "s3cret" not in str(failed.value)
        assert "***" in str(failed.value)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://po:pw@db/records", "postgresql://po:***@db/records"),
    ("postgresql://po:p%40w@db:5432/records", "postgresql://po:***@db:5432/records"),
    ("postgresql://po@db/records?password=pw&x=1", "postgresql://po@db/records?password=***&x=1"),
    ("postgresql://db/records", "postgresql://db/records"),
    ("postgresql://po@db:5432/records", "postgresql://po@db:5432/records"),
    ("postgresql://po:p@ss@db/records", "postgresql://po:***@db/records"),
])
def test_redact_hides_a_password_wherever_the_url_has_it(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_store_on_sqlite_never_loads_the_postgresql_driver(tmp_path: Path) -> None:
    script = ("import sys\n"
              "from postwacht.records.locate import open_records\n"
              f"open_records(None, {str(tmp_path)!r}, create=True, mta='mx1').close()\n"
              "print(sorted(m for m in sys.modules if m.startswith('psycopg')))\n")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_a_long_nta7516_route_is_kept_whole_for_the_release(tmp_path: Path) -> None:
    hosts = [f"mx{n:02d}.{'zorgmail-secure-gateway-' * 8}example" for n in range(16)]
    route = nta7516_route(hosts)
    assert len(route) <= ROUTE_MAX
    assert route.startswith(f"nta7516:[{hosts[0]}]:25,[{hosts[1]}]:25,")  # by preference
    store = SqliteRecords(tmp_path)
    store.record_quarantine(Hold(store.mta, "ABCDEF12", uuid.uuid4().hex, "a@samen-veilig.nl",
                                 (LOOKALIKE,), Rule.LOOKALIKE, "held", "abc", route=route))
    [record] = store.records_of("ABCDEF12")
    assert record.route == route  # the release compares it with the queue file's FILTER
