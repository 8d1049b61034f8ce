"""The review site (`postwacht web`): held mail, its decisions and content, the audit
trail and the daemons' reports, for privacy officers who are not Unix administrators.

It reads and writes the records store only. It runs no Postfix command and reads no
policy file or queue: an action is a request in the store, carried out by the daemon on
the MTA that holds the message, which also captures what review may see of a message's
content (text only, BSNs masked, never HTML or an attachment's bytes).

It trusts a session cookie whose hash the store knows, and the single sign-on header only
on requests from the one trusted proxy address. Fail closed: every page checks the role
on the server; every POST needs the session's CSRF token and, when the browser names an
Origin, our own host; a store that fails is a 503 page, never an empty list; no script
runs (the CSP allows none), so a message's text is only ever shown as text.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask

from postwacht.adapters.web import accounts, actions, confirm, pages, signin
from postwacht.adapters.web.auth import Passwords
from postwacht.adapters.web.confirm import SenderLinks
from postwacht.adapters.web.site import Desk, WebSettings, install, when
from postwacht.records.store import RecordStore

BODY_MAX = 64 * 1024
"""Bytes of a request body: the largest form (a bulk action over every listed row) fits."""
FORM_PARTS_MAX = 1200


def create_app(store: RecordStore, settings: WebSettings,
               passwords: Passwords | None = None,
               links: SenderLinks | None = None) -> Flask:
    """The site over `store`; `passwords` to hash with other argon2 parameters (tests);
    `links` to answer the senders' confirmation links (`/confirm/...`: none without)."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=BODY_MAX, MAX_FORM_MEMORY_SIZE=BODY_MAX,
                      MAX_FORM_PARTS=FORM_PARTS_MAX, TRAP_BAD_REQUEST_ERRORS=False)
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["hours"] = _hours
    desk = Desk(store, settings, passwords)
    install(app, desk)
    signin.register(app, desk)
    accounts.register(app, desk)
    pages.register(app, desk)
    actions.register(app, desk)
    if links is not None:
        confirm.register(app, desk, links)
    return app


def _hours(at: dt.datetime, now: dt.datetime) -> str:
    return f"{(now - at).total_seconds() / 3600:.1f}"


__all__ = ["SenderLinks", "WebSettings", "create_app"]
