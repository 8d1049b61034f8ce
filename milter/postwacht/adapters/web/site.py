"""What every request goes through: who is asking (session cookie, or the single sign-on
header from the trusted proxy), whether a POST came from one of our own forms, the
response headers, and one error page for every error."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import Flask, Response, g, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from postwacht.adapters.web.auth import (
    CONFIRM_COOKIE,
    IDLE,
    LIFETIME,
    LOGIN_COOKIE,
    PROXY_SECRET_HEADER,
    SESSION_COOKIE,
    TOKEN_MAX,
    Passwords,
    is_user_name,
    new_token,
    same_token,
    token_hash,
)
from postwacht.adapters.web.i18n import DEFAULT, LANGUAGES, Words
from postwacht.core.roles import Permission, allows, least_role
from postwacht.core.text import printable
from postwacht.records.store import (
    AuditAction,
    QuarantineRecord,
    RecordsError,
    RecordStore,
    Session,
)

log = logging.getLogger("postwacht.web")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
VISITOR_FORMS = {"login": LOGIN_COOKIE, "confirm": CONFIRM_COOKIE}
"""The forms of visitors without a session (signing in, a sender's confirmation), by
endpoint: the cookie that holds their CSRF token (double submit)."""


@dataclass(frozen=True, slots=True)
class WebSettings:
    trusted_header: str = ""
    """The single sign-on header ('' for none), believed only from `trusted_proxy`."""
    trusted_proxy: str = ""
    """The reverse proxy's address ('' for none): its X-Forwarded-For names the client."""
    proxy_secret: str = ""
    """What the proxy sends in PROXY_SECRET_HEADER ('' for none): on loopback every local
    process has the proxy's address, so the address alone proves nothing there."""


@dataclass(frozen=True, slots=True)
class Phrase:
    """A message part said in the visitor's language when the page is made."""

    key: str
    values: dict[str, object]


class PageError(Exception):
    """A request answered with an error page: the status, and the catalogue key (with its
    values) of the message."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.values = values


class SignInFirstError(Exception):
    """Answered with a 303 to `location` (the sign-in page, before a page that needs it)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class Desk:
    """The site's state, built once by `create_app` and handed to each group of routes."""

    def __init__(self, store: RecordStore, settings: WebSettings,
                 passwords: Passwords | None = None) -> None:
        self.store = store
        self.settings = settings
        self.passwords = passwords or Passwords()

    # Who is asking.

    def words(self) -> Words:
        words = g.get("words")
        if not isinstance(words, Words):
            best = request.accept_languages.best_match(LANGUAGES, default=DEFAULT)
            words = Words(best or DEFAULT)
            g.words = words
        return words

    def from_proxy(self) -> bool:
        proxy, secret = self.settings.trusted_proxy, self.settings.proxy_secret
        if not proxy or not _same_address(request.remote_addr or "", proxy):
            return False
        return not secret or same_token(request.headers.get(PROXY_SECRET_HEADER, ""), secret)

    def client(self) -> str:
        """The client's address, for logs, the audit trail and the per-address limit:
        behind the trusted proxy the last X-Forwarded-For entry (the one it added)."""
        if self.from_proxy():
            forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
            if forwarded:
                return printable(forwarded, 64)
        return printable(request.remote_addr or "unknown", 64)

    def visitor(self) -> Session | None:
        visitor = g.get("visitor")
        return visitor if isinstance(visitor, Session) else None

    def require(self, permission: Permission) -> Session:
        """The signed-in user, if their role allows `permission`; else the sign-in page
        (GET) or a 403 page."""
        visitor = self.visitor()
        if visitor is None:
            if request.method == "GET":
                raise SignInFirstError(url_for("login_form", next=request.full_path.rstrip("?")))
            raise PageError(403, "error.signed_out")
        if not allows(visitor.role, permission):
            log.warning("refused: %s (%s) may not %s: %s %s", visitor.name, visitor.role,
                        permission, request.method, printable(request.path, 200))
            raise PageError(403, "error.role", role=visitor.role,
                          needed=least_role(permission))
        return visitor

    def may(self, permission: Permission) -> bool:
        visitor = self.visitor()
        return visitor is not None and allows(visitor.role, permission)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        words = self.words()
        visitor = self.visitor()
        return make_response(render_template(
            template, t=words, lang=words.lang, user=visitor,
            csrf=visitor.csrf if visitor else "", may=self._may_by_name, **context), status)

    def _may_by_name(self, permission: str) -> bool:
        return self.may(Permission(permission))

    def record(self, record_id: int) -> QuarantineRecord:
        """The record, or a 404 page."""
        record = self.record_or_none(record_id)
        if record is None:
            raise PageError(404, "error.no_record", record=record_id)
        return record

    def record_or_none(self, record_id: int) -> QuarantineRecord | None:
        """The record, or None when there is none. The store says "no such record" and
        "cannot read" with one exception class: a second read that works tells them
        apart (a store that fails raises again: a 503)."""
        try:
            return self.store.record(record_id)
        except RecordsError:
            self.store.audit_head()
            return None

    # The hooks.

    def identify(self) -> None:
        if request.endpoint == "static":
            return
        g.visitor = self._session()
        if request.method == "POST":
            self._check_form()

    def _session(self) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        session = (self.store.session(token_hash(token), IDLE, LIFETIME)
                   if 0 < len(token) <= TOKEN_MAX else None)
        name = self._single_sign_on()
        if name is None or (session is not None and session.name == name):
            return session
        if self.store.user(name) is None:
            log.warning("single sign-on refused: name %s from %s: no such user", name,
                        self.client())
            raise PageError(403, "error.sso_unknown", name=name)
        token = new_token()
        self.store.open_session(token_hash(token), name, new_token())
        self.store.note(name, AuditAction.SIGNED_IN,
                        detail=f"from {self.client()} by single sign-on")
        log.info("signed in: %s from %s by single sign-on", name, self.client())
        g.new_token = token
        return self.store.session(token_hash(token), IDLE, LIFETIME)

    def _single_sign_on(self) -> str | None:
        header = self.settings.trusted_header
        if not header or not self.from_proxy():
            return None
        name = request.headers.get(header, "")
        if not name:
            return None
        if not is_user_name(name):
            log.warning("single sign-on refused: header %s %r from %s: not a user name",
                        header, printable(name, 64), self.client())
            raise PageError(403, "error.sso_unknown", name=printable(name, 64))
        return name

    def _check_form(self) -> None:
        origin = request.headers.get("Origin", "")
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != \
                request.host.lower():
            self._refuse_form(f"Origin {printable(origin, 100)} is not "
                              f"{printable(request.host, 100)}")
        given = request.form.get("csrf", "")
        cookie = VISITOR_FORMS.get(request.endpoint or "")
        if cookie is not None:
            expected = request.cookies.get(cookie, "")
        else:
            visitor = self.visitor()
            if visitor is None:
                self._refuse_form("no session", "error.signed_out")
            expected = visitor.csrf
        if not same_token(given, expected):
            self._refuse_form("missing or wrong csrf token")

    def _refuse_form(self, why: str, key: str = "error.csrf") -> NoReturn:
        visitor = self.visitor()
        log.warning("form refused: %s %s from %s (%s): %s", request.method,
                    printable(request.path, 200), self.client(),
                    visitor.name if visitor else "not signed in", why)
        raise PageError(403, key)

    def finish(self, response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        if request.endpoint != "static":
            headers["Cache-Control"] = "no-store"
        token = g.get("new_token")
        if isinstance(token, str):
            set_session_cookie(response, token)
        return response

    # Error pages.

    def refused(self, error: PageError) -> Response:
        words = self.words()
        values = {name: words(v.key, **v.values) if isinstance(v, Phrase) else v
                  for name, v in error.values.items()}
        return self.error_page(error.status, words(error.key, **values))

    def redirected(self, to: SignInFirstError) -> Response:
        return make_response(redirect(to.location, 303))

    def http_error(self, error: HTTPException) -> Response:
        code = error.code or 500
        words = self.words()
        key = f"error.http{code}"
        message = words(key) if words.has(key) else words("error.http")
        response = self.error_page(code, message)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    def store_failed(self, error: RecordsError) -> Response:
        log.error("records store failed: %s %s: %s", request.method,
                  printable(request.path, 200), printable(str(error)))
        # Where the records live, and why they fail, is for the log, not for any visitor.
        return self.error_page(503, self.words()("error.store"))

    def error_page(self, status: int, message: str) -> Response:
        return self.render("error.html", status, code=status, message=message)


def when(at: dt.datetime | None) -> str:
    """A moment as every page shows it (the `when` filter)."""
    return "" if at is None else at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def set_session_cookie(response: Response, token: str) -> None:
    # No Max-Age: the store ends the session (IDLE, LIFETIME); the browser forgets the
    # cookie when it closes.
    response.set_cookie(SESSION_COOKIE, token, secure=True, httponly=True,
                        samesite="Strict", path="/")


def _same_address(one: str, other: str) -> bool:
    try:
        return ipaddress.ip_address(one) == ipaddress.ip_address(other)
    except ValueError:
        return False


def install(app: Flask, desk: Desk) -> None:
    """The hooks and error handlers every route shares."""
    app.before_request(desk.identify)
    app.after_request(desk.finish)
    app.register_error_handler(PageError, desk.refused)
    app.register_error_handler(SignInFirstError, desk.redirected)
    app.register_error_handler(HTTPException, desk.http_error)
    app.register_error_handler(RecordsError, desk.store_failed)

