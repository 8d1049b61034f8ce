"""What review may see of a held message is captured on the MTA that holds it: a real
Postfix holds the message, the daemon's executor asks the release helper (root), which
reads it from the hold queue with postcat, bounded, and stores the view in the records.
The view has the headers, the text with every BSN masked, and the attachments by name,
type and size only; the message itself stays held. Both records backends are used."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from postwacht.adapters.releasehelper import ReleaseHelperClient
from postwacht.records.store import Attachment, HeldContent, QuarantineRecord

from tests.integration.conftest import Lab, held_for, running_lab
from tests.labs.util import DEADLINE, poll

SENDER = "medewerker@samen-veilig.nl"
BSN = "111222333"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The lab on each records backend: the view is written and read back alike."""
    records = (request.getfixturevalue("postgres_lab").new_database()
               if request.param == "postgresql" else None)
    with running_lab("postwacht-content-", mta="content-lab", records=records) as started:
        yield started


def hold(lab: Lab, message: EmailMessage) -> tuple[str, QuarantineRecord]:
    """Send `message` to a look-alike of our own domain, which the policy holds: its
    marker and its record."""
    m = uuid.uuid4().hex[:12]
    recipient = f"x-{m}@samen-veiIig.nl"
    message["From"] = SENDER
    message["To"] = recipient
    message["Subject"] = f"verslag {m}"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.send_message(message, SENDER, [recipient])
    queue_id = str(held_for(lab, recipient)["queue_id"])
    with lab.records() as store:
        [record] = poll(lambda: store.records_of(queue_id), "the hold's record")
    return m, record


def captured(lab: Lab, record: QuarantineRecord) -> HeldContent:
    with lab.records() as store:
        content: HeldContent = poll(lambda: store.content(record.record_id),
                                    f"the content of record {record.record_id}")
        return content


def test_a_held_message_is_captured_for_review_with_every_bsn_masked(lab: Lab) -> None:
    message = EmailMessage()
    message.set_content(f"Verslag van het gesprek.\nBSN: {BSN}\nMet vriendelijke groet.\n")
    message.add_alternative(f"<p>BSN {BSN}</p><script>alert('x')</script>", subtype="html")
    message.add_attachment(PDF, maintype="application", subtype="pdf",
                           filename=f"verslag {BSN}.pdf")
    m, record = hold(lab, message)
    content = captured(lab, record)
    headers = dict(content.headers)
    assert headers["Subject"] == f"verslag {m}"
    assert headers["From"] == SENDER
    assert f"key={record.key}" in headers["X-Postwacht-Quarantine"]
    assert content.text == ("Verslag van het gesprek.\nBSN: *******33\n"
                            "Met vriendelijke groet.\n")
    assert content.attachments == (
        Attachment("verslag *******33.pdf", "application/pdf", len(PDF)),)
    assert content.notes == (
        "an HTML version of the text is not shown (review never renders HTML)",)
    assert content.captured_at is not None
    assert BSN not in repr(content)
    assert [e["queue_id"] for e in lab.postfix.held()].count(record.queue_id) == 1
    assert lab.sink.with_marker(m) == []


def test_a_message_larger_than_the_read_is_captured_as_far_as_it_was_read(lab: Lab) -> None:
    big = bytes(6 * 1024 * 1024)
    message = EmailMessage()
    message.set_content("Zie de bijlage.\n")
    message.add_attachment(big, maintype="application", subtype="octet-stream",
                           filename="groot.bin")
    _, record = hold(lab, message)
    content = captured(lab, record)
    assert content.text == "Zie de bijlage.\n"
    [attachment] = content.attachments
    assert attachment.name == "groot.bin"
    assert 2 * 1024 * 1024 < attachment.size < len(big)  # what arrived within 4 MiB
    assert content.notes[0].startswith("the message is larger than the 4 MiB read for review")


def test_the_helper_captures_only_what_is_still_held(lab: Lab) -> None:
    message = EmailMessage()
    message.set_content("kort\n")
    _, record = hold(lab, message)
    captured(lab, record)
    client = ReleaseHelperClient(lab.daemon.state / "release.sock", timeout=DEADLINE)
    again = client.capture(record.record_id)  # capturing again writes the same view
    assert again.ok, again.detail
    lab.postfix.postsuper("-d", record.queue_id, "hold")
    gone = client.capture(record.record_id)
    assert not gone.ok
    assert "no longer" in gone.detail, gone.detail
    unknown = client.capture(987654321)
    assert not unknown.ok
    assert "987654321" in unknown.detail
