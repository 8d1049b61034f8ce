"""The web review in a real browser, against real servers.

Chromium (driven by Playwright) talks to `postwacht web` on loopback, which reads the
records store of a real Postfix lab: the daemon holds mail, captures what review may
see of it, and carries out what the site asks through the release helper; the sink
shows what left. The site runs as it does in production, a separate process that
shares only the records store with the MTA.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from postwacht.records.store import Status

from tests.conftest import ROOT
from tests.integration.conftest import POSTWACHT, Lab, Process, held_for, running_lab
from tests.labs.browser import (
    HOSTILE_HTML,
    SCRIPT_MARK,
    ScriptWatch,
    browser_context,
    csrf_token,
    sign_in,
    static_page,
)
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.util import DEADLINE, poll, port_open

LISTENING = re.compile(r"postwacht web: listening on (http://127\.0\.0\.1:\d+)")
SENDER = "medewerker@samen-veilig.nl"
LOOKALIKE = "samen-veiIig.nl"
"""A capital i where the organisation's own name has an l."""
INSECURE_DOMAIN = "plain.pw.test"
"""Signed, with an MX but no TLSA record and no MTA-STS: no verified TLS."""
BSN_BODY = "Verslag van het gesprek.\r\nBSN: 123456782\r\n"


class WebSite(Process):
    """`postwacht web` on a free loopback port, over the records `records_options` name."""

    def __init__(self, root: Path, records_options: list[str],
                 extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.records_options = records_options
        self.extra = extra
        self.log = root / "web.log"
        self.process = None

    @property
    def url(self) -> str:
        """The base URL the site printed when it began to listen ('' before)."""
        found = LISTENING.search(self.log_text())
        return found.group(1) if found else ""

    def start(self) -> None:
        self.spawn(["web", "--listen", "127.0.0.1:0", *self.records_options, *self.extra],
                   lambda: bool(self.url) and port_open(int(self.url.rsplit(":", 1)[1])),
                   "postwacht web to listen")


def add_user(root: Path, records_options: list[str], name: str, role: str,
             password: str | None) -> None:
    """`postwacht users add`, the password in a file only its owner reads (None: no
    local password, single sign-on only)."""
    how = ["--no-password"]
    if password is not None:
        secret = root / f"password-{name}"
        secret.touch(mode=0o600)
        secret.write_text(password + "\n")
        how = ["--password-file", str(secret)]
    result = subprocess.run([POSTWACHT, "users", *records_options, "add", name,
                             "--role", role, *how],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@dataclass(frozen=True)
class Person:
    name: str
    role: str
    password: str


PEOPLE = {p.name: p for p in (
    Person("vera", "viewer", "kijken-mag-altijd-1"),
    Person("ruben", "reviewer", "lezen-en-vrijgeven-2"),
    Person("anouk", "approver", "tweede-paar-ogen-3"),
    Person("bas", "approver", "ook-een-approver-4"),
    Person("ada", "admin", "beheer-van-accounts-5"),
    Person("tom", "reviewer", "wordt-zo-geblokkeerd-6"),
)}
"""The accounts every test signs in with; tom is only for the rate limit."""


def secure_transport(dns_lab: DnsLab, sts_server: StsServer) -> dict[str, Any]:
    """Sensitive mail (a BSN) leaves only over verified TLS, else it is held; no secure
    route, so releasing it anyway is an override that needs a second person."""
    return {
        "sensitive": {"default": "not-sensitive", "detectors": ["bsn"]},
        "secure_transport": {"otherwise": "quarantine",
                             "reply": "use the secure mail portal"},
        "dns": {"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
                "mta_sts_port": sts_server.port},
    }


@pytest.fixture(scope="module")
def lab(dns_lab: DnsLab, sts_server: StsServer) -> Iterator[Lab]:
    with running_lab("postwacht-web-", cafile=sts_server.cafile, mta="web-lab",
                     policy=secure_transport(dns_lab, sts_server)) as started:
        yield started


@pytest.fixture(scope="module")
def site(lab: Lab) -> Iterator[WebSite]:
    """`postwacht web` over the lab's records, with every account of PEOPLE."""
    options = lab.daemon.records_options
    for person in PEOPLE.values():
        add_user(lab.daemon.root, options, person.name, person.role, person.password)
    web = WebSite(lab.daemon.root, options)
    web.start()
    try:
        yield web
    finally:
        assert web.stop() == 0, "postwacht web did not stop cleanly on SIGTERM"
        assert "Traceback" not in web.log_text(), web.log_text()


def send(lab: Lab, recipient: str, subject: str, body: str,
         content_type: str = "text/plain") -> None:
    message = (f"From: Medewerker <{SENDER}>\r\nTo: <{recipient}>\r\n"
               f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
               f"Content-Type: {content_type}; charset=utf-8\r\n\r\n{body}")
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, [recipient], message.encode())


def hold_lookalike(lab: Lab, body: str = "Tot morgen.\r\n",
                   content_type: str = "text/plain", local: str = "planning") -> str:
    """Mail to a look-alike of the organisation's own domain, held; its recipient."""
    recipient = f"{local}-{uuid.uuid4().hex[:8]}@{LOOKALIKE}"
    send(lab, recipient, "Rooster volgende week", body, content_type)
    held_for(lab, recipient)
    return recipient


def hold_sensitive(lab: Lab, local: str = "jeugdarts") -> str:
    """Mail with a BSN to a domain without verified TLS, held; its recipient."""
    recipient = f"{local}-{uuid.uuid4().hex[:8]}@{INSECURE_DOMAIN}"
    send(lab, recipient, "Verslag gesprek", BSN_BODY)
    held_for(lab, recipient)
    return recipient


def test_the_browser_loads_a_page_from_loopback(browser: Browser) -> None:
    with static_page() as url, browser_context(browser) as context:
        page = context.new_page()
        response = page.goto(url)
        assert response is not None
        assert response.ok
        assert page.title() == "lab page"


def test_the_script_watch_sees_a_script_that_runs(browser: Browser) -> None:
    """The proof that nothing ran is worth something: on a page that does run the
    hostile body, the watch sees the title change and the dialog."""
    with static_page(f"<!doctype html><title>lab page</title>{HOSTILE_HTML}") as url, \
            browser_context(browser) as context:
        page = context.new_page()
        watch = ScriptWatch(page)
        page.goto(url)
        expect(page).to_have_title(SCRIPT_MARK)
        assert watch.dialogs == [SCRIPT_MARK]
        with pytest.raises(AssertionError):
            watch.assert_nothing_ran("lab page")




@contextmanager
def signed_in(browser: Browser, site: WebSite, name: str,
              locale: str = "en-US") -> Iterator[Page]:
    """A fresh context signed in as `name`; its page on the held list."""
    with browser_context(browser, locale) as context:
        page = context.new_page()
        sign_in(page, site.url, name, PEOPLE[name].password)
        yield page


def open_from_list(page: Page, site: WebSite, recipient: str) -> int:
    """Find the recipient's row in the held list and follow its link; the record id."""
    page.goto(f"{site.url}/held")
    row = page.locator("#held tbody tr", has_text=recipient)
    expect(row).to_have_count(1)
    row.locator("a[href*='/held/']").click()
    expect(page).to_have_url(re.compile(r"/held/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def wait_for_content(page: Page) -> None:
    """The MTA's daemon captures the content shortly after the hold; until then the page
    reloads itself every few seconds."""
    expect(page.locator("#headers")).to_be_visible(timeout=DEADLINE * 1000)


def submit(page: Page, form: str, reason: str) -> None:
    """Fill in the reason of the form with id `form` and send it."""
    chosen = page.locator(f"form#{form}")
    chosen.locator("input[name=reason]").fill(reason)
    with page.expect_navigation():
        chosen.locator("[type=submit]").click()


@dataclass(frozen=True)
class Entry:
    actor: str
    action: str
    reason: str


def audit_trail(page: Page, site: WebSite, record_id: int) -> list[Entry]:
    """The audit page's entries about one record, oldest first."""
    page.goto(f"{site.url}/audit?record={record_id}")
    rows = page.locator("#trail tbody tr")
    entries = []
    for row in rows.all():
        cells = row.locator("td").all_inner_texts()
        entries.append(Entry(actor=cells[2], action=cells[3], reason=cells[8]))
    return entries[::-1]


def test_a_reviewer_reads_why_a_lookalike_was_held_and_releases_it(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    recipient = hold_lookalike(lab, local="planning")
    reason = "the team planner confirmed the address by phone"
    with signed_in(browser, site, "ruben") as page:
        expect(page.locator("#held tbody tr", has_text=recipient)).to_contain_text("lookalike")
        record_id = open_from_list(page, site, recipient)
        expect(page.locator("#decision")).to_contain_text("lookalike")
        expect(page.locator("#decision")).to_contain_text(
            "looks like our domain samen-veilig.nl but is not it")
        expect(page.locator("#recipients")).to_contain_text(recipient.lower())
        wait_for_content(page)
        expect(page.locator("#text")).to_contain_text("Tot morgen.")
        submit(page, "release-plain", reason)
        expect(page.locator("#done")).to_be_visible()
        [delivered] = poll(lambda: lab.sink.received(recipient), "the message at the sink")
        assert b"Tot morgen." in delivered.content
        trail = poll(lambda: (t := audit_trail(page, site, record_id))
                     and t[-1].action == "released" and t, "the release in the audit trail")
        assert [e.action for e in trail if e.action != "viewed"] == [
            "held", "release-requested", "released"]
        assert Entry("ruben", "viewed", "") in trail
        assert Entry("ruben", "release-requested", reason) in trail


def test_a_viewer_sees_no_content_and_cannot_act_even_by_hand(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    recipient = hold_lookalike(lab, local="vertrouwelijk")
    with signed_in(browser, site, "vera") as page:
        expect(page.locator("#held tbody tr", has_text=recipient)).to_be_visible()
        expect(page.locator("form#bulk")).to_have_count(0)
        expect(page.locator("input[name=record]")).to_have_count(0)
        record_id = open_from_list(page, site, recipient)
        expect(page.locator("#decision")).to_contain_text("lookalike")
        for hidden in ("#headers", "#text", "#fetching", "form.action"):
            expect(page.locator(hidden)).to_have_count(0)
        expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
        token = csrf_token(page)  # the sign-out form's: a valid token of this session
        for action in ("release", "delete"):
            response = page.request.post(f"{site.url}/held/{record_id}/{action}", form={
                "csrf": token, "reason": "by hand", "mode": "plain"}, max_redirects=0)
            assert response.status == 403, action
            assert "viewer" in response.text()
        bulk = page.request.post(f"{site.url}/held/bulk", form={
            "csrf": token, "record": str(record_id), "action": "release", "reason": "x"},
            max_redirects=0)
        assert bulk.status == 403
    with lab.records() as store:
        record = store.record(record_id)
        assert record.status is Status.HELD
        assert record.request is None
        assert not [e for e in store.audit_entries()
                    if e.record_id == record_id and e.actor == "vera"]


def test_a_form_without_its_csrf_token_is_refused(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    recipient = hold_lookalike(lab, local="zonder-token")
    with signed_in(browser, site, "ruben") as page:
        record_id = open_from_list(page, site, recipient)
        forms: list[dict[str, str | float | bool]] = [
            {"reason": "no token", "mode": "plain"},
            {"reason": "wrong token", "mode": "plain", "csrf": "x" * 43}]
        for form in forms:
            response = page.request.post(f"{site.url}/held/{record_id}/release", form=form,
                                         max_redirects=0)
            assert response.status == 403
        signed_out = page.request.post(f"{site.url}/logout", form={}, max_redirects=0)
        assert signed_out.status == 403
        page.goto(f"{site.url}/held")
        expect(page.locator("#logout")).to_be_visible()  # still signed in
    with lab.records() as store:
        assert store.record(record_id).status is Status.HELD


def test_an_override_waits_for_a_second_person_who_is_not_the_requester(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    sensitive = hold_sensitive(lab)
    ordinary = hold_lookalike(lab, local="rooster")
    with signed_in(browser, site, "anouk") as page:
        record_id = open_from_list(page, site, sensitive)
        expect(page.locator("#decision")).to_contain_text("insecure-transport")
        expect(page.locator("#envelope")).to_contain_text("bsn")
        wait_for_content(page)
        expect(page.locator("#text")).to_contain_text("*******82")
        expect(page.locator("#text")).not_to_contain_text("123456782")
        expect(page.locator("form[id^=release-]")).to_have_count(1)  # no plain release
        override = page.locator("form#release-override")
        expect(override).to_contain_text("Needs a second person's approval")
        submit(page, "release-override", "the youth doctor confirmed by phone")
        expect(page.locator("#request")).to_contain_text("awaiting approval")
        expect(page.locator("form#approve")).to_have_count(0)
        expect(page.locator("form#withdraw")).to_be_visible()
        own = page.request.post(f"{site.url}/held/{record_id}/approve", form={
            "csrf": csrf_token(page), "reason": "my own"}, max_redirects=0)
        assert own.status == 409
        assert "cannot approve your own request" in own.text()

    with signed_in(browser, site, "ruben") as page:
        open_from_list(page, site, sensitive)
        expect(page.locator("form#approve")).to_have_count(0)
        expect(page.locator("body")).to_contain_text("An approver must approve")
        by_reviewer = page.request.post(f"{site.url}/held/{record_id}/approve", form={
            "csrf": csrf_token(page), "reason": "not mine to approve"}, max_redirects=0)
        assert by_reviewer.status == 403
        # An ordinary release asked for after the override is carried out first: the
        # daemon has had its round, and the override still waits.
        open_from_list(page, site, ordinary)
        submit(page, "release-plain", "the address is right")
        poll(lambda: lab.sink.received(ordinary), "the ordinary release at the sink")
    assert lab.sink.received(sensitive) == []
    assert any(sensitive in [r["address"] for r in e["recipients"]]
               for e in lab.postfix.held())

    with signed_in(browser, site, "bas") as page:
        open_from_list(page, site, sensitive)
        submit(page, "approve", "confirmed with the requester")
        expect(page.locator("#done")).to_contain_text("Approved")
        poll(lambda: lab.sink.received(sensitive), "the approved override at the sink")
    with lab.records() as store:
        record = store.record(record_id)
        assert record.request is not None
        assert (record.request.actor, record.request.approved_by) == ("anouk", "bas")
        trail = [(e.actor, e.action.value) for e in store.audit_entries()
                 if e.record_id == record_id and e.action.value != "viewed"]
    assert trail[:3] == [("postwacht", "held"), ("anouk", "release-requested"),
                         ("bas", "approved")]


def try_to_sign_in(page: Page, site: WebSite, name: str, password: str) -> int:
    """Send the sign-in form once; the status of the answer."""
    page.goto(f"{site.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.locator("form#login [type=submit]").click()
    return answer.value.status


def test_five_wrong_passwords_lock_the_name_even_for_the_right_one(
    site: WebSite, browser: Browser,
) -> None:
    with browser_context(browser) as context:
        page = context.new_page()
        for attempt in range(5):
            assert try_to_sign_in(page, site, "tom", f"wrong-password-{attempt}") == 401
            expect(page.locator("#message")).to_have_text("Wrong name or password.")
        assert try_to_sign_in(page, site, "tom", PEOPLE["tom"].password) == 429
        expect(page.locator("#message")).to_contain_text("The password was not checked")
        expect(page.locator("#retry")).to_be_visible()
        assert [c for c in context.cookies() if c["name"] == "postwacht_session"] == []
    with signed_in(browser, site, "ruben") as page:  # another name is not locked
        expect(page.locator(".who")).to_contain_text("ruben")


def test_cookies_are_secure_httponly_and_strict(site: WebSite, browser: Browser) -> None:
    with browser_context(browser) as context:
        page = context.new_page()
        sign_in(page, site.url, "ruben", PEOPLE["ruben"].password)
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["postwacht_session"]
        assert (session["secure"], session["httpOnly"], session["sameSite"]) == (
            True, True, "Strict")
        assert session["path"] == "/"
        with page.expect_navigation():
            page.locator("form#logout [type=submit]").click()
        expect(page).to_have_url(re.compile(r"/login"))
        assert "postwacht_session" not in {c["name"] for c in context.cookies()}
        page.goto(f"{site.url}/held")
        expect(page).to_have_url(re.compile(r"/login"))  # the session was closed


def test_every_page_carries_the_security_headers(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    recipient = hold_lookalike(lab, local="kopjes")
    pages = ["/held", "/held?state=all&rule=lookalike", "/audit", "/retired", "/domains",
             "/policy", "/users", "/held/999999", "/held/x", "/no-such-page"]
    with signed_in(browser, site, "ada") as page:
        record_id = open_from_list(page, site, recipient)
        pages.append(f"/held/{record_id}")
        for path in pages:
            response = page.goto(f"{site.url}{path}")
            assert response is not None
            assert_security_headers(response.headers, path)
    with browser_context(browser) as context:
        page = context.new_page()
        response = page.goto(f"{site.url}/login")
        assert response is not None
        assert_security_headers(response.headers, "/login")
        assert "postwacht_login" in {c["name"] for c in context.cookies()}
        [login] = [c for c in context.cookies() if c["name"] == "postwacht_login"]
        assert (login["secure"], login["httpOnly"], login["sameSite"]) == (
            True, True, "Strict")


def assert_security_headers(headers: dict[str, str], path: str) -> None:
    csp = headers.get("content-security-policy", "")
    assert "default-src 'none'" in csp, path
    assert "script-src" not in csp or "script-src 'none'" in csp, path
    assert "frame-ancestors 'none'" in csp, path
    assert "form-action 'self'" in csp, path
    assert headers.get("x-content-type-options") == "nosniff", path
    assert headers.get("x-frame-options") == "DENY", path
    assert headers.get("referrer-policy") == "no-referrer", path
    assert headers.get("cache-control") == "no-store", path


def test_an_html_body_with_scripts_is_shown_as_text_and_runs_nothing(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    recipient = hold_lookalike(lab, HOSTILE_HTML, content_type="text/html", local="factuur")
    with signed_in(browser, site, "ruben") as page:
        watch = ScriptWatch(page)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        record_id = open_from_list(page, site, recipient)
        wait_for_content(page)
        expect(page.locator("#text")).to_contain_text("<script>document.title=")
        expect(page.locator("#text")).to_contain_text("onerror=")
        expect(page.locator("#content-notes")).to_contain_text("HTML")
        watch.assert_nothing_ran(f"#{record_id} · Postwacht")
        expect(page.locator("#text script, #text img")).to_have_count(0)
        assert not [url for url in requested if url.endswith("/x")]  # the image was not loaded


def test_a_dutch_browser_gets_the_dutch_desk(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    recipient = hold_lookalike(lab, local="nederlands")
    with browser_context(browser, locale="nl-NL") as context:
        page = context.new_page()
        page.goto(f"{site.url}/login")
        expect(page.locator("html")).to_have_attribute("lang", "nl")
        expect(page.locator("h1")).to_have_text("Aanmelden")
        assert try_to_sign_in(page, site, "ruben", "niet-het-wachtwoord") == 401
        expect(page.locator("#message")).to_have_text("Naam of wachtwoord onjuist.")
        sign_in(page, site.url, "ruben", PEOPLE["ruben"].password)
        expect(page.locator("h1")).to_have_text("Vastgehouden mail")
        expect(page.locator("form#logout")).to_contain_text("Afmelden")
        open_from_list(page, site, recipient)
        expect(page.locator("main")).to_contain_text("Besluit")
        expect(page.locator("form#release-plain [type=submit]")).to_have_text("Vrijgeven")
        expect(page.locator("form#delete [type=submit]")).to_have_text("Verwijderen")
        for english in ("Held mail", "Sign out", "Decision", "Release"):
            expect(page.locator("body")).not_to_contain_text(english)


def test_a_bulk_release_checks_each_message_on_its_own(
    lab: Lab, site: WebSite, browser: Browser,
) -> None:
    ordinary = [hold_lookalike(lab, local="bulk"), hold_lookalike(lab, local="bulk")]
    sensitive = hold_sensitive(lab, local="bulk")
    with signed_in(browser, site, "ruben") as page:
        page.goto(f"{site.url}/held?q=bulk-")
        rows = page.locator("#held tbody tr")
        expect(rows).to_have_count(3)
        for row in rows.all():
            row.locator("input[name=record]").check()
        bulk = page.locator("form#bulk")
        bulk.locator("select[name=action]").select_option("release")
        bulk.locator("input[name=reason]").fill("the addresses were checked with the team")
        with page.expect_navigation():
            bulk.locator("[type=submit]").click()
        outcomes = page.locator("#outcomes tbody tr")
        expect(outcomes).to_have_count(3)
        expect(page.locator("#outcomes tr.done")).to_have_count(2)
        expect(page.locator("#outcomes tr.refused")).to_contain_text("in the clear")
    for recipient in ordinary:
        poll(lambda r=recipient: lab.sink.received(r), f"the bulk release of {recipient}")
    assert lab.sink.received(sensitive) == []
    assert any(sensitive in [r["address"] for r in e["recipients"]]
               for e in lab.postfix.held())


SCREENSHOTS = ROOT / "docs" / "screenshots"
DESK = [  # sender, recipient, subject, body: what a privacy officer finds on a Monday
    ("e.jansen@samen-veilig.nl", "j.devries@samen-veiIig.nl", "Overdracht casus",
     "Hoi Jeroen,\r\n\r\nZoals besproken de overdracht van de casus.\r\n"),
    ("m.bakker@samen-veilig.nl", "planning@samenveilig.nl", "Rooster week 12",
     "Het rooster voor volgende week staat hieronder.\r\n"),
    ("s.yilmaz@samen-veilig.nl", "secretariaat@bjz-utrecht.nl", "Uitnodiging MDO",
     "Graag nodig ik u uit voor het multidisciplinair overleg.\r\n"),
    ("e.jansen@samen-veilig.nl", "jeugdarts@plain.pw.test", "Verslag huisbezoek",
     "Verslag van het huisbezoek van dinsdag.\r\nBSN: 123456782\r\n"
     "Moeder geeft aan dat het beter gaat.\r\n"),
    ("r.kok@samen-veilig.nl", "wijkteam@unsigned.pw-unsigned.test", "Aanmelding gezin",
     "Aanmelding van het gezin, BSN 111222333, voor het wijkteam.\r\n"),
]


@pytest.fixture
def desk(dns_lab: DnsLab, sts_server: StsServer) -> Iterator[tuple[Lab, WebSite]]:
    """A lab of its own, so that its held list shows only the DESK messages."""
    with running_lab("postwacht-desk-", cafile=sts_server.cafile, mta="mx1",
                     policy=secure_transport(dns_lab, sts_server)) as started:
        options = started.daemon.records_options
        for person in ("ruben", "anouk", "bas"):
            add_user(started.daemon.root, options, person, PEOPLE[person].role,
                     PEOPLE[person].password)
        web = WebSite(started.daemon.root, options)
        web.start()
        try:
            yield started, web
        finally:
            assert web.stop() == 0, "postwacht web did not stop cleanly on SIGTERM"
            assert "Traceback" not in web.log_text(), web.log_text()


def test_the_held_list_shows_each_hold_with_its_rule(
    desk: tuple[Lab, WebSite], browser: Browser,
) -> None:
    """Also the README's screenshots, written when POSTWACHT_SCREENSHOTS is set."""
    lab, site = desk
    for sender, recipient, subject, body in DESK:
        name = sender.split("@")[0].replace(".", " ").title()
        message = (f"From: {name} <{sender}>\r\nTo: <{recipient}>\r\nSubject: {subject}\r\n"
                   f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}")
        with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
            smtp.sendmail(sender, [recipient], message.encode())
        held_for(lab, recipient)
    with signed_in(browser, site, "anouk") as page:
        open_from_list(page, site, "wijkteam@unsigned.pw-unsigned.test")
        wait_for_content(page)
        submit(page, "release-override", "wijkteam bevestigde telefonisch; geen andere weg")
        with signed_in(browser, site, "ruben") as reviewer:
            rows = reviewer.locator("#held tbody tr")
            expect(rows).to_have_count(len(DESK))
            for _, recipient, _, _ in DESK:
                rule = "insecure-transport" if ".test" in recipient else "lookalike"
                expect(rows.filter(has_text=recipient)).to_contain_text(rule)
            expect(rows.filter(has_text="wijkteam@")).to_contain_text("awaiting approval")
            if os.environ.get("POSTWACHT_SCREENSHOTS"):
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                reviewer.screenshot(path=str(SCREENSHOTS / "held-list.png"), full_page=True)
            open_from_list(reviewer, site, "jeugdarts@plain.pw.test")
            wait_for_content(reviewer)
            expect(reviewer.locator("#text")).to_contain_text("*******82")
            if os.environ.get("POSTWACHT_SCREENSHOTS"):
                reviewer.screenshot(path=str(SCREENSHOTS / "message.png"), full_page=True)
