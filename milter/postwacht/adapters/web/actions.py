"""The forms that ask for something: release, delete, approve, decline, dismiss, and the
same for many records at once. Each writes a request through `records.review`, after
checking the visitor's role here; the daemon on the MTA that holds the message carries
it out. Nothing here runs a Postfix command."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, make_response, redirect, request, url_for

from postwacht.adapters.web.pages import ACTIONS, RECORD_ID_MAX, ROWS_MAX, record_page
from postwacht.adapters.web.site import Desk, PageError, Phrase
from postwacht.core.roles import Permission
from postwacht.core.text import printable
from postwacht.records import review
from postwacht.records.review import ReviewError, check_release
from postwacht.records.sql import REASON_MAX
from postwacht.records.store import (
    ConflictError,
    QuarantineRecord,
    RecordsError,
    ReleaseMode,
    Request,
    Review,
)

log = logging.getLogger("postwacht.web")

BULK_MODES = (ReleaseMode.PLAIN, ReleaseMode.ROUTE)
"""A release of many records takes, for each, the first of these its checks allow; an
override is a decision about one message, made on its own page."""


class NotDoneError(Exception):
    """An action that was refused for this record; the message says why (for a person)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    record_id: int
    queue_id: str
    done: bool
    message: str


def reason_of(desk: Desk) -> str:
    reason = request.form.get("reason", "").strip()
    if not reason:
        raise NotDoneError(desk.words()("action.reason_required"))
    if len(reason) > REASON_MAX:
        raise NotDoneError(desk.words()("action.reason_long", limit=REASON_MAX))
    return reason


def ask(desk: Desk, record: QuarantineRecord, action: Review, mode: ReleaseMode,
        reason: str) -> Request:
    visitor = desk.require(Permission.ACT)
    try:
        return review.ask(desk.store, record, action, mode, visitor.name, reason)
    except (ReviewError, ConflictError) as exc:
        raise NotDoneError(str(exc)) from None


def approve(desk: Desk, record: QuarantineRecord, reason: str) -> None:
    visitor = desk.require(Permission.APPROVE)
    asked = record.request
    if asked is None or not asked.awaiting_approval:
        raise NotDoneError(desk.words()("action.not_awaiting"))
    if asked.actor == visitor.name:
        raise NotDoneError(desk.words()("action.own_request"))
    try:
        review.approve(desk.store, record, visitor.name, reason)
    except (ReviewError, ConflictError) as exc:
        raise NotDoneError(str(exc)) from None


def decline(desk: Desk, record: QuarantineRecord, reason: str) -> None:
    """A second person declines; the person who asked may withdraw."""
    asked = record.request
    visitor = desk.require(Permission.ACT)
    if asked is None or not asked.awaiting_approval:
        raise NotDoneError(desk.words()("action.not_awaiting"))
    if asked.actor != visitor.name:
        desk.require(Permission.APPROVE)
    try:
        review.decline(desk.store, record, visitor.name, reason)
    except (ReviewError, ConflictError) as exc:
        raise NotDoneError(str(exc)) from None


def dismiss(desk: Desk, record: QuarantineRecord, reason: str) -> None:
    visitor = desk.require(Permission.ACT)
    try:
        review.dismiss(desk.store, record, visitor.name, reason)
    except (ReviewError, ConflictError) as exc:
        raise NotDoneError(str(exc)) from None


def release_mode(desk: Desk) -> ReleaseMode:
    mode = request.form.get("mode", ReleaseMode.PLAIN.value)
    if mode not in (ReleaseMode.PLAIN, ReleaseMode.ROUTE, ReleaseMode.OVERRIDE):
        raise PageError(400, "error.parameter", name="mode",
                        expected=Phrase("expect.choice", {"choices": "plain, route, override"}))
    return ReleaseMode(mode)


def register(app: Flask, desk: Desk) -> None:
    def act(record_id: int, what: str) -> Response:
        desk.require(Permission.LIST)
        record = desk.record(record_id)
        try:
            reason = reason_of(desk)
            match what:
                case "release":
                    ask(desk, record, Review.RELEASE, release_mode(desk), reason)
                case "delete":
                    ask(desk, record, Review.DELETE, ReleaseMode.PLAIN, reason)
                case "approve":
                    approve(desk, record, reason)
                case "decline":
                    decline(desk, record, reason)
                case _:
                    dismiss(desk, record, reason)
        except NotDoneError as exc:
            visitor = desk.visitor()
            log.info("not done: %s by %s on #%d: %s", what, visitor.name if visitor else "",
                     record_id, printable(str(exc)))
            return record_page(desk, record_id, 409, error=str(exc))
        return make_response(redirect(url_for("record", record_id=record_id, done=what), 303))

    for what in ACTIONS:
        app.add_url_rule(f"/held/<int(max={RECORD_ID_MAX}):record_id>/{what}", f"{what}_record",
                         lambda record_id, what=what: act(record_id, what), methods=["POST"])

    @app.post("/held/bulk")
    def bulk() -> Response:
        desk.require(Permission.ACT)
        action = request.form.get("action", "")
        if action not in (Review.RELEASE, Review.DELETE):
            raise PageError(400, "error.parameter", name="action",
                            expected=Phrase("expect.choice", {"choices": "release, delete"}))
        ids = request.form.getlist("record")
        if not ids or len(ids) > ROWS_MAX or not all(i.isascii() and i.isdigit()
                                                     and len(i) < 16 for i in ids):
            raise PageError(400, "error.parameter", name="record",
                          expected=Phrase("expect.records", {"limit": ROWS_MAX}))
        try:
            reason = reason_of(desk)
        except NotDoneError as exc:
            raise PageError(400, "error.plain", message=str(exc)) from None
        outcomes = [one_of_many(desk, int(i), Review(action), reason)
                    for i in dict.fromkeys(ids)]
        return desk.render("bulk.html", outcomes=outcomes, action=action)


def one_of_many(desk: Desk, record_id: int, action: Review, reason: str) -> Outcome:
    words = desk.words()
    try:
        record = desk.store.record(record_id)
    except RecordsError as exc:
        return Outcome(record_id, "", False, printable(str(exc)))
    try:
        if action is Review.DELETE:
            asked = ask(desk, record, action, ReleaseMode.PLAIN, reason)
        else:
            asked = ask(desk, record, action, bulk_mode(record), reason)
    except NotDoneError as exc:
        return Outcome(record_id, record.queue_id, False, str(exc))
    if asked.needs_approval:
        message = words("bulk.awaiting", why=asked.needs_approval)
    else:
        message = words("bulk.requested", action=words(f"action.{action}"),
                        request=asked.request_id)
    return Outcome(record_id, record.queue_id, True, message)


def bulk_mode(record: QuarantineRecord) -> ReleaseMode:
    first_error = ""
    for mode in BULK_MODES:
        try:
            check_release(record, mode)
        except ReviewError as exc:
            first_error = first_error or str(exc)
            continue
        return mode
    raise NotDoneError(first_error)
