"""The review site's front door, through Flask's test client over a real SQLite store:
sessions, the sign-in rate limit, CSRF and Origin checks, single sign-on, the headers.

The helpers here (a store with one account per role, signing in, posting a form) are
shared by the other tests of the site."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from postwacht.adapters.web import WebSettings, create_app
from postwacht.adapters.web.auth import FAILURES_PER_NAME, Passwords, token_hash
from postwacht.adapters.web.site import CSP
from postwacht.core.decide import RecipientVerdict
from postwacht.core.roles import Role
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import AuditAction, Hold
from werkzeug.test import TestResponse

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
"""Cheap parameters: the tests sign in often. A stored hash made with them is rehashed
with the defaults at sign-in, as an old hash would be."""
PASSWORD = "correct horse battery"
USERS = {"anna": Role.ADMIN, "piet": Role.APPROVER, "paula": Role.APPROVER,
         "rita": Role.REVIEWER, "rob": Role.REVIEWER, "vera": Role.VIEWER}
LOOKALIKE = RecipientVerdict("x@samen-veiIig.nl", ("samen-veiiig.nl",), Action.QUARANTINE,
                             Rule.LOOKALIKE, "looks like ours", "samen-veilig.nl")


def with_accounts(state: Path) -> SqliteRecords:
    """A new store with one account per entry of USERS, each with PASSWORD."""
    records = SqliteRecords(state, mta="mta-a")
    passwords = Passwords(FAST)
    for name, role in USERS.items():
        records.add_user(name, role, f"{name}@samen-veilig.nl", passwords.hash(PASSWORD),
                         "setup")
    return records


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRecords]:
    records = with_accounts(tmp_path / "state")
    yield records
    records.close()


def site(store: SqliteRecords, settings: WebSettings | None = None) -> Flask:
    return create_app(store, settings or WebSettings(), Passwords(FAST))


@pytest.fixture
def app(store: SqliteRecords) -> Flask:
    return site(store)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', page)
    assert found is not None, page
    return found.group(1)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD,
            **environ: str) -> TestResponse:
    page = client.get("/login", environ_base=environ).get_data(as_text=True)
    return client.post("/login", data={"csrf": csrf_of(page), "name": name,
                                       "password": password, "next": "/held"},
                       environ_base=environ)


def signed_in(app: Flask, name: str) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, name).status_code == 303
    return client


def post(client: FlaskClient, path: str, **form: str | list[str]) -> TestResponse:
    """A form as the site's own pages send it: with the session's CSRF token."""
    token = csrf_of(client.get("/held").get_data(as_text=True))
    return client.post(path, data={"csrf": token, **form})


def hold(store: SqliteRecords, queue_id: str, verdict: RecipientVerdict = LOOKALIKE, *,
         route: str | None = None, detected: str = "", sender: str = "s@samen-veilig.nl",
         mta: str = "mta-a") -> int:
    return store.record_quarantine(Hold(
        mta, queue_id, f"key-{queue_id}", sender, (verdict,), verdict.rule, verdict.reason,
        "0a1b2c3d4e5f", client="10.0.0.7", route=route, detected=detected)).record_id


def session_cookie(response: TestResponse) -> str:
    [cookie] = [c for c in response.headers.getlist("Set-Cookie")
                if c.startswith("postwacht_session=")]
    return cookie


def test_a_page_sends_a_visitor_who_is_not_signed_in_to_the_sign_in_form(app: Flask) -> None:
    response = app.test_client().get("/held?state=all")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/held?state%3Dall"


def test_signing_in_opens_a_server_side_session_named_by_a_strict_cookie(
    app: Flask, store: SqliteRecords
) -> None:
    client = app.test_client()
    response = sign_in(client, "rita")
    assert (response.status_code, response.headers["Location"]) == (303, "/held")
    cookie = session_cookie(response)
    assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} <= {
        part.strip() for part in cookie.split(";")}
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43
    session = store.session(token_hash(token), dt.timedelta(minutes=30), dt.timedelta(hours=12))
    assert session is not None
    assert (session.name, session.role) == ("rita", Role.REVIEWER)
    assert store.session(token, dt.timedelta(minutes=30), dt.timedelta(hours=12)) is None
    [entry] = store.audit_search(action=AuditAction.SIGNED_IN)
    assert (entry.actor, entry.detail) == ("rita", "from 127.0.0.1")
    assert client.get("/held").status_code == 200


def test_a_hash_made_with_old_parameters_is_renewed_at_sign_in(store: SqliteRecords) -> None:
    before = store.password_hash("rita")
    signed_in(create_app(store, WebSettings()), "rita")  # argon2's own parameters
    after = store.password_hash("rita")
    assert after != before
    assert not PasswordHasher().check_needs_rehash(after)


def test_signing_out_closes_the_session(app: Flask, store: SqliteRecords) -> None:
    client = signed_in(app, "vera")
    response = post(client, "/logout")
    assert (response.status_code, response.headers["Location"]) == (303, "/login")
    assert client.get("/held").status_code == 303
    [entry] = store.audit_search(action=AuditAction.SIGNED_OUT)
    assert entry.actor == "vera"


def test_a_wrong_password_is_refused_and_logged(
    app: Flask, store: SqliteRecords, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="postwacht.web"):
        response = sign_in(app.test_client(), "rita", "not the password")
        unknown = sign_in(app.test_client(), "nobody", PASSWORD)
    assert response.status_code == unknown.status_code == 401
    assert "Wrong name or password." in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers or "postwacht_session" not in str(
        response.headers.getlist("Set-Cookie"))
    lines = [r.getMessage() for r in caplog.records if r.name == "postwacht.web"]
    assert "sign-in failed: name rita from 127.0.0.1: wrong password" in lines
    assert "sign-in failed: name nobody from 127.0.0.1: no such user" in lines
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert store.sign_in_failures(since, client="127.0.0.1") == 2


def test_after_five_failures_a_name_is_refused_without_checking_the_password(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    for _ in range(FAILURES_PER_NAME):
        assert sign_in(client, "rita", "guess guess guess").status_code == 401
    with caplog.at_level(logging.WARNING, logger="postwacht.web"):
        refused = sign_in(client, "rita")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "900"
    assert "Try again after" in refused.get_data(as_text=True)
    assert any("sign-in refused: name rita from 127.0.0.1: 5 failed sign-ins" in r.getMessage()
               for r in caplog.records)
    assert sign_in(app.test_client(), "rob").status_code == 303  # another name still may


def test_after_twenty_failures_from_one_address_every_name_is_refused_there(
    app: Flask,
) -> None:
    for n in range(20):
        assert sign_in(app.test_client(), f"guess{n}", "x").status_code == 401
    assert sign_in(app.test_client(), "rita").status_code == 429
    assert sign_in(app.test_client(), "rita", REMOTE_ADDR="10.1.2.3").status_code == 303


def test_the_sign_in_form_needs_its_own_cookie_token(app: Flask,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    other = app.test_client()  # another browser: no cookie, a token copied from elsewhere
    with caplog.at_level(logging.WARNING, logger="postwacht.web"):
        response = other.post("/login", data={"csrf": csrf_of(page), "name": "rita",
                                              "password": PASSWORD})
    assert response.status_code == 403
    assert any("form refused: POST /login" in r.getMessage() for r in caplog.records)


def test_a_form_without_the_session_token_is_refused(app: Flask, store: SqliteRecords,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    record = hold(store, "ABC100")
    client = signed_in(app, "rita")
    with caplog.at_level(logging.WARNING, logger="postwacht.web"):
        missing = client.post(f"/held/{record}/delete", data={"reason": "spam"})
        wrong = client.post(f"/held/{record}/delete", data={"reason": "spam", "csrf": "x" * 43})
    assert missing.status_code == wrong.status_code == 403
    assert "did not come from this site" in wrong.get_data(as_text=True)
    assert sum("missing or wrong csrf token" in r.getMessage() for r in caplog.records) == 2
    assert store.record(record).status == "held"


def test_a_form_sent_from_another_origin_is_refused(app: Flask, store: SqliteRecords) -> None:
    record = hold(store, "ABC101")
    client = signed_in(app, "rita")
    token = csrf_of(client.get("/held").get_data(as_text=True))
    evil = client.post(f"/held/{record}/delete", data={"reason": "x", "csrf": token},
                       headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    ours = client.post(f"/held/{record}/delete", data={"reason": "x", "csrf": token},
                       headers={"Origin": "http://localhost"})
    assert ours.status_code == 303


@pytest.mark.parametrize("path", ["/login", "/held", "/nothing-here", "/static/style.css"])
def test_every_response_carries_the_security_headers(app: Flask, path: str) -> None:
    client = signed_in(app, "vera")
    response = client.get(path)
    assert response.headers["Content-Security-Policy"] == CSP
    assert "script-src" not in CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    if path != "/static/style.css":
        assert response.headers["Cache-Control"] == "no-store"


def test_no_page_carries_a_script(app: Flask, store: SqliteRecords) -> None:
    record = hold(store, "ABC102")
    client = signed_in(app, "anna")
    for path in ("/login", "/held", f"/held/{record}", "/audit", "/retired", "/domains",
                 "/policy", "/users"):
        page = client.get(path).get_data(as_text=True)
        assert "<script" not in page.lower(), path
        assert not re.search(r"<[^>]+\son[a-z]+=", page), path


SSO = WebSettings(trusted_header="X-Remote-User", trusted_proxy="127.0.0.1")


def test_single_sign_on_trusts_the_header_only_from_the_proxy(store: SqliteRecords) -> None:
    app = site(store, SSO)
    via_proxy = app.test_client()
    response = via_proxy.get("/held", headers={"X-Remote-User": "piet"})
    assert response.status_code == 200
    assert "piet (approver)" in response.get_data(as_text=True)
    assert "postwacht_session=" in session_cookie(response)
    again = via_proxy.get("/held", headers={"X-Remote-User": "piet"})
    assert "Set-Cookie" not in again.headers  # the same session goes on
    direct = app.test_client().get("/held", headers={"X-Remote-User": "piet"},
                                   environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert direct.status_code == 303  # to the sign-in form: the header meant nothing
    [entry] = store.audit_search(action=AuditAction.SIGNED_IN)
    assert entry.detail == "from 127.0.0.1 by single sign-on"


def test_single_sign_on_for_a_name_without_an_account_is_refused(store: SqliteRecords) -> None:
    response = site(store, SSO).test_client().get("/held", headers={"X-Remote-User": "eve"})
    assert response.status_code == 403
    assert "eve is not an account here" in response.get_data(as_text=True)


def test_without_the_options_the_header_is_ignored(app: Flask) -> None:
    response = app.test_client().get("/held", headers={"X-Remote-User": "anna"})
    assert response.status_code == 303


def test_a_session_works_with_forms_under_single_sign_on(store: SqliteRecords) -> None:
    record = hold(store, "ABC103")
    client = site(store, SSO).test_client()
    headers = {"X-Remote-User": "rita"}
    token = csrf_of(client.get("/held", headers=headers).get_data(as_text=True))
    response = client.post(f"/held/{record}/delete", headers=headers,
                           data={"csrf": token, "reason": "spam"})
    assert response.status_code == 303
    assert store.record(record).status == "requested"


def test_the_site_speaks_dutch_to_a_dutch_browser(app: Flask) -> None:
    page = app.test_client().get("/login", headers={"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"})
    text = page.get_data(as_text=True)
    assert '<html lang="nl">' in text
    assert "Aanmelden" in text
    english = app.test_client().get("/login", headers={"Accept-Language": "de, fr"})
    assert '<html lang="en">' in english.get_data(as_text=True)


def test_a_next_address_elsewhere_is_not_followed(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login?next=//evil.example/").get_data(as_text=True)
    assert 'name="next" value="/held"' in page
    response = client.post("/login", data={"csrf": csrf_of(page), "name": "vera",
                                           "password": PASSWORD, "next": "https://evil.example"})
    assert response.headers["Location"] == "/held"
