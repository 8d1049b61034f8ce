"""A sender's answer to a first-recipient hold, without signing in (the sender has no
account): the two signed links of the notice, "send it" and "cancel" (`notices.links`).

Opening a link (GET) only shows what is held and one button: mail scanners follow links,
so nothing is done until a person presses it (POST, checked like every form, its CSRF
token in a cookie of its own as on the sign-in form, there being no session). Both check
the link: signed with the link key for this very hold, and not past its expiry. What the
sender may decide is `records.review.confirm`'s; this module says it in the sender's
language. A damaged link is a 403 page, an expired one a 410, a message that no longer
waits for its sender (or was never the sender's to decide) a 409: each says what to do.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, request

from postwacht.adapters.web.auth import (
    CONFIRM_COOKIE,
    CONFIRM_COOKIE_SECONDS,
    TOKEN_MAX,
    new_token,
)
from postwacht.adapters.web.site import Desk, when
from postwacht.core.text import printable
from postwacht.notices.links import Confirm, Link, LinkError, check, parse
from postwacht.records import review
from postwacht.records.review import Remember, ReviewError
from postwacht.records.store import QuarantineRecord, Review, Status

log = logging.getLogger("postwacht.web")

LINK_MAX = 100
"""Characters of a token in the path; `notices.links` makes at most 71."""
REVIEWS = {Confirm.SEND: Review.RELEASE, Confirm.CANCEL: Review.DELETE}


@dataclass(frozen=True, slots=True)
class SenderLinks:
    """What the confirmation pages need beyond the store."""

    key: bytes
    """The link key (`records.secret.derive(secret, "links")`), as the notices sign with."""
    remember: Remember | None = None
    """Learns a sender's confirmed recipients (the known correspondents)."""
    clock: Callable[[], float] = time.time


class RefusedLinkError(Exception):
    """A link answered with a page that says why it cannot be used."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def register(app: Flask, desk: Desk, links: SenderLinks) -> None:
    path = f"/confirm/<string(maxlength={LINK_MAX}):token>"

    @app.get(path)
    def confirm_page(token: str) -> Response:
        try:
            link, record = checked(desk, links, token)
        except RefusedLinkError as exc:
            return refused_page(desk, exc)
        return question_page(desk, token, link, record)

    @app.post(path)
    def confirm(token: str) -> Response:
        try:
            link, record = checked(desk, links, token)
            decide(desk, links, link, record)
        except RefusedLinkError as exc:
            return refused_page(desk, exc)
        log.info("sender's link: %s #%d from %s", link.action, record.record_id, desk.client())
        words = desk.words()
        if link.action is Confirm.SEND:
            title, message = words("confirm.done_send_title"), words("confirm.done_send")
        else:
            title, message = words("confirm.done_cancel_title"), words("confirm.done_cancel")
        return desk.render("confirm_result.html", title=title, message=message,
                           audited=words("confirm.audited"), failed=False)


def checked(desk: Desk, links: SenderLinks, token: str) -> tuple[Link, QuarantineRecord]:
    """The link and its record, if the link holds and the message waits for its sender."""
    words = desk.words()
    try:
        link = parse(token)
    except LinkError:
        raise tampered(desk, token) from None
    record = desk.record_or_none(link.record_id)
    if record is None:
        raise tampered(desk, token)
    try:
        check(links.key, link, record.key, links.clock())
    except LinkError as exc:
        if exc.kind != "expired":
            raise tampered(desk, token) from None
        at = when(dt.datetime.fromtimestamp(link.expires, dt.UTC))
        message = (words("confirm.expired", at=at) if record.status is Status.HELD else
                   f"{words('confirm.expired_at', at=at)} {what_became(desk, record)}")
        log.info("sender's link refused: #%d from %s: expired at %s", record.record_id,
                 desk.client(), at)
        raise RefusedLinkError(410, words("confirm.title_expired"), message) from None
    why_not = waits_not(desk, record)
    if why_not:
        log.info("sender's link refused: #%d from %s: the record is %s", record.record_id,
                 desk.client(), record.status)
        raise RefusedLinkError(409, words("confirm.title_conflict"), why_not)
    return link, record


def decide(desk: Desk, links: SenderLinks, link: Link, record: QuarantineRecord) -> None:
    try:
        review.confirm(desk.store, record, REVIEWS[link.action], links.remember)
    except ReviewError as exc:  # another person acted since the record was read, say
        log.info("sender's link not done: %s #%d: %s", link.action, record.record_id,
                 printable(str(exc)))
        now = desk.record_or_none(record.record_id) or record
        raise RefusedLinkError(409, desk.words()("confirm.title_conflict"),
                               waits_not(desk, now) or desk.words()("confirm.officer")
                               ) from None


def tampered(desk: Desk, token: str) -> RefusedLinkError:
    log.warning("sender's link refused from %s: damaged or changed: %s", desk.client(),
                printable(token, LINK_MAX))
    words = desk.words()
    return RefusedLinkError(403, words("confirm.title_tampered"), words("confirm.tampered"))


def waits_not(desk: Desk, record: QuarantineRecord) -> str:
    """Why the message no longer waits for its sender's answer ('' when it does)."""
    if record.status is not Status.HELD:
        return what_became(desk, record)
    if not review.sender_decides(record):
        return desk.words()("confirm.officer")
    return ""


def what_became(desk: Desk, record: QuarantineRecord) -> str:
    """What happened to a message no longer held, as its sender may be told."""
    words = desk.words()
    mine = review.by_sender(record)
    if mine is not None:
        return words("confirm.already_sent") if mine.action is Review.RELEASE else \
            words("confirm.already_cancelled")
    asked = record.request
    match record.status:
        case Status.REQUESTED if asked is not None and asked.action is Review.RELEASE:
            return words("confirm.release_asked")
        case Status.REQUESTED:
            return words("confirm.delete_asked")
        case Status.RELEASED:
            return words("confirm.released")
        case Status.DELETED:
            return words("confirm.deleted")
        case Status.EXPIRED:
            return words("confirm.expired_record")
        case _:
            return words("confirm.gone")


def question_page(desk: Desk, token: str, link: Link, record: QuarantineRecord) -> Response:
    csrf = request.cookies.get(CONFIRM_COOKIE, "")
    if not 0 < len(csrf) <= TOKEN_MAX:
        csrf = new_token()
    response = desk.render(
        "confirm.html", record=record, token=token, confirm_csrf=csrf,
        send=link.action is Confirm.SEND,
        addresses=[v.address for v in review.held_by(record)],
        expires=dt.datetime.fromtimestamp(link.expires, dt.UTC))
    response.set_cookie(CONFIRM_COOKIE, csrf, max_age=CONFIRM_COOKIE_SECONDS, secure=True,
                        httponly=True, samesite="Strict", path="/confirm")
    return response


def refused_page(desk: Desk, refused: RefusedLinkError) -> Response:
    return desk.render("confirm_result.html", refused.status, title=refused.title,
                       message=refused.message, audited="", failed=True)
