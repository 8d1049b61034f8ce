"""Who has been mailed, in the store several MTAs share: a real PostgreSQL 15 (the lab's
private cluster on loopback). The same statements as SQLite's (tests/unit/
test_correspondents.py); here what only a shared server shows: MTAs learning at once,
a database of schema 4 migrated, and a dump of every text column that names nobody."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from postwacht.cli import main
from postwacht.core.vocabulary import Match, Scope
from postwacht.records import sql as sql_module
from postwacht.records.audit import GENESIS
from postwacht.records.correspondents import Correspondents
from postwacht.records.postgres import POSTGRES, PostgresRecords
from postwacht.records.secret import derive, load_secret
from postwacht.records.sql import SCHEMA_VERSION
from postwacht.records.store import RecordsError

from tests.conftest import EXAMPLE_POLICY
from tests.labs.postgres import PostgresLab
from tests.unit.test_correspondents import JAN, KEY, NOW, OTHER_KEY, PIET, SAMPLE

NAMES = ("jan", "piet", "anna", "dossier", "samen-veilig", "zorg.example", "gemeente",
         "elders", "@")


@pytest.fixture
def url(postgres_lab: PostgresLab) -> str:
    return postgres_lab.new_database()


@pytest.fixture
def store(url: str) -> Iterator[PostgresRecords]:
    opened = PostgresRecords(url, mta="mta-a")
    yield opened
    opened.close()


def test_learnt_recipients_are_known_by_scope_and_match_and_expire(
    store: PostgresRecords,
) -> None:
    known = Correspondents(store, KEY)
    known.learn(JAN, ["anna@zorg.example"], NOW - dt.timedelta(days=10))
    known.learn(JAN, ["anna@zorg.example"], NOW)
    known.learn(JAN, ["anna@zorg.example"], NOW - dt.timedelta(days=20))  # never back
    known.learn(PIET, ["oud@elders.example"], NOW - dt.timedelta(days=400))
    since = NOW - dt.timedelta(seconds=1)
    asked = ["anna@zorg.example", "bert@zorg.example"]
    assert known.known(JAN, asked, Scope.SENDER, Match.ADDRESS, since) == {"anna@zorg.example"}
    assert known.known(JAN, asked, Scope.SENDER, Match.DOMAIN, since) == set(asked)
    assert known.known(PIET, asked, Scope.SENDER, Match.DOMAIN, since) == set()
    assert known.known(PIET, asked, Scope.ORGANISATION, Match.ADDRESS, since) == {
        "anna@zorg.example"}
    assert known.count() == 8
    assert known.expire(NOW - dt.timedelta(days=365)) == 4
    assert known.forget(JAN, "anna@zorg.example") == 2
    assert known.count() == 2


def test_mtas_learning_overlapping_recipients_at_once_neither_fail_nor_lose_any(
    url: str,
) -> None:
    stores = [PostgresRecords(url, mta=f"mta-{n}") for n in range(4)]
    recipients = [f"r{n}@zorg{n % 5}.example" for n in range(800)]
    start = threading.Barrier(len(stores))
    failures: list[Exception] = []

    def learn(store: PostgresRecords, order: int) -> None:
        start.wait()
        try:  # each in another order: rows are locked in one order all the same
            Correspondents(store, KEY).learn(
                JAN, recipients if order % 2 else list(reversed(recipients)), NOW)
        except RecordsError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=learn, args=(s, n)) for n, s in enumerate(stores)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        assert stores[0].correspondents_count() == 2 * 800 + 2 * 5
    finally:
        for s in stores:
            s.close()


def test_the_key_check_is_shared_by_every_mta(url: str) -> None:
    first, second = PostgresRecords(url, mta="mta-a"), PostgresRecords(url, mta="mta-b")
    try:
        Correspondents(first, KEY).check_key()
        Correspondents(second, KEY).check_key()
        with pytest.raises(RecordsError, match="hashed with another key: copy /var/x/postwacht"):
            Correspondents(second, OTHER_KEY, key_file=Path("/var/x/postwacht.key")).check_key()
    finally:
        first.close()
        second.close()


def test_a_database_of_schema_4_is_migrated_keeping_its_records(
    postgres_lab: PostgresLab, url: str,
) -> None:
    for statement in sql_module._SCHEMA:
        postgres_lab.sql(url, statement.format(identity=POSTGRES.identity))
    for statement in sql_module._UPGRADE_4:
        postgres_lab.sql(url, statement)
    postgres_lab.sql(url, "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, %s)",
                     (GENESIS,))
    postgres_lab.sql(url, "INSERT INTO schema_version (version) VALUES (4)")
    postgres_lab.sql(url, "INSERT INTO users (name, role, created_at, created_by) VALUES "
                          "('anna', 'admin', '2026-01-01T00:00:00.000000+00:00', 'root')")
    store = PostgresRecords(url, mta="mta-a")
    try:
        assert [u.name for u in store.users()] == ["anna"]
        Correspondents(store, KEY).learn(JAN, ["x@zorg.example"], NOW)
        assert store.correspondents_count() == 4
    finally:
        store.close()
    assert postgres_lab.sql(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 5
    PostgresRecords(url, mta="mta-b").close()  # opening again changes nothing


def test_import_into_postgresql_keeps_no_address_in_any_column(
    postgres_lab: PostgresLab, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    PostgresRecords(url, mta="mta-a").close()
    log = tmp_path / "mail.log"
    log.write_text("\n".join(SAMPLE) + "\n", encoding="utf-8")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    code = main(["correspondents", "import", "maillog", str(log), "--policy",
                 str(EXAMPLE_POLICY), "--state", str(state), "--records", url])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.startswith("learned 2 correspondents of 2 senders from 2 delivered")
    store = PostgresRecords(url, mta="mta-a")
    try:
        learnt = Correspondents(store, derive(load_secret(state, create=False),
                                              "correspondents"))
        assert learnt.count() == 8
        assert learnt.known(JAN, ["Anna@Zorg.example"], Scope.SENDER, Match.ADDRESS,
                            NOW) == {"Anna@Zorg.example"}
    finally:
        store.close()

    columns = postgres_lab.sql(
        url, "SELECT table_name, column_name FROM information_schema.columns WHERE "
             "table_schema = current_schema()")
    assert {"correspondents", "correspondents_key"} <= {t for t, _ in columns}
    texts: list[str] = []
    for table, column in columns:
        texts += [str(v) for (v,) in postgres_lab.sql(
            url, f'SELECT "{column}"::text FROM "{table}"') if v is not None]
    assert len(texts) > 8
    for name in NAMES:
        assert not [t for t in texts if name in t.lower()], name
