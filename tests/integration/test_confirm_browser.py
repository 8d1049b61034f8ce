"""A sender answers a first-recipient hold in a real browser, without an account.

Chromium (driven by Playwright) opens the notice's links on `postwacht web`, a separate
process on loopback over a SQLite store, signed with the key the site itself reads from
the state directory. The held records are written straight into that store, as the
milter would write them; no MTA is needed to see what the site asks for, and that a
recipient the sender confirmed is known from then on.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from postwacht.core.decide import RecipientVerdict
from postwacht.core.vocabulary import Action, Match, Rule, Scope
from postwacht.notices.links import Confirm, sign, url
from postwacht.records.correspondents import Correspondents
from postwacht.records.secret import derive, load_secret
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import AuditAction, Hold, Review, Status

from tests.integration.test_web_browser import WebSite
from tests.labs.browser import browser_context

MTA = "confirm-lab"
SENDER = "wijkteam@samen-veilig.nl"
REASON = "sensitive mail to an address this sender never mailed"


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="postwacht-confirm-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def store(root: Path) -> Iterator[SqliteRecords]:
    records = SqliteRecords(root / "state", mta=MTA)
    yield records
    records.close()


@pytest.fixture(scope="module")
def site(root: Path, store: SqliteRecords) -> Iterator[WebSite]:
    """`postwacht web` over the store, with the key the daemon would have made."""
    load_secret(root / "state", create=True)
    web = WebSite(root, ["--state", str(root / "state")])
    web.start()
    try:
        yield web
    finally:
        assert web.stop() == 0, "postwacht web did not stop cleanly on SIGTERM"
        assert "Traceback" not in web.log_text(), web.log_text()


def held(store: SqliteRecords) -> tuple[int, str]:
    """A message held for a first-time recipient: its record number and that recipient."""
    recipient = f"dossier-{uuid.uuid4().hex[:8]}@huisarts-oost.example"
    verdict = RecipientVerdict(recipient, ("huisarts-oost.example",), Action.QUARANTINE,
                               Rule.FIRST_RECIPIENT, REASON)
    queue_id = uuid.uuid4().hex[:12].upper()
    record = store.record_quarantine(Hold(MTA, queue_id, f"key-{uuid.uuid4().hex}", SENDER,
                                          (verdict,), Rule.FIRST_RECIPIENT, REASON,
                                          "0a1b2c3d4e5f", client="10.0.0.7", detected="bsn"))
    return record.record_id, recipient


def link(site: WebSite, store: SqliteRecords, record_id: int, action: Confirm,
         expires: float | None = None) -> str:
    """The link as the sender's notice carries it, signed with the site's own key."""
    key = derive(load_secret(site.root / "state", create=False), "links")
    until = int(expires if expires is not None else time.time() + 7 * 86400)
    return url(f"{site.url}/", sign(key, record_id, store.record(record_id).key, action, until))


def correspondents(site: WebSite, store: SqliteRecords) -> Correspondents:
    """Who is known, read with the site's own key."""
    return Correspondents(store, derive(load_secret(site.root / "state", create=False),
                                        "correspondents"))


def opened(page: Page, address: str, status: int) -> None:
    response = page.goto(address)
    assert response is not None
    assert response.status == status, page.content()


@pytest.mark.parametrize(("action", "button", "result", "review", "audited"), [
    (Confirm.SEND, "Send it to these recipients", "The message is on its way",
     Review.RELEASE, AuditAction.RELEASE_REQUESTED),
    (Confirm.CANCEL, "Delete this message", "The message was deleted",
     Review.DELETE, AuditAction.DELETE_REQUESTED),
])
def test_the_sender_opens_the_link_presses_the_button_and_the_request_is_the_senders(
    browser: Browser, site: WebSite, store: SqliteRecords, action: Confirm, button: str,
    result: str, review: Review, audited: AuditAction,
) -> None:
    record_id, recipient = held(store)
    with browser_context(browser) as context:
        page = context.new_page()
        opened(page, link(site, store, record_id, action), 200)
        expect(page.locator("#recipients")).to_contain_text(recipient)
        expect(page.locator("#held")).to_contain_text(SENDER)
        expect(page.locator("#held")).to_contain_text(REASON)
        assert store.record(record_id).status is Status.HELD  # opening alone does nothing
        page.get_by_role("button", name=button).click()
        expect(page.locator("h1")).to_have_text(result)
        expect(page.locator("#audited")).to_contain_text("audit trail")
    record = store.record(record_id)
    assert record.status is Status.REQUESTED
    assert record.request is not None
    assert (record.request.action, record.request.actor, record.request.needs_approval) == (
        review, SENDER, "")
    [entry] = store.audit_search(action=audited, record_id=record_id)
    assert entry.actor == SENDER
    known = correspondents(site, store).known(SENDER, [recipient], Scope.SENDER,
                                              Match.ADDRESS, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert known == ({recipient} if action is Confirm.SEND else set())


def test_the_same_link_once_more_says_it_was_done(browser: Browser, site: WebSite,
                                                  store: SqliteRecords) -> None:
    record_id, _ = held(store)
    address = link(site, store, record_id, Confirm.SEND)
    with browser_context(browser) as context:
        page = context.new_page()
        opened(page, address, 200)
        page.get_by_role("button", name="Send it to these recipients").click()
        expect(page.locator("h1")).to_have_text("The message is on its way")
        opened(page, address, 409)
        expect(page.locator("#message")).to_have_text(
            "You already confirmed this message: it is on its way.")


def test_a_tampered_link_shows_a_clear_page(browser: Browser, site: WebSite,
                                            store: SqliteRecords) -> None:
    record_id, _ = held(store)
    address = link(site, store, record_id, Confirm.SEND).replace(".send.", ".cancel.")
    with browser_context(browser) as context:
        page = context.new_page()
        opened(page, address, 403)
        expect(page.locator("h1")).to_have_text("This link cannot be used")
        expect(page.locator("#message")).to_have_text(
            "This link is damaged or was changed. Use the link in the notice as it was "
            "sent, or ask your privacy officer.")
        expect(page.locator("form#confirm")).to_have_count(0)
    assert store.record(record_id).status is Status.HELD


def test_an_expired_link_shows_when_it_expired_in_dutch(browser: Browser, site: WebSite,
                                                        store: SqliteRecords) -> None:
    record_id, _ = held(store)
    expired = dt.datetime(2026, 1, 5, 14, 30, tzinfo=dt.UTC).timestamp()
    with browser_context(browser, "nl-NL") as context:
        page = context.new_page()
        opened(page, link(site, store, record_id, Confirm.SEND, expired), 410)
        expect(page.locator("h1")).to_have_text("Deze link is verlopen")
        expect(page.locator("#message")).to_have_text(
            "Deze link is verlopen op 2026-01-05 14:30 UTC. Uw bericht wordt nog steeds "
            "tegengehouden; uw privacyfunctionaris kan het vrijgeven.")
    assert store.record(record_id).status is Status.HELD
