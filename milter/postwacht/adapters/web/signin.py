"""Signing in and out: the password form with its own CSRF cookie (there is no session
yet to hold a token), the rate limit, and the session cookie."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Flask, Response, make_response, redirect, request, url_for

from postwacht.adapters.web.auth import (
    FAILURE_WINDOW,
    LOGIN_COOKIE,
    LOGIN_COOKIE_SECONDS,
    PASSWORD_MAX,
    SESSION_COOKIE,
    TOKEN_MAX,
    is_user_name,
    new_token,
    safe_next,
    token_hash,
    too_many_failures,
)
from postwacht.adapters.web.site import Desk, set_session_cookie
from postwacht.core.text import printable
from postwacht.records.store import AuditAction

log = logging.getLogger("postwacht.web")


def register(app: Flask, desk: Desk) -> None:
    @app.get("/login")
    def login_form() -> Response:
        target = safe_next(request.args.get("next", ""))
        if desk.visitor() is not None:
            return make_response(redirect(target, 303))
        return sign_in_page(desk, target)

    @app.post("/login")
    def login() -> Response:
        return sign_in(desk)

    @app.post("/logout")
    def logout() -> Response:
        visitor = desk.visitor()
        token = request.cookies.get(SESSION_COOKIE, "")
        if visitor is not None:
            desk.store.close_session(token_hash(token))
            desk.store.note(visitor.name, AuditAction.SIGNED_OUT)
            log.info("signed out: %s from %s", visitor.name, desk.client())
        response = make_response(redirect(url_for("login_form"), 303))
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                               samesite="Strict")
        return response


def sign_in_page(desk: Desk, target: str, status: int = 200, error: str = "",
                 retry_at: dt.datetime | None = None) -> Response:
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not 0 < len(token) <= TOKEN_MAX:
        token = new_token()
    response = desk.render("login.html", status, login_csrf=token, next=target, error=error,
                           retry_at=retry_at)
    response.set_cookie(LOGIN_COOKIE, token, max_age=LOGIN_COOKIE_SECONDS, secure=True,
                        httponly=True, samesite="Strict", path="/login")
    if retry_at is not None:
        response.headers["Retry-After"] = str(int(FAILURE_WINDOW.total_seconds()))
    return response


def sign_in(desk: Desk) -> Response:
    """Refused without looking at the password once a name or an address failed too
    often; an unknown name costs one hash as a known one does."""
    form = request.form
    name, password = form.get("name", ""), form.get("password", "")
    target = safe_next(form.get("next", ""))
    client = desk.client()
    shown = printable(name, 64)
    now = dt.datetime.now(dt.UTC)
    since = now - FAILURE_WINDOW
    refused = too_many_failures(desk.store.sign_in_failures(since, name=shown),
                                desk.store.sign_in_failures(since, client=client), now)
    if refused is not None:
        log.warning("sign-in refused: name %s from %s: %s", shown, client, refused.why)
        return sign_in_page(desk, target, 429, desk.words()("login.too_many"),
                            refused.retry_at)
    known = is_user_name(name) and len(password) <= PASSWORD_MAX and \
        desk.store.user(name) is not None
    stored = desk.store.password_hash(name) if known else ""
    if not desk.passwords.verify(stored, password[:PASSWORD_MAX]):
        why = ("wrong password" if stored else "no local password" if known
               else "no such user")
        desk.store.sign_in_failed(shown, client)
        log.warning("sign-in failed: name %s from %s: %s", shown, client, why)
        return sign_in_page(desk, target, 401, desk.words()("login.failed"))
    if desk.passwords.needs_rehash(stored):
        desk.store.set_password(name, desk.passwords.hash(password), name)
    token = new_token()
    desk.store.open_session(token_hash(token), name, new_token())
    desk.store.note(name, AuditAction.SIGNED_IN, detail=f"from {client}")
    log.info("signed in: %s from %s", name, client)
    response = make_response(redirect(target, 303))
    set_session_cookie(response, token)
    response.delete_cookie(LOGIN_COOKIE, path="/login", secure=True, httponly=True,
                           samesite="Strict")
    return response
