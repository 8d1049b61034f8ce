"""Who has been mailed: keyed hashes in the records store (SQLite here; PostgreSQL in
tests/integration/test_correspondents_store.py), seeded from a Postfix mail log, and the
`postwacht correspondents` command. Nothing in the store may name anybody."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postwacht.cli import main
from postwacht.core.vocabulary import Match, Scope
from postwacht.records import sql as sql_module
from postwacht.records.audit import GENESIS
from postwacht.records.correspondents import KINDS, Correspondents, domain_of
from postwacht.records.maillog import LINE_MAX, MailLog, lines, pairs
from postwacht.records.secret import derive, load_secret, secret_path
from postwacht.records.sql import SCHEMA_VERSION
from postwacht.records.sqlite import DB_NAME, SqliteRecords
from postwacht.records.store import CORRESPONDENTS_MAX, RecordsError

from tests.conftest import EXAMPLE_POLICY

KEY = derive(b"k" * 32, "correspondents")
OTHER_KEY = derive(b"o" * 32, "correspondents")
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
JAN = "jan@samen-veilig.nl"
PIET = "piet@samen-veilig.nl"
POSTWACHT = str(Path(sys.executable).with_name("postwacht"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRecords]:
    opened = SqliteRecords(tmp_path / "state", mta="mx1")
    yield opened
    opened.close()


@pytest.fixture
def known(store: SqliteRecords) -> Correspondents:
    return Correspondents(store, KEY)


# The hashes.

def test_the_four_kinds_of_one_pair_differ_and_each_depends_on_the_key(
    known: Correspondents, store: SqliteRecords,
) -> None:
    hashes = known.hashes(JAN, "anna@zorg.example")
    assert set(hashes) == set(KINDS)
    assert len(set(hashes.values())) == 4
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes.values())
    other = Correspondents(store, OTHER_KEY).hashes(JAN, "anna@zorg.example")
    assert not set(hashes.values()) & set(other.values())


def test_a_recipient_hashes_alike_in_every_spelling_of_it(known: Correspondents) -> None:
    plain = known.hashes(JAN, "anna@bücher.example")
    for spelling in ("<Anna@BÜCHER.example>", " anna@xn--bcher-kva.example ",
                     "ANNA@Bücher.Example."):
        assert known.hashes("Jan@Samen-Veilig.NL", spelling) == plain
    assert domain_of("<Anna@BÜCHER.example>") == "xn--bcher-kva.example"


def test_what_is_hashed_cannot_slide_between_sender_and_recipient(
    known: Correspondents,
) -> None:
    # With plain concatenation "a@b" + "c@d" and "a@bc" + "@d" could meet; NUL and a
    # prefix per kind keep every kind and every pair apart.
    pair = (Scope.SENDER, Match.ADDRESS)
    assert known.hashes("a@b.nl", "c@d.nl")[pair] != known.hashes("a@b.nlc", "@d.nl")[pair]
    # A bare name as an address is not that name as a domain.
    assert known.hashes(JAN, "zorg.example")[Scope.ORGANISATION, Match.ADDRESS] \
        != known.hashes(JAN, "x@zorg.example")[Scope.ORGANISATION, Match.DOMAIN]
    assert known.hashes(JAN, "x@zorg.example")[Scope.ORGANISATION, Match.ADDRESS] \
        == known.hashes(PIET, "x@zorg.example")[Scope.ORGANISATION, Match.ADDRESS]
    assert known.hashes(JAN, "x@zorg.example")[Scope.SENDER, Match.DOMAIN] \
        != known.hashes(JAN, "x@zorg.example")[Scope.ORGANISATION, Match.DOMAIN]


# Learning and asking.

def test_a_recipient_is_known_by_each_scope_and_match_it_was_learnt_under(
    known: Correspondents,
) -> None:
    known.learn(JAN, ["anna@zorg.example"], NOW)
    asked = ["<Anna@zorg.example>", "bert@zorg.example", "anna@elders.example"]
    since = NOW - dt.timedelta(days=1)

    def who(sender: str, scope: Scope, match: Match) -> frozenset[str]:
        return known.known(sender, asked, scope, match, since)

    assert who(JAN, Scope.SENDER, Match.ADDRESS) == {"<Anna@zorg.example>"}
    assert who(JAN, Scope.SENDER, Match.DOMAIN) == {"<Anna@zorg.example>",
                                                    "bert@zorg.example"}
    assert who(PIET, Scope.SENDER, Match.ADDRESS) == set()
    assert who(PIET, Scope.SENDER, Match.DOMAIN) == set()
    assert who(PIET, Scope.ORGANISATION, Match.ADDRESS) == {"<Anna@zorg.example>"}
    assert who(PIET, Scope.ORGANISATION, Match.DOMAIN) == {"<Anna@zorg.example>",
                                                           "bert@zorg.example"}
    assert known.count() == 4


def test_learning_again_moves_last_use_forward_never_back(known: Correspondents) -> None:
    known.learn(JAN, ["anna@zorg.example"], NOW)
    known.learn(JAN, ["anna@zorg.example"], NOW - dt.timedelta(days=300))  # an old log
    assert known.known(JAN, ["anna@zorg.example"], Scope.SENDER, Match.ADDRESS,
                       NOW - dt.timedelta(seconds=1)) == {"anna@zorg.example"}
    assert known.known(JAN, ["anna@zorg.example"], Scope.SENDER, Match.ADDRESS,
                       NOW + dt.timedelta(seconds=1)) == set()
    assert known.count() == 4


def test_entries_not_used_since_the_cut_off_expire(known: Correspondents) -> None:
    known.learn(JAN, ["old@zorg.example"], NOW - dt.timedelta(days=400))
    known.learn(JAN, ["new@elders.example"], NOW)
    assert known.expire(NOW - dt.timedelta(days=365)) == 4
    since = NOW - dt.timedelta(days=1000)
    asked = ["old@zorg.example", "new@elders.example"]
    assert known.known(JAN, asked, Scope.ORGANISATION, Match.ADDRESS, since) == {
        "new@elders.example"}
    assert known.count() == 4


def test_forget_with_a_sender_removes_that_pair_and_without_one_the_organisations(
    known: Correspondents,
) -> None:
    known.learn(JAN, ["anna@tpyo.example"], NOW)
    known.learn(PIET, ["anna@tpyo.example"], NOW)
    since = NOW - dt.timedelta(days=1)
    assert known.forget(JAN, "Anna@TPYO.example") == 2
    for match in Match:
        assert known.known(JAN, ["anna@tpyo.example"], Scope.SENDER, match, since) == set()
        assert known.known(PIET, ["anna@tpyo.example"], Scope.SENDER, match, since) == {
            "anna@tpyo.example"}
        assert known.known(JAN, ["anna@tpyo.example"], Scope.ORGANISATION, match, since) \
            == {"anna@tpyo.example"}
    assert known.forget(None, "anna@tpyo.example") == 2
    for match in Match:
        assert known.known(JAN, ["anna@tpyo.example"], Scope.ORGANISATION, match,
                           since) == set()
    assert known.forget(None, "anna@tpyo.example") == 0
    assert known.count() == 2  # Piet's own, as only his address could name them


def test_many_recipients_are_learnt_and_asked_in_bounded_calls(
    known: Correspondents, store: SqliteRecords,
) -> None:
    many = [f"r{n}@zorg{n % 7}.example" for n in range(2500)]  # 10000 hashes
    known.learn(JAN, many, NOW)
    assert known.known(JAN, many, Scope.SENDER, Match.ADDRESS, NOW) == set(many)
    assert known.count() == 2 * 2500 + 2 * 7
    with pytest.raises(ValueError, match="at most 4096"):
        store.remember_correspondents([f"{n:064x}" for n in range(CORRESPONDENTS_MAX + 1)],
                                      NOW)


def test_the_store_takes_hashes_only_never_an_address(store: SqliteRecords) -> None:
    with pytest.raises(ValueError, match="64 lower-case hex digits"):
        store.remember_correspondents(["anna@zorg.example"], NOW)
    with pytest.raises(ValueError, match="64 lower-case hex digits"):
        store.known_correspondents(["A" * 64], NOW)
    assert store.correspondents_count() == 0


def test_the_same_key_passes_the_check_and_another_is_refused_naming_the_key_file(
    store: SqliteRecords, tmp_path: Path,
) -> None:
    Correspondents(store, KEY).check_key()  # the first stores its fingerprint
    Correspondents(store, KEY).check_key()
    key_file = tmp_path / "state" / "postwacht.key"
    with pytest.raises(RecordsError, match=(
            "the records store's correspondents were hashed with another key: copy "
            f"{key_file} from the MTA that made it")):
        Correspondents(store, OTHER_KEY, key_file=key_file).check_key()
    with pytest.raises(RecordsError, match=r"copy postwacht\.key in the state directory"):
        Correspondents(store, OTHER_KEY).check_key()


# The schema.

def test_a_store_of_schema_4_gains_the_correspondents_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    with db:
        for statement in sql_module._SCHEMA:
            db.execute(statement.format(identity="INTEGER PRIMARY KEY AUTOINCREMENT"))
        for statement in sql_module._UPGRADE_4:
            db.execute(statement)
        db.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", (GENESIS,))
        db.execute("INSERT INTO schema_version (version) VALUES (4)")
        db.execute("INSERT INTO users (name, role, created_at, created_by) VALUES "
                   "('anna', 'admin', '2026-01-01T00:00:00.000000+00:00', 'root')")
        db.execute("PRAGMA user_version = 4")
    db.close()
    store = SqliteRecords(tmp_path, mta="mx1")
    try:
        assert [u.name for u in store.users()] == ["anna"]
        Correspondents(store, KEY).learn(JAN, ["anna@zorg.example"], NOW)
        assert store.correspondents_count() == 4
        assert store.correspondents_key("0123456789abcdef")
    finally:
        store.close()
    check = sqlite3.connect(tmp_path / DB_NAME)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    assert check.execute("SELECT version FROM schema_version").fetchall() == [(5,)]
    tables = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(sql_module.TABLES) <= tables
    check.close()


# The mail log.

OWNED = ("samen-veilig.nl", "veiligthuisutrecht.nl")


def owned(address: str) -> bool:
    return domain_of(address) in OWNED


def outside(address: str) -> bool:
    return bool(domain_of(address)) and not owned(address)


SAMPLE = [
    # A plain delivery, traditional syslog time.
    "Nov 23 10:00:00 mx1 postfix/qmgr[123]: 4ABC123DEF: from=<jan@samen-veilig.nl>, "
    "size=1234, nrcpt=2 (queue active)",
    "Nov 23 10:00:01 mx1 postfix/smtp[456]: 4ABC123DEF: to=<anna@zorg.example>, "
    "relay=mx.zorg.example[192.0.2.1]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok)",
    # An owned recipient in the same message: not an outside correspondent.
    "Nov 23 10:00:01 mx1 postfix/lmtp[457]: 4ABC123DEF: to=<piet@samen-veilig.nl>, "
    "relay=mail.samen-veilig.nl[private/dovecot-lmtp], delay=1, delays=0.1/0/0/0.9, "
    "dsn=2.0.0, status=sent (250 2.0.0 <piet@samen-veilig.nl> Saved)",
    "Nov 23 10:00:01 mx1 postfix/qmgr[123]: 4ABC123DEF: removed",
    # The same short queue id reused for a bounce: the null sender teaches nothing.
    "Nov  3 10:05:00 mx1 postfix/qmgr[123]: 4ABC123DEF: from=<>, size=3000, nrcpt=1 "
    "(queue active)",
    "Nov  3 10:05:01 mx1 postfix/smtp[456]: 4ABC123DEF: to=<spam@elders.example>, "
    "relay=mx.elders.example[192.0.2.9]:25, delay=0.3, delays=0/0/0.1/0.2, dsn=2.0.0, "
    "status=sent (250 Ok)",
    "Nov  3 10:05:01 mx1 postfix/qmgr[123]: 4ABC123DEF: removed",
    # Postfix's own log file: ISO 8601, an instance name, a long queue id, orig_to, a
    # deferral and then a delivery, a reused connection.
    "2026-11-23T10:00:00.123456+00:00 mx2 postfix-out/qmgr[77]: 4Zx1yK2b3cz9bcd: "
    "from=<Piet@Samen-Veilig.NL>, size=999, nrcpt=1 (queue active)",
    "2026-11-23T10:00:02.000001+00:00 mx2 postfix-out/smtp[78]: 4Zx1yK2b3cz9bcd: "
    "to=<dossier@gemeente.example>, orig_to=<team@samen-veilig.nl>, "
    "relay=none, delay=2, delays=0/0/2/0, dsn=4.4.1, status=deferred (connect to "
    "mx.gemeente.example[192.0.2.3]:25: Connection refused)",
    "2026-11-23T11:00:00.000000+00:00 mx2 postfix-out/qmgr[77]: 4Zx1yK2b3cz9bcd: "
    "from=<Piet@Samen-Veilig.NL>, size=999, nrcpt=1 (queue active)",
    "2026-11-23T11:00:01.5+00:00 mx2 postfix-out/smtp[79]: 4Zx1yK2b3cz9bcd: "
    "to=<dossier@gemeente.example>, orig_to=<team@samen-veilig.nl>, "
    "relay=mx.gemeente.example[192.0.2.3]:25, conn_use=2, delay=3601, "
    "delays=3600/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 123)",
    "2026-11-23T11:00:01.6+00:00 mx2 postfix-out/qmgr[77]: 4Zx1yK2b3cz9bcd: removed",
    # A sender outside the organisation (relayed mail) teaches nothing.
    "Nov 23 10:10:00 mx1 postfix/qmgr[123]: 5DEF456ABC: from=<vreemd@elders.example>, "
    "size=10, nrcpt=1 (queue active)",
    "Nov 23 10:10:01 mx1 postfix/smtp[456]: 5DEF456ABC: to=<x@zorg.example>, "
    "relay=mx.zorg.example[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, "
    "status=sent (250 Ok)",
    # A bounce of an internal sender's mail: no delivery.
    "Nov 23 10:20:00 mx1 postfix/qmgr[123]: 6ABCDEF012: from=<jan@samen-veilig.nl>, "
    "size=10, nrcpt=1 (queue active)",
    "Nov 23 10:20:01 mx1 postfix/smtp[456]: 6ABCDEF012: to=<weg@zorg.example>, "
    "relay=mx.zorg.example[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.1.1, "
    "status=bounced (host said: 550 5.1.1 no such user)",
    "Nov 23 10:20:01 mx1 postfix/bounce[999]: 6ABCDEF012: sender non-delivery "
    "notification: 7ABCDEF012",
    # Other programs, garbage, a very long line, bytes that were not UTF-8.
    "Nov 23 10:30:00 mx1 CRON[1]: (root) CMD (run-parts /etc/cron.hourly)",
    "this is not a log line",
    "Nov 23 10:30:00 mx1 postfix/smtp[456]: 8ABCDEF012: to=<" + "x" * 100_000 + ">",
    "Nov 23 10:30:00 mx1 postfix/qmgr[123]: 9ABCDEF012: from=<jan@samen-veilig.nl>, "
    "size=10, nrcpt=1 (queue active)",
    "Nov 23 10:30:01 mx1 postfix/smtp[456]: 9ABCDEF012: to=<b\ufffd\ufffdr@zorg.example>, "
    "relay=mx.zorg.example[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, "
    "status=sent (250 Ok)",
]


def test_the_log_yields_each_delivery_of_an_internal_sender_to_an_outside_recipient() -> None:
    log = MailLog(owned, outside)
    found = list(log.pairs(SAMPLE))
    assert found == [("jan@samen-veilig.nl", "anna@zorg.example"),
                     ("Piet@Samen-Veilig.NL", "dossier@gemeente.example")]
    assert (log.tally.lines, log.tally.delivered) == (len(SAMPLE), 2)
    assert log.tally.skipped == 3  # not a log line, too long, a garbled address


def test_the_module_function_reads_alike() -> None:
    assert list(pairs(SAMPLE, owned, outside)) == list(MailLog(owned, outside).pairs(SAMPLE))


def test_a_delivery_whose_sender_line_was_never_seen_or_was_removed_teaches_nothing() -> None:
    sent = ("Nov 23 10:00:01 mx1 postfix/smtp[456]: 4ABC123DEF: to=<a@zorg.example>, "
            "relay=mx.zorg.example[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, "
            "status=sent (250 Ok)")
    taken = ("Nov 23 10:00:00 mx1 postfix/qmgr[123]: 4ABC123DEF: from=<jan@samen-veilig.nl>, "
             "size=1, nrcpt=1 (queue active)")
    removed = "Nov 23 10:00:02 mx1 postfix/qmgr[123]: 4ABC123DEF: removed"
    assert list(pairs([sent], owned, outside)) == []
    assert list(pairs([taken, removed, sent], owned, outside)) == []
    # Another host's message under the same queue id is another message.
    other_host = taken.replace(" mx1 ", " mx2 ")
    assert list(pairs([other_host, sent], owned, outside)) == []
    assert list(pairs([taken, sent], owned, outside)) == [(JAN, "a@zorg.example")]


def test_the_open_messages_remembered_are_bounded_oldest_forgotten_first() -> None:
    def taken(n: int) -> str:
        return (f"Nov 23 10:00:00 mx1 postfix/qmgr[1]: {n:010X}: from=<jan@samen-veilig.nl>, "
                "size=1, nrcpt=1 (queue active)")

    def sent(n: int) -> str:
        return (f"Nov 23 10:00:01 mx1 postfix/smtp[2]: {n:010X}: to=<r{n}@zorg.example>, "
                "relay=mx.zorg.example[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, "
                "dsn=2.0.0, status=sent (250 Ok)")

    log = MailLog(owned, outside, queue_max=3)
    found = list(log.pairs([*(taken(n) for n in range(1, 6)), sent(1), sent(2), sent(5)]))
    assert found == [(JAN, "r5@zorg.example")]


def test_a_file_of_one_huge_line_and_bad_bytes_is_read_in_bounded_pieces() -> None:
    good = SAMPLE[0] + "\n" + SAMPLE[1] + "\n"
    raw = b"x" * (10 * LINE_MAX) + b"\n" + b"\xff\xfe garbage\n" + good.encode()
    stream = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="replace")
    read = list(lines(stream))
    assert max(len(line) for line in read) <= LINE_MAX + 1
    log = MailLog(owned, outside)
    assert list(log.pairs(read)) == [(JAN, "anna@zorg.example")]
    assert log.tally.skipped == 2


# The command, end to end, and what lands in the store.

def write_log(path: Path) -> Path:
    body = "\n".join(SAMPLE).encode() + (  # bytes that are not UTF-8, in an address
        b"\nNov 23 11:00:00 mx1 postfix/qmgr[1]: BBBBBBBBBB: from=<j\xffn@samen-veilig.nl>, "
        b"size=1, nrcpt=1 (queue active)\n")
    path.write_bytes(body)
    return path


def test_import_learns_from_a_mail_log_and_the_store_names_nobody(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    SqliteRecords(state, mta="mx1").close()  # the daemon made the store
    log = write_log(tmp_path / "mail.log")
    code = main(["correspondents", "import", "maillog", str(log), "--policy",
                 str(EXAMPLE_POLICY), "--state", str(state)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out == (f"learned 2 correspondents of 2 senders from 2 delivered recipients in "
                   f"{log} (4 lines skipped)\n")
    assert secret_path(state).stat().st_mode & 0o777 == 0o600

    assert main(["correspondents", "count", "--state", str(state)]) == 0
    assert capsys.readouterr().out.startswith("8 entries")
    store = SqliteRecords(state, create=False, mta="mx1")
    try:
        learnt = Correspondents(store, derive(load_secret(state, create=False),
                                              "correspondents"))
        assert learnt.known("PIET@samen-veilig.nl", ["dossier@gemeente.example"],
                            Scope.SENDER, Match.ADDRESS, NOW) == {"dossier@gemeente.example"}
    finally:
        store.close()
    assert_names_nobody(state / DB_NAME)


def assert_names_nobody(path: Path) -> None:
    """Every text in every column of every table, the WAL included once checkpointed."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        texts: list[str] = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in db.execute(f"SELECT * FROM {table}"):
                texts += [str(v) for v in row if v is not None]
    finally:
        db.close()
    raw = path.read_bytes().lower()
    for name in ("jan", "piet", "anna", "dossier", "samen-veilig", "zorg.example",
                 "gemeente", "elders", "@"):
        assert not [t for t in texts if name in t.lower()], name
        assert name == "@" or name.encode() not in raw, name  # '@' is a byte of the header


def test_import_reads_standard_input_and_gzip_and_names_an_unreadable_file(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    SqliteRecords(state, mta="mx1").close()
    packed = tmp_path / "mail.log.1.gz"
    packed.write_bytes(gzip.compress(write_log(tmp_path / "plain").read_bytes()))
    result = subprocess.run(
        [POSTWACHT, "correspondents", "import", "maillog", str(packed), "-",
         str(tmp_path / "missing.log"), "--policy", str(EXAMPLE_POLICY), "--state",
         str(state)],
        input="\n".join(SAMPLE[:2]).encode(), capture_output=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout.decode().splitlines() == [
        f"learned 2 correspondents of 2 senders from 2 delivered recipients in {packed} "
        "(4 lines skipped)",
        "learned 1 correspondent of 1 sender from 1 delivered recipient in standard input "
        "(0 lines skipped)",
    ]
    assert result.stderr.decode() == (
        f"postwacht correspondents import: {tmp_path / 'missing.log'}: cannot read it: "
        "No such file or directory\n")


def test_forget_and_expire_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    SqliteRecords(state, mta="mx1").close()
    log = write_log(tmp_path / "mail.log")
    base = ["--state", str(state)]
    assert main(["correspondents", "import", "maillog", str(log), "--policy",
                 str(EXAMPLE_POLICY), *base]) == 0
    assert main(["correspondents", "forget", "--from", JAN, "--to", "anna@zorg.example",
                 *base]) == 0
    assert main(["correspondents", "forget", "--to", "anna@zorg.example", *base]) == 0
    assert main(["correspondents", "expire", "--days", "30", *base]) == 0
    assert main(["correspondents", "count", *base]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["forgot 2 entries", "forgot 2 entries",
                       "expired 0 entries not used in 30 days",
                       "4 entries (keyed hashes; each delivered recipient makes up to four)"]
    with pytest.raises(SystemExit) as usage:
        main(["correspondents", "expire", "--days", "0", *base])
    assert usage.value.code == 2


def test_a_key_that_did_not_make_the_stores_hashes_is_refused_by_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    SqliteRecords(state, mta="mx1").close()
    log = write_log(tmp_path / "mail.log")
    command = ["correspondents", "import", "maillog", str(log), "--policy",
               str(EXAMPLE_POLICY), "--state", str(state)]
    assert main(command) == 0
    secret_path(state).unlink()  # another MTA's state directory, without the key copied
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err == ("postwacht correspondents import: the records store's correspondents "
                   f"were hashed with another key: copy {secret_path(state)} from the MTA "
                   "that made it\n")


def test_import_with_an_invalid_policy_learns_nothing(
    tmp_path: Path, write_policy: Callable[[str], Path],
) -> None:
    state = tmp_path / "state"
    SqliteRecords(state, mta="mx1").close()
    bad = write_policy("version: 1\norganisaton: X\n")
    code = main(["correspondents", "import", "maillog", str(write_log(tmp_path / "m")),
                 "--policy", str(bad), "--state", str(state)])
    assert code == 1  # load_policy names every problem (tests/unit/test_cli.py)
    assert not secret_path(state).exists()


def test_the_command_prints_no_address_from_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    SqliteRecords(state, mta="mx1").close()
    log = write_log(tmp_path / "mail.log")
    main(["correspondents", "import", "maillog", str(log), "--policy", str(EXAMPLE_POLICY),
          "--state", str(state)])
    out, err = capsys.readouterr()
    for name in ("jan", "piet", "anna", "dossier", "zorg.example", "gemeente", "@"):
        assert name not in (out + err).replace(str(log), "").lower()
