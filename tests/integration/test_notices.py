"""Notices end to end: a real Postfix, the daemon, and the sink as everyone's mailbox.

A held message's sender finds a notice from the organisation's own address in the sink:
the rule, the recipient domain and the link to the review, never the held message's
subject or text; the notice went through Postfix with sendmail(1) and passed the filter
without being held. A reviewer with an email gets the digest of what waits. Each test
runs its own lab, so each has a records store (and digest periods) of its own.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from postwacht.core.roles import Role
from postwacht.records.store import AuditAction, QuarantineRecord

from tests.integration.conftest import Delivered, Lab, held_for, running_lab
from tests.labs.util import poll

SENDER = "medewerker@samen-veilig.nl"
NOTICES = {"from": "postwacht@samen-veilig.nl", "language": "en",
           "review_url": "https://review.samen-veilig.nl/", "digest": "immediately"}


@pytest.fixture
def notices_lab() -> Iterator[Lab]:
    with running_lab("postwacht-notices-", policy={"notices": NOTICES}) as lab:
        yield lab


def message(delivered: Delivered) -> EmailMessage:
    parsed = email.message_from_bytes(delivered.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def notices_to(lab: Lab, address: str) -> list[EmailMessage]:
    return [message(d) for d in lab.sink.received(address)
            if d.sender == NOTICES["from"]]


def hold_lookalike(lab: Lab, m: str) -> tuple[str, dict[str, object], QuarantineRecord]:
    """A message from SENDER held for a look-alike recipient: its subject and text, its
    hold queue entry and its record."""
    recipient = f"dossier-{m}@samen-veiIig.nl"
    content = uuid.uuid4().hex[:12]  # the held message's subject and text
    assert lab.postfix.submit(SENDER, [recipient], content) == {}
    entry = held_for(lab, recipient)
    with lab.records() as store:
        [record] = store.records_of(str(entry["queue_id"]))
    return content, entry, record


def test_the_sender_of_held_mail_is_told_why_without_its_content(notices_lab: Lab) -> None:
    lab = notices_lab
    content, entry, record = hold_lookalike(lab, uuid.uuid4().hex[:12])
    [notice] = poll(lambda: notices_to(lab, SENDER), "the sender notice at the sink")
    text = notice.get_content()
    assert notice["From"] == "postwacht@samen-veilig.nl"
    assert notice["Auto-Submitted"] == "auto-generated"
    assert "samen-veiiig.nl" in notice["Subject"]
    assert "looks like a known domain" in text
    assert "samen-veiiig.nl" in text
    assert f"https://review.samen-veilig.nl/held/{record.record_id}" in text
    raw = b"".join(d.content for d in lab.sink.received(SENDER))
    assert content.encode() not in raw  # neither the held subject nor its text
    assert b"X-Postwacht-Quarantine" not in raw
    # The notice passed the filter and left; only the message it tells of is held.
    assert [e["queue_id"] for e in lab.postfix.held()] == [entry["queue_id"]]
    with lab.records() as store:
        audited = poll(lambda: store.audit_search(action=AuditAction.SENDER_NOTIFIED,
                                                  record_id=record.record_id),
                       "the notice's audit entry")
    assert [(e.actor, e.detail) for e in audited] == [("postwacht", "to samen-veilig.nl")]


def test_mail_from_outside_the_owned_domains_is_held_but_its_sender_not_told(
        notices_lab: Lab) -> None:
    lab, m = notices_lab, uuid.uuid4().hex[:12]
    outsider = f"iemand-{m}@example.org"
    recipient = f"x-{m}@samen-veiIig.nl"
    lab.postfix.sendmail(outsider, [recipient], m)  # local submission: internal
    entry = held_for(lab, recipient)
    poll(lambda: f"id={entry['queue_id']}" in lab.daemon.log_text(), "the hold's log line")
    poll(lambda: "sender not told: the sender's domain example.org is not an owned domain"
         in lab.daemon.log_text(), "the notifier's reason")
    assert lab.sink.received(outsider) == []


def test_a_reviewer_gets_a_digest_of_what_waits(notices_lab: Lab) -> None:
    lab, m = notices_lab, uuid.uuid4().hex[:12]
    reviewer = f"po-{m}@samen-veilig.nl"
    with lab.records() as store:
        store.add_user(f"po{m}", Role.REVIEWER, reviewer, "", "admin")
        store.add_user(f"view{m}", Role.VIEWER, f"view-{m}@samen-veilig.nl", "", "admin")
    content, _, record = hold_lookalike(lab, m)
    [digest] = poll(lambda: notices_to(lab, reviewer), "the digest at the sink")
    text = digest.get_content()
    assert "wait for review" in digest["Subject"]
    assert f"#{record.record_id}" in text
    assert f"https://review.samen-veilig.nl/held/{record.record_id}" in text
    assert "samen-veiiig.nl" in text
    assert content.encode() not in b"".join(d.content for d in lab.sink.received(reviewer))
    assert lab.sink.received(f"view-{m}@samen-veilig.nl") == []  # a viewer is not sent it
