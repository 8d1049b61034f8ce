"""The misaddressing guard end to end: a real Postfix, the daemon, `postwacht web`, a real
browser, and the sink as everyone's mailbox.

The first BSN message from a sender to an outside address is held, and the sender finds
a notice in the sink with two signed links. In Chromium, "send it" delivers the message
and makes the address known (the next message goes straight out); "cancel" deletes it;
a changed or expired link gets a clear page. A Postfix mail log seeds what is known, and
the store keeps only keyed hashes. Many outside addresses in To are held; in Bcc they go.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from playwright.sync_api import Browser, Page, expect
from postwacht.notices.links import Confirm, parse, sign, url
from postwacht.records.secret import derive, load_secret
from postwacht.records.store import AuditAction, Status

from tests.integration.conftest import POSTWACHT, Lab, held_for, running_lab
from tests.integration.test_web_browser import WebSite
from tests.labs.browser import browser_context
from tests.labs.util import free_port, poll

SENDER = "wijkteam@samen-veilig.nl"
NOTICE_FROM = "postwacht@samen-veilig.nl"
BSN_BODY = "Verslag van het gesprek.\r\nBSN: 123456782\r\n"
PARTNER = "utrecht.nl"
"""A partner of the example policy: never a first recipient, but outside the organisation."""
LINK = re.compile(r"http://127\.0\.0\.1:\d+/confirm/\S+")


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[Lab, WebSite]]:
    """A lab whose policy guards first recipients and exposed lists, with `postwacht web`
    on the port the notices' links name, over the daemon's state directory."""
    port = free_port()
    policy = {
        "sensitive": {"default": "not-sensitive", "detectors": ["bsn"]},
        "notices": {"from": NOTICE_FROM, "language": "en", "digest": "off",
                    "review_url": f"http://127.0.0.1:{port}/"},
        "misaddressing": {"first_recipient": {"link_valid_hours": 24},
                          "exposed_recipients": {"max_outside": 5, "action": "quarantine"}},
    }
    with running_lab("postwacht-guard-", policy=policy) as lab:
        site = WebSite(lab.daemon.root, ["--state", str(lab.daemon.state)])
        site.spawn(["web", "--listen", f"127.0.0.1:{port}", "--state", str(lab.daemon.state)],
                   lambda: bool(site.url), "postwacht web to listen")
        try:
            yield lab, site
        finally:
            assert site.stop() == 0
            assert "Traceback" not in site.log_text(), site.log_text()


def send(lab: Lab, to: list[str], shown: str | None = None) -> str:
    """Submit a BSN message from SENDER; its marker."""
    m = uuid.uuid4().hex[:12]
    header = shown if shown is not None else ", ".join(to)
    message = f"From: <{SENDER}>\r\nTo: {header}\r\nSubject: verslag {m}\r\n\r\n{m}\r\n{BSN_BODY}"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, to, message)
    return m


def notice_for(lab: Lab, record_id: int) -> EmailMessage:
    def found() -> list[EmailMessage]:
        parsed = [email.message_from_bytes(d.content, policy=email.policy.default)
                  for d in lab.sink.received(SENDER) if d.sender == NOTICE_FROM]
        return [p for p in parsed if isinstance(p, EmailMessage)
                and f"#{record_id}" in p.get_content()]
    [notice] = poll(found, f"the sender's notice of record #{record_id}")
    return notice


def links(notice: EmailMessage) -> dict[Confirm, str]:
    found = {parse(address.rsplit("/", 1)[1]).action: address
             for address in LINK.findall(notice.get_content())}
    assert set(found) == {Confirm.SEND, Confirm.CANCEL}
    return found


def hold_new(lab: Lab, recipient: str) -> tuple[str, int]:
    marker = send(lab, [recipient])
    entry = held_for(lab, recipient)
    with lab.records() as store:
        [record] = store.records_of(str(entry["queue_id"]))
    assert record.rule.value == "first-recipient"
    return marker, record.record_id


def press(page: Page, address: str, button: str, result: str) -> None:
    response = page.goto(address)
    assert response is not None
    assert response.status == 200, page.content()
    page.get_by_role("button", name=button).click()
    expect(page.locator("h1")).to_have_text(result)


def test_send_it_delivers_the_message_and_the_next_one_goes_straight_out(
        guarded: tuple[Lab, WebSite], browser: Browser) -> None:
    lab, _ = guarded
    recipient = f"piet-{uuid.uuid4().hex[:8]}@jeugdzorg.example"
    marker, record_id = hold_new(lab, recipient)
    notice = notice_for(lab, record_id)
    assert "Please confirm" in notice["Subject"]
    assert recipient in notice.get_content()
    assert marker not in notice.get_content()  # never the held message's content
    with browser_context(browser) as context:
        press(context.new_page(), links(notice)[Confirm.SEND], "Send it to these recipients",
              "The message is on its way")
    [delivered] = poll(lambda: lab.sink.with_marker(marker), "the confirmed message at the sink")
    assert delivered.recipients == [recipient]
    with lab.records() as store:
        assert poll(lambda: store.record(record_id).status is Status.RELEASED, "released")
        [asked] = store.audit_search(action=AuditAction.RELEASE_REQUESTED, record_id=record_id)
        assert asked.actor == SENDER
    second = send(lab, [recipient])
    poll(lambda: lab.sink.with_marker(second), "the second message, straight out")
    assert not [e for e in lab.postfix.held()
                if any(r["address"] == recipient for r in e["recipients"])]


def test_cancel_deletes_the_message(guarded: tuple[Lab, WebSite], browser: Browser) -> None:
    lab, _ = guarded
    recipient = f"jan-{uuid.uuid4().hex[:8]}@jeugdzorg.example"
    marker, record_id = hold_new(lab, recipient)
    with browser_context(browser) as context:
        press(context.new_page(), links(notice_for(lab, record_id))[Confirm.CANCEL],
              "Delete this message", "The message was deleted")
    with lab.records() as store:
        poll(lambda: store.record(record_id).status is Status.DELETED, "the record deleted")
        [asked] = store.audit_search(action=AuditAction.DELETE_REQUESTED, record_id=record_id)
        assert asked.actor == SENDER
    poll(lambda: not [e for e in lab.postfix.held()
                      if any(r["address"] == recipient for r in e["recipients"])],
         "the message gone from the hold queue")
    assert lab.sink.with_marker(marker) == []


def test_a_changed_or_expired_link_is_refused_with_a_clear_page(
        guarded: tuple[Lab, WebSite], browser: Browser) -> None:
    lab, site = guarded
    recipient = f"kees-{uuid.uuid4().hex[:8]}@jeugdzorg.example"
    _, record_id = hold_new(lab, recipient)
    send_link = links(notice_for(lab, record_id))[Confirm.SEND]
    changed = send_link[:-1] + ("A" if send_link[-1] != "A" else "B")
    key = derive(load_secret(lab.daemon.state, create=False), "links")
    with lab.records() as store:
        hold_key = store.record(record_id).key
    expired = url(f"{site.url}/", sign(key, record_id, hold_key, Confirm.SEND,
                                       int(time.time()) - 60))
    with browser_context(browser) as context:
        page = context.new_page()
        response = page.goto(changed)
        assert response is not None
        assert response.status == 403
        expect(page.locator("body")).to_contain_text("damaged or was changed")
        response = page.goto(expired)
        assert response is not None
        assert response.status == 410
        expect(page.locator("body")).to_contain_text("expired")
    with lab.records() as store:
        assert store.record(record_id).status is Status.HELD  # nothing happened to it


def test_a_correspondent_seeded_from_the_mail_log_passes_and_the_store_names_nobody(
        guarded: tuple[Lab, WebSite]) -> None:
    lab, _ = guarded
    tag = uuid.uuid4().hex[:8]
    known = f"huisarts-{tag}@praktijk-oost.example"
    log = lab.daemon.root / f"mail-{tag}.log"
    log.write_text(
        f"Nov 20 09:00:00 mx postfix/qmgr[100]: 4F1A2B3C4D: from=<{SENDER}>, size=900, "
        "nrcpt=1 (queue active)\n"
        f"Nov 20 09:00:01 mx postfix/smtp[101]: 4F1A2B3C4D: to=<{known}>, "
        "relay=mx.praktijk-oost.example[192.0.2.10]:25, delay=1, delays=0/0/0.5/0.5, "
        "dsn=2.0.0, status=sent (250 2.0.0 Ok)\n"
        "Nov 20 09:00:01 mx postfix/qmgr[100]: 4F1A2B3C4D: removed\n")
    result = subprocess.run([POSTWACHT, "correspondents", "import", "maillog", str(log),
                             "--policy", str(lab.daemon.policy), "--state",
                             str(lab.daemon.state)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "learned" in result.stdout
    marker = send(lab, [known])
    poll(lambda: lab.sink.with_marker(marker), "the first message to a seeded address")
    database = lab.daemon.state / "postwacht.sqlite"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT hash, last_seen FROM correspondents").fetchall()
    assert rows
    text = repr(rows)
    for clear in (known, "praktijk-oost", SENDER, "wijkteam"):
        assert clear not in text


def test_many_outside_addresses_in_to_are_held_and_in_bcc_they_go(
        guarded: tuple[Lab, WebSite]) -> None:
    lab, _ = guarded
    tag = uuid.uuid4().hex[:8]
    team = [f"p{i}-{tag}@{PARTNER}" for i in range(10)]
    send(lab, team)
    entry = held_for(lab, team[0])
    with lab.records() as store:
        [record] = store.records_of(str(entry["queue_id"]))
    assert record.rule.value == "exposed-recipients"
    assert "10 outside addresses" in record.reason
    marker = send(lab, team, shown="undisclosed-recipients:;")
    poll(lambda: sum(len(d.recipients) for d in lab.sink.with_marker(marker)) == 10,
         "the Bcc message at the sink for all ten")
