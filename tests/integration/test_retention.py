"""Retention and vanished messages, with a real Postfix, the real daemon and its release
helper, on SQLite and on PostgreSQL: held mail older than quarantine.retention_days is
expired by the daemon (returned to its sender, or deleted, as the policy says) and
audited as expired; a held message removed by hand becomes a `gone` record and leaves the
quarantine gauge."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from postwacht.records.store import AuditAction, AuditEntry, QuarantineRecord, Status

from tests.integration.conftest import Lab, held_for, running_lab, write_test_policy
from tests.labs.postgres import PostgresLab
from tests.labs.util import poll

SENDER = "medewerker@samen-veilig.nl"
RETENTION = 3.0
"""Seconds held mail is kept here (30 days in the example policy)."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The lab on either records backend: the daemon's work is the same on both."""
    records = None
    if request.param == "postgresql":
        postgres: PostgresLab = request.getfixturevalue("postgres_lab")
        records = postgres.new_database()
    with running_lab("postwacht-retention-", mta="retention-lab", records=records) as started:
        yield started


def set_quarantine(lab: Lab, **settings: Any) -> None:
    """The running daemon's policy, with this `quarantine` section."""
    write_test_policy(lab.daemon.policy, quarantine=settings)
    result = lab.daemon.cli("reload", "--state", str(lab.daemon.state))
    assert result.returncode == 0, result.stderr


def hold(lab: Lab) -> tuple[str, str]:
    """A message to a look-alike domain, held for review: its marker and recipient."""
    m = uuid.uuid4().hex[:12]
    recipient = f"x-{m}@samen-veiIig.nl"
    assert lab.postfix.submit(SENDER, [recipient], m) == {}
    return m, recipient


def records(lab: Lab) -> list[QuarantineRecord]:
    with lab.records() as store:
        return store.quarantine_records(None, mta=lab.mta)


def audit(lab: Lab, record: QuarantineRecord) -> list[AuditEntry]:
    with lab.records() as store:
        return [e for e in store.audit_entries() if e.record_id == record.record_id]


def record_for(lab: Lab, recipient: str, *statuses: Status) -> QuarantineRecord:
    def found() -> QuarantineRecord | None:
        return next((r for r in records(lab) if r.status in statuses
                     and any(v.address.lower() == recipient.lower() for v in r.recipients)),
                    None)

    record: QuarantineRecord = poll(found, f"a {'/'.join(statuses)} record for {recipient}")
    return record


def queued(lab: Lab, queue_id: str) -> bool:
    return any(e["queue_id"] == queue_id for e in lab.postfix.queue())


def test_mail_held_longer_than_the_retention_is_returned_to_its_sender(lab: Lab) -> None:
    set_quarantine(lab, retention_days=RETENTION / 86400, on_expiry="return")
    m, recipient = hold(lab)
    held = record_for(lab, recipient, Status.HELD, Status.REQUESTED, Status.EXPIRED)
    expired = record_for(lab, recipient, Status.EXPIRED)
    assert expired.record_id == held.record_id
    assert (expired.closed_at - expired.held_at).total_seconds() >= RETENTION
    assert not any(e["queue_id"] == held.queue_id for e in lab.postfix.held())

    bounce = poll(lambda: [d for d in lab.sink.received(SENDER) if m.encode() in d.content],
                  "the expired message back at its sender")
    assert bounce[0].sender in ("", "<>")  # a bounce, from the mail system
    assert b"expired" in bounce[0].content.lower()
    assert lab.sink.received(recipient) == []

    entries = audit(lab, held)
    assert [e.action for e in entries] == [AuditAction.HELD, AuditAction.EXPIRE_REQUESTED,
                                           AuditAction.EXPIRED]
    entry = entries[-1]
    assert entry.actor == "postwacht"
    assert entry.mta == lab.mta
    assert "held longer than 3 seconds (quarantine.retention_days)" in entry.reason
    assert lab.daemon.metric(
        'postwacht_review_requests_total{action="expire",outcome="done"}') >= 1  # type: ignore[operator]


def test_mail_held_longer_than_the_retention_is_deleted_when_the_policy_says_so(
    lab: Lab,
) -> None:
    set_quarantine(lab, retention_days=RETENTION / 86400, on_expiry="delete")
    m, recipient = hold(lab)
    held = record_for(lab, recipient, Status.HELD, Status.REQUESTED, Status.EXPIRED)
    record_for(lab, recipient, Status.EXPIRED)
    assert not queued(lab, held.queue_id)  # postsuper -d took it; nothing can follow
    assert lab.postfix.queue() == []  # no bounce on its way either
    assert lab.sink.with_marker(m) == []
    assert [(e.action, e.actor, e.mta) for e in audit(lab, held)] == [
        (AuditAction.HELD, "postwacht", lab.mta),
        (AuditAction.EXPIRE_REQUESTED, "postwacht", lab.mta),
        (AuditAction.EXPIRED, "postwacht", lab.mta)]


def test_a_held_message_deleted_by_hand_becomes_a_gone_record_and_leaves_the_gauge(
    lab: Lab,
) -> None:
    set_quarantine(lab)  # 30 days: nothing expires now
    gauge = "postwacht_quarantine_messages"
    before = lab.daemon.metric(gauge)
    assert before is not None
    _, recipient = hold(lab)
    queue_id = str(held_for(lab, recipient)["queue_id"])
    held = record_for(lab, recipient, Status.HELD)
    assert held.queue_id == queue_id
    poll(lambda: lab.daemon.metric(gauge) == before + 1, "the hold in the gauge")
    # Rounds past the grace leave a record alone whose message is still held.
    synced = "postwacht_records_sync_timestamp_seconds"
    grace_passed = held.held_at.timestamp() + 3.0
    poll(lambda: (lab.daemon.metric(synced) or 0) > grace_passed, "sync rounds past the grace")
    assert record_for(lab, recipient, Status.HELD).record_id == held.record_id

    lab.postfix.postsuper("-d", queue_id, "hold")
    gone = record_for(lab, recipient, Status.GONE)
    assert gone.record_id == held.record_id
    entries = audit(lab, held)
    assert [e.action for e in entries] == [AuditAction.HELD, AuditAction.GONE]
    assert (entries[-1].actor, entries[-1].detail) == (
        "postwacht", "left the hold queue outside Postwacht")
    poll(lambda: lab.daemon.metric(gauge) == before, "the gone record out of the gauge")
    assert lab.daemon.metric("postwacht_quarantine_gone_total") == 1
