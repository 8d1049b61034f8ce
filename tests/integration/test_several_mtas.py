"""Two MTAs, one quarantine: two private Postfix instances, each with its own daemon and
release helper, sharing one records database in the PostgreSQL lab.

A reviewer here is a process with database access only: it is given the records URL and
an empty state directory, never either daemon's, and no Postfix configuration. It sees
the mail held on both MTAs at once; what it asks for is carried out by the daemon (and
release helper) of the MTA that holds the message. Also: two reviewers at once, a queue
id that two records claim, the audit trail checked and exported, and PostgreSQL going
away while mail flows (holds wait at the sender, all other mail goes on) and coming back
without a restart of the daemon.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import signal
import smtplib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from postwacht.records.postgres import PostgresRecords
from postwacht.records.store import AuditAction, Hold, QuarantineRecord, Status

from tests.integration.conftest import POSTWACHT, Lab, Ports, held_for, running_lab
from tests.labs.postgres import PostgresLab
from tests.labs.util import DEADLINE, poll

SENDER = "medewerker@samen-veilig.nl"
QUARANTINE_HEADER = b"X-Postwacht-Quarantine"


@dataclass
class TwoMtas:
    a: Lab
    b: Lab
    records: str
    """The URL of the database both MTAs share."""
    postgres: PostgresLab
    reviewer_state: Path
    """An empty directory: the reviewer's --state (the store is in PostgreSQL)."""

    def postwacht(self, group: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`postwacht GROUP ... ARGS` as a reviewer runs it: the records URL only."""
        return subprocess.run(self.command(group, *args), capture_output=True, text=True,
                              timeout=90, check=False)

    def command(self, group: str, *args: str) -> list[str]:
        return [POSTWACHT, group, "--state", str(self.reviewer_state),
                "--records", self.records, *args]

    def listed(self) -> list[dict[str, Any]]:
        result = self.postwacht("quarantine", "list", "--json")
        assert result.returncode == 0, result.stderr
        listing: list[dict[str, Any]] = json.loads(result.stdout)
        return listing

    def store(self) -> PostgresRecords:
        """The store as the test reads it (to look, and to write what Postfix cannot)."""
        return PostgresRecords(self.records, mta="test")

    def record(self, record_id: int) -> QuarantineRecord:
        store = self.store()
        try:
            return store.record(record_id)
        finally:
            store.close()

    def verify(self) -> subprocess.CompletedProcess[str]:
        return self.postwacht("audit", "verify")

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.postgres.sql(self.records, statement, params)


@pytest.fixture(scope="module")
def mtas(postgres_lab: PostgresLab) -> Iterator[TwoMtas]:
    records = postgres_lab.new_database()
    with running_lab("postwacht-mta-a-", mta="mta-a", records=records) as a, \
            running_lab("postwacht-mta-b-", mta="mta-b", records=records) as b, \
            tempfile.TemporaryDirectory(prefix="postwacht-reviewer-") as state:
        yield TwoMtas(a, b, records, postgres_lab, Path(state))
        assert list(Path(state).iterdir()) == [], "the reviewer wrote into its --state"


@pytest.fixture
def postgres_comes_back(postgres_lab: PostgresLab) -> Iterator[PostgresLab]:
    """PostgreSQL running again after the test, whatever happened in it: the lab is
    shared by the whole run."""
    try:
        yield postgres_lab
    finally:
        if not postgres_lab.running:
            postgres_lab.start()


def marker() -> str:
    return uuid.uuid4().hex[:12]


def hold(lab: Lab, label: str) -> tuple[str, str, str]:
    """A message to a look-alike of our domain, held on `lab`: marker, recipient, queue id."""
    m = marker()
    recipient = f"{label}-{m}@samen-veiIig.nl"
    assert lab.postfix.submit(SENDER, [recipient], m) == {}
    return m, recipient, str(held_for(lab, recipient)["queue_id"])


def listed_as(mtas: TwoMtas, queue_id: str) -> list[dict[str, Any]]:
    return [r for r in mtas.listed() if r["queue_id"] == queue_id]


def still_held(lab: Lab, queue_id: str) -> bool:
    return any(e["queue_id"] == queue_id for e in lab.postfix.held())


def test_one_list_shows_the_mail_held_on_both_mtas(mtas: TwoMtas) -> None:
    _, to_a, on_a = hold(mtas.a, "a")
    _, to_b, on_b = hold(mtas.b, "b")
    listing = {r["queue_id"]: r for r in mtas.listed()}
    for queue_id, mta, recipient in ((on_a, "mta-a", to_a), (on_b, "mta-b", to_b)):
        shown = listing[queue_id]
        assert (shown["mta"], shown["status"], shown["rule"]) == (mta, "held", "lookalike")
        assert shown["recipients"] == [recipient.lower()]
    only_b = mtas.postwacht("quarantine", "--mta", "mta-b", "list", "--json")
    assert only_b.returncode == 0, only_b.stderr
    assert {r["mta"] for r in json.loads(only_b.stdout)} == {"mta-b"}


def test_a_release_asked_with_database_access_only_is_carried_out_by_the_holding_mta(
    mtas: TwoMtas,
) -> None:
    m, recipient, queue_id = hold(mtas.a, "release")
    [record] = listed_as(mtas, queue_id)
    released = mtas.postwacht("quarantine", "release", queue_id, "--reason",
                              "the look-alike is our partner's real domain",
                              "--actor", "anna")
    assert released.returncode == 0, released.stderr
    assert f"{queue_id} (#{record['record']}) on mta-a: released" in released.stdout
    [delivered] = poll(lambda: mtas.a.sink.with_marker(m), "the released message at A's sink")
    assert delivered.recipients == [recipient]
    assert QUARANTINE_HEADER not in delivered.content
    assert mtas.b.sink.with_marker(m) == []
    assert not still_held(mtas.a, queue_id)

    done = mtas.record(record["record"])
    assert done.status is Status.RELEASED
    assert done.request is not None
    request_id = done.request.request_id
    assert (done.request.actor, done.request.outcome) == ("anna", "done")
    helper_a, helper_b = mtas.a.helper, mtas.b.helper
    assert helper_a is not None
    assert helper_b is not None
    assert f"request {request_id} from" in helper_a.log_text()
    assert f"request {request_id} from" not in helper_b.log_text()
    mtas.a.daemon.logged(f"request {request_id} (release of {queue_id} on mta-a, by anna): done")


def test_of_two_reviewers_releasing_one_message_at_once_one_is_told_of_the_other(
    mtas: TwoMtas,
) -> None:
    """The daemon of A is paused while both ask, so that both requests meet a message
    still held (as two reviewers clicking within the same second do)."""
    m, _, queue_id = hold(mtas.a, "race")
    [record] = listed_as(mtas, queue_id)
    daemon = mtas.a.daemon.process
    assert daemon is not None
    daemon.send_signal(signal.SIGSTOP)
    try:
        racing = {actor: subprocess.Popen(
            mtas.command("quarantine", "release", queue_id, "--reason", f"{actor} checked",
                         "--actor", actor),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for actor in ("anna", "bram")}
        poll(lambda: any(p.poll() is not None for p in racing.values()),
             "one of the two releases to be refused")
        [loser] = [actor for actor, p in racing.items() if p.poll() is not None]
        [winner] = [actor for actor in racing if actor != loser]
        assert racing[winner].poll() is None  # waiting for A's daemon
    finally:
        daemon.send_signal(signal.SIGCONT)
    results = {actor: (p.wait(timeout=DEADLINE), *p.communicate())
               for actor, p in racing.items()}
    assert results[winner][0] == 0, results[winner]
    assert "released" in results[winner][1]
    code, _, refusal = results[loser]
    assert code == 1, results[loser]
    assert f"{winner} " in refusal
    assert "release" in refusal
    assert f"{winner} checked" in refusal or "not carried it out yet" in refusal, refusal

    poll(lambda: mtas.a.sink.with_marker(m), "the one delivery")
    poll(lambda: not any(m in json.dumps(e) for e in mtas.a.postfix.queue()),
         "Postfix's queue to be empty of the message")
    assert len(mtas.a.sink.with_marker(m)) == 1
    assert mtas.sql("SELECT actor, outcome FROM requests WHERE record_id = %s",
                    (record["record"],)) == [(winner, "done")]


def test_a_second_record_under_a_reused_queue_id_never_touches_the_first(
    mtas: TwoMtas,
) -> None:
    """Postfix reuses short queue ids: a record written for another message under the
    same (MTA, queue id) is a record of its own, and the helper refuses to act on it
    because the held message does not carry its key."""
    m, _, queue_id = hold(mtas.a, "reused")
    [first] = listed_as(mtas, queue_id)
    store = mtas.store()
    try:
        original = store.record(first["record"])
        second = store.record_quarantine(Hold(
            "mta-a", queue_id, uuid.uuid4().hex, original.sender, original.recipients,
            original.rule, original.reason, original.policy, original.client))
    finally:
        store.close()
    assert second.record_id != original.record_id
    assert mtas.record(original.record_id) == original  # not overwritten
    both = listed_as(mtas, queue_id)
    assert sorted(r["record"] for r in both) == sorted([original.record_id, second.record_id])
    assert all("2 records claim queue id" in r["note"] for r in both)

    ambiguous = mtas.postwacht("quarantine", "release", queue_id, "--reason", "ok",
                               "--actor", "anna")
    assert ambiguous.returncode == 1
    assert f"2 records claim queue id {queue_id}" in ambiguous.stderr
    assert "name one by its number (#N)" in ambiguous.stderr

    wrong = mtas.postwacht("quarantine", "release", f"#{second.record_id}", "--reason",
                           "ok", "--actor", "anna")
    assert wrong.returncode == 1, wrong.stdout
    assert "is not the one this record is about" in wrong.stderr
    assert "the queue id was reused" in wrong.stderr
    assert still_held(mtas.a, queue_id)
    assert mtas.record(second.record_id).status is Status.HELD
    assert mtas.record(original.record_id).status is Status.HELD

    right = mtas.postwacht("quarantine", "release", f"#{original.record_id}", "--reason",
                           "ok", "--actor", "anna")
    assert right.returncode == 0, right.stderr
    [delivered] = poll(lambda: mtas.a.sink.with_marker(m), "the right message at the sink")
    assert QUARANTINE_HEADER not in delivered.content
    released, other = mtas.record(original.record_id), mtas.record(second.record_id)
    assert (released.status, released.key) == (Status.RELEASED, original.key)
    assert other.key == second.key
    assert other.status in (Status.HELD, Status.GONE)  # gone once A's daemon looks
    store = mtas.store()
    try:
        trail = [e.action for e in store.audit_entries() if e.record_id == second.record_id]
    finally:
        store.close()
    assert trail[:3] == [AuditAction.HELD, AuditAction.RELEASE_REQUESTED, AuditAction.FAILED]


def test_the_audit_trail_verifies_and_names_an_edited_or_deleted_entry(
    mtas: TwoMtas,
) -> None:
    _, _, on_a = hold(mtas.a, "audit")
    hold(mtas.b, "audit")  # an entry after it: A's is in the middle of the trail
    [(seq, reason)] = mtas.sql("SELECT seq, reason FROM audit WHERE queue_id = %s AND "
                               "action = 'held'", (on_a,))
    intact = mtas.verify()
    assert intact.returncode == 0, intact.stderr
    assert "audit trail intact" in intact.stdout

    mtas.sql("UPDATE audit SET reason = %s WHERE seq = %s", ("nothing to see here", seq))
    try:
        edited = mtas.verify()
    finally:
        mtas.sql("UPDATE audit SET reason = %s WHERE seq = %s", (reason, seq))
    assert edited.returncode == 1
    assert f"entry {seq} (" in edited.stderr
    assert "edited after it was written" in edited.stderr
    assert mtas.verify().returncode == 0

    [row] = mtas.sql("SELECT * FROM audit WHERE seq = %s", (seq,))
    mtas.sql("DELETE FROM audit WHERE seq = %s", (seq,))
    try:
        deleted = mtas.verify()
    finally:
        mtas.sql(f"INSERT INTO audit VALUES ({', '.join(['%s'] * len(row))})", row)
    assert deleted.returncode == 1
    assert f"entry {seq} missing" in deleted.stderr
    assert "audit trail BROKEN" in deleted.stderr
    assert mtas.verify().returncode == 0


def test_the_audit_trail_is_exported_as_one_json_line_per_entry(mtas: TwoMtas) -> None:
    hold(mtas.a, "export")
    hold(mtas.b, "export")
    store = mtas.store()
    try:
        before = store.audit_entries()
        first_day = before[0].at.astimezone(dt.UTC).date().isoformat()
        exported = mtas.postwacht("audit", "export", "--format", "jsonl", "--since", first_day)
        after = store.audit_entries()
    finally:
        store.close()
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(before) <= len(lines) <= len(after)
    assert [(e["seq"], e["prev"], e["hash"]) for e in lines] == [
        (e.seq, e.prev, e.hash) for e in after[:len(lines)]]
    assert all(e["prev"] == p["hash"] for p, e in itertools.pairwise(lines))
    assert {e["mta"] for e in lines if e["action"] == "held"} == {"mta-a", "mta-b"}

    middle = before[len(before) // 2]
    later = mtas.postwacht("audit", "export", "--since", middle.at.isoformat())
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout.splitlines()[0])["seq"] == middle.seq


def test_with_postgresql_stopped_holds_wait_at_the_sender_and_other_mail_flows(
    mtas: TwoMtas, postgres_comes_back: PostgresLab,
) -> None:
    a = mtas.a
    assert a.daemon.process is not None
    daemon_pid = a.daemon.process.pid
    postgres_comes_back.stop()
    try:
        m = marker()
        lookalike = f"down-{m}@samen-veiIig.nl"
        with pytest.raises(smtplib.SMTPDataError) as tempfailed:
            a.postfix.submit(SENDER, [lookalike], m)
        assert tempfailed.value.smtp_code == 451
        assert b"could not be recorded for review" in tempfailed.value.smtp_error
        assert not any(m in json.dumps(e) for e in a.postfix.queue())

        ordinary = marker()
        assert a.postfix.submit(SENDER, [f"ok-{ordinary}@example.org"], ordinary) == {}
        poll(lambda: a.sink.with_marker(ordinary), "ordinary mail delivered meanwhile")

        retired = f"dossier-{marker()}@bjzutrecht.nl"
        refused = a.postfix.submit(SENDER, [retired], marker())
        assert refused[retired][0] == 550
    finally:
        postgres_comes_back.start()

    def held_again() -> tuple[str, str, str] | None:
        try:
            return hold(a, "back")
        except smtplib.SMTPDataError as exc:  # within seconds of the return: the sender
            if exc.smtp_code != 451:          # retries, as it would from a real client
                raise
            return None

    m, recipient, queue_id = poll(held_again, "a hold accepted once PostgreSQL is back")
    [record] = poll(lambda: listed_as(mtas, queue_id), "the hold recorded again")
    assert (record["mta"], record["recipients"]) == ("mta-a", [recipient.lower()])
    assert a.daemon.process is not None
    assert (a.daemon.process.pid, a.daemon.process.poll()) == (daemon_pid, None)
    assert a.sink.with_marker(m) == []


def test_a_second_daemon_under_a_name_in_use_does_not_start(
    mtas: TwoMtas, tmp_path: Path,
) -> None:
    ports = Ports()
    state = tmp_path / "state"
    started = subprocess.run(
        [POSTWACHT, "serve", "--policy", str(mtas.a.daemon.policy), "--mta", "mta-a",
         "--records", mtas.records, "--state", str(state),
         "--milter", f"inet:{ports.milter}@127.0.0.1", "--metrics", "",
         "--socketmap", f"127.0.0.1:{ports.socketmap}"],
        capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert started.returncode == 1
    assert "another running Postwacht daemon already serves MTA 'mta-a'" in started.stderr
    assert "not starting" in started.stderr
    assert mtas.a.daemon.process is not None
    assert mtas.a.daemon.process.poll() is None  # the first goes on
