"""Accounts: the admin's page on the site, and `postwacht users` on the command line,
over a real SQLite store. The store keeps only argon2 hashes; every change is audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from postwacht.cli import main
from postwacht.core.roles import Role
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import AuditAction

from tests.unit.test_web_signin import (
    PASSWORD,
    post,
    sign_in,
    signed_in,
    site,
    with_accounts,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRecords]:
    records = with_accounts(tmp_path / "state")
    yield records
    records.close()


@pytest.fixture
def app(store: SqliteRecords) -> Flask:
    return site(store)


def test_only_an_admin_sees_the_accounts_page(app: Flask) -> None:
    assert signed_in(app, "piet").get("/users").status_code == 403
    page = signed_in(app, "anna").get("/users").get_data(as_text=True)
    assert "rita@samen-veilig.nl" in page
    assert 'id="add-user"' in page
    assert post(signed_in(app, "piet"), "/users/add", name="eve", role="admin",
                password=PASSWORD).status_code == 403


def test_an_admin_adds_changes_and_removes_an_account(app: Flask, store: SqliteRecords) -> None:
    anna = signed_in(app, "anna")
    added = post(anna, "/users/add", name="nina", role="reviewer", email="nina@samen-veilig.nl",
                 password="a fine long password")
    assert added.status_code == 200
    assert "Account nina added." in added.get_data(as_text=True)
    user = store.user("nina")
    assert user is not None
    assert (user.role, user.has_password) == (Role.REVIEWER, True)
    assert store.password_hash("nina").startswith("$argon2id$")
    assert sign_in(app.test_client(), "nina", "a fine long password").status_code == 303
    assert post(anna, "/users/role", name="nina", role="approver").status_code == 200
    assert store.user("nina").role is Role.APPROVER  # type: ignore[union-attr]
    assert post(anna, "/users/remove", name="nina").status_code == 200
    assert store.user("nina") is None
    actions = [e.action for e in store.audit_search(actor="anna")]
    assert {AuditAction.USER_ADDED, AuditAction.ROLE_CHANGED, AuditAction.USER_REMOVED,
            AuditAction.SIGNED_IN} <= set(actions)


@pytest.mark.parametrize(("form", "message"), [
    ({"name": "two words", "role": "viewer"}, "one word"),
    ({"name": "eve", "role": "root"}, "Choose one of the roles"),
    ({"name": "eve", "role": "viewer", "password": "short"}, "at least 12 characters"),
    ({"name": "eve", "role": "viewer", "email": "not an address"}, "not one email address"),
    ({"name": "rita", "role": "viewer"}, "there is a user rita already"),
])
def test_a_bad_account_is_refused_with_a_reason(app: Flask, store: SqliteRecords,
                                                form: dict[str, str], message: str) -> None:
    response = post(signed_in(app, "anna"), "/users/add", **form)
    assert response.status_code in (400, 409)
    assert message in response.get_data(as_text=True)
    assert store.user("eve") is None


def test_an_admin_cannot_demote_or_remove_themselves_here(app: Flask,
                                                          store: SqliteRecords) -> None:
    anna = signed_in(app, "anna")
    assert post(anna, "/users/role", name="anna", role="viewer").status_code == 409
    assert post(anna, "/users/remove", name="anna").status_code == 409
    assert store.user("anna").role is Role.ADMIN  # type: ignore[union-attr]


def test_a_new_password_signs_the_account_out_everywhere(app: Flask) -> None:
    rita = signed_in(app, "rita")
    anna = signed_in(app, "anna")
    assert post(anna, "/users/password", name="rita",
                password="another long secret").status_code == 200
    assert rita.get("/held").status_code == 303
    assert sign_in(app.test_client(), "rita", "another long secret").status_code == 303


def test_a_role_change_applies_to_an_open_session(app: Flask, store: SqliteRecords) -> None:
    rita = signed_in(app, "rita")
    store.set_role("rita", Role.VIEWER, "anna")
    assert "rita (viewer)" in rita.get("/held").get_data(as_text=True)


# The command line.


def users(state: Path, *args: str) -> int:
    return main(["users", "--state", str(state), *args])


@pytest.fixture
def state(tmp_path: Path) -> Path:
    SqliteRecords(tmp_path / "state", mta="mta-a").close()
    return tmp_path / "state"


def password_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "password"
    path.write_text(text + "\n")
    path.chmod(mode)
    return str(path)


def test_users_add_list_set_role_and_remove(state: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    secret = password_file(tmp_path, "a fine long password")
    assert users(state, "add", "nina", "--role", "reviewer", "--email", "nina@example.org",
                 "--password-file", secret, "--actor", "beheer") == 0
    assert users(state, "add", "sso-only", "--role", "viewer", "--no-password") == 0
    capsys.readouterr()
    assert users(state, "list", "--json") == 0
    listed = {u["name"]: u for u in json.loads(capsys.readouterr().out)}
    assert listed["nina"]["role"] == "reviewer"
    assert listed["nina"]["has_password"]
    assert listed["nina"]["created_by"] == "beheer"
    assert not listed["sso-only"]["has_password"]
    assert users(state, "set-role", "nina", "approver", "--actor", "beheer") == 0
    assert users(state, "remove", "sso-only", "--actor", "beheer") == 0
    store = SqliteRecords(state, create=False, mta="mta-a")
    try:
        assert [(u.name, u.role) for u in store.users()] == [("nina", Role.APPROVER)]
        assert PasswordHasher().verify(store.password_hash("nina"), "a fine long password")
        assert {e.action for e in store.audit_search(actor="beheer")} == {
            AuditAction.USER_ADDED, AuditAction.ROLE_CHANGED, AuditAction.USER_REMOVED}
    finally:
        store.close()


def test_users_refuses_a_short_password_and_a_world_readable_file(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert users(state, "add", "nina", "--role", "viewer", "--password-file",
                 password_file(tmp_path, "short")) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert users(state, "add", "nina", "--role", "viewer", "--password-file",
                 password_file(tmp_path, "a fine long password", 0o644)) == 2
    assert "readable by every user" in capsys.readouterr().err


def test_users_asks_twice_and_refuses_two_different_passwords(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["a fine long password", "a fine long passw0rd"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert users(state, "set-password", "nobody", "--actor", "beheer") == 2
    assert "the two passwords differ" in capsys.readouterr().err


def test_users_names_what_is_wrong(state: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert users(state, "remove", "nobody", "--actor", "beheer") == 1
    assert "nobody is not a user" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        users(state, "add", "two words", "--role", "viewer", "--no-password")
    with pytest.raises(SystemExit):
        users(state, "set-role", "nina", "root")


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "0.0.0.0:8080"], "not a loopback address"),
    (["--trusted-header", "X-Remote-User"], "--trusted-header needs --trusted-proxy"),
    (["--trusted-header", "X-Remote-User", "--trusted-proxy", "127.0.0.1"],
     "--trusted-header needs --proxy-secret-file"),
    (["--trusted-header", "X-Remote-User", "--trusted-proxy", "127.0.0.1",
      "--proxy-secret-file", "/nonexistent/secret"], "--proxy-secret-file /nonexistent/secret"),
])
def test_web_refuses_a_risky_start_and_says_why(state: Path, args: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--state", str(state), *args]) == 2
    assert message in capsys.readouterr().err
