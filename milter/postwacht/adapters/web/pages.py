"""The pages that only read: the held list and its filters, one held message, the audit
trail, the retired-address report, and what the daemons publish (domains, policy)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import Flask, Response, make_response, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from postwacht.adapters.web.site import Desk, PageError, Phrase
from postwacht.core.roles import Permission
from postwacht.core.text import printable
from postwacht.core.vocabulary import Rule
from postwacht.records.review import ReviewError, check_release, note, second_person
from postwacht.records.store import (
    TO_REVIEW,
    AuditAction,
    QuarantineRecord,
    ReleaseMode,
    Status,
)

ROWS_MAX = 500
"""Held-list rows on one page; the page says when there are more (filters narrow it)."""
AUDIT_PAGE = 100
TEXT_MAX = 200
RECORD_ID_MAX = 2**53
ACTIONS = ("release", "delete", "approve", "decline", "dismiss")
"""What may be done to a held message on its page (a route each)."""
DAYS_MAX = 3660.0
CONTENT_REFRESH = 3
"""Seconds between reloads while the MTA has not captured a held message's content."""


class State(StrEnum):
    """The held list's `state` filter."""

    OPEN = "open"
    """Held, requested or gone: what review has to look at (the default)."""
    HELD = "held"
    REQUESTED = "requested"
    AWAITING = "awaiting"
    """Requested, and waiting for a second person's approval."""
    GONE = "gone"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class HeldFilter:
    rule: Rule | None = None
    sender: str = ""
    domain: str = ""
    mta: str = ""
    age: float | None = None
    """Hours: only records held longer ago than this."""
    state: State = State.OPEN
    q: str = ""

    def statuses(self) -> tuple[Status, ...] | None:
        return {State.OPEN: TO_REVIEW, State.HELD: (Status.HELD,),
                State.REQUESTED: (Status.REQUESTED,), State.AWAITING: (Status.REQUESTED,),
                State.GONE: (Status.GONE,), State.ALL: None}[self.state]

    def matches(self, record: QuarantineRecord, now: dt.datetime) -> bool:
        awaiting = record.request is not None and record.request.awaiting_approval
        if self.state is State.AWAITING and not awaiting:
            return False
        if self.state is State.REQUESTED and awaiting:
            return False
        if self.rule is not None and self.rule is not record.rule and \
                all(v.rule is not self.rule for v in record.recipients):
            return False
        if self.age is not None and now - record.held_at < dt.timedelta(hours=self.age):
            return False
        if self.sender and self.sender.lower() not in record.sender.lower():
            return False
        if self.domain and not any(self.domain.lower() in d for d in record.domains):
            return False
        return not self.q or self.q.lower() in _searchable(record)


def _searchable(record: QuarantineRecord) -> str:
    words = [f"#{record.record_id}", record.queue_id, record.mta, record.sender,
             record.client, str(record.rule), record.reason, str(record.status),
             *(v.address for v in record.recipients), *(v.reason for v in record.recipients)]
    return "\n".join(words).lower()


def text_parameter(args: MultiDict[str, str], name: str) -> str:
    value = args.get(name, "")
    if len(value) > TEXT_MAX or printable(value, TEXT_MAX) != value:
        raise PageError(400, "error.parameter", name=name,
                      expected=Phrase("expect.text", {"limit": TEXT_MAX}))
    return value.strip()


def number_parameter(args: MultiDict[str, str], name: str, top: float) -> float | None:
    value = text_parameter(args, name)
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= top:  # also NaN
        raise PageError(400, "error.parameter", name=name,
                      expected=Phrase("expect.number", {"top": f"{top:g}"}))
    return number


def int_parameter(args: MultiDict[str, str], name: str) -> int | None:
    value = text_parameter(args, name)
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > RECORD_ID_MAX:
        raise PageError(400, "error.parameter", name=name,
                      expected=Phrase("expect.whole", {"top": RECORD_ID_MAX}))
    return int(value)


def choice_parameter(args: MultiDict[str, str], name: str, choices: list[str]) -> str:
    value = text_parameter(args, name)
    if value and value not in choices:
        raise PageError(400, "error.parameter", name=name,
                      expected=Phrase("expect.choice", {"choices": ", ".join(choices)}))
    return value


def held_filter(args: MultiDict[str, str]) -> HeldFilter:
    rule = choice_parameter(args, "rule", [str(r) for r in Rule])
    state = choice_parameter(args, "state", [str(s) for s in State])
    return HeldFilter(
        rule=Rule(rule) if rule else None, sender=text_parameter(args, "sender"),
        domain=text_parameter(args, "domain"), mta=text_parameter(args, "mta"),
        age=number_parameter(args, "age", 24 * DAYS_MAX),
        state=State(state) if state else State.OPEN, q=text_parameter(args, "q"))


def release_modes(record: QuarantineRecord) -> tuple[list[tuple[ReleaseMode, str]], str]:
    """The releases to offer, each with why it needs a second person ('' when not), and
    why there are none ('' when there are). An override is offered only when nothing
    else may leave: beside an ordinary release it would only add a second person."""
    offered: list[tuple[ReleaseMode, str]] = []
    why_not = ""
    for mode in (ReleaseMode.PLAIN, ReleaseMode.ROUTE, ReleaseMode.OVERRIDE):
        if mode is ReleaseMode.OVERRIDE and offered:
            break
        try:
            check_release(record, mode)
        except ReviewError as exc:
            why_not = why_not or str(exc)
            continue
        offered.append((mode, second_person(record, mode)))
    return offered, "" if offered else why_not


def record_page(desk: Desk, record_id: int, status: int = 200, error: str = "") -> Response:
    """One held message; `error`: why the action just tried was not done."""
    visitor = desk.require(Permission.LIST)
    record = desk.record(record_id)
    content = None
    if desk.may(Permission.READ):
        content = desk.store.content(record.record_id)
        if content is not None:
            desk.store.note(visitor.name, AuditAction.VIEWED, record.record_id, "content")
    modes, why_not = release_modes(record) if record.status is Status.HELD else ([], "")
    done = request.args.get("done", "")
    return desk.render(
        "record.html", status, record=record, content=content, modes=modes,
        why_not=why_not, note=note(record), error=error,
        done=done if done in ACTIONS else "",
        refresh=CONTENT_REFRESH if (content is None and record.status is Status.HELD and
                                    desk.may(Permission.READ) and not error) else 0)


def register(app: Flask, desk: Desk) -> None:
    @app.get("/")
    def home() -> Response:
        return make_response(redirect(url_for("held"), 303))

    @app.get("/held")
    def held() -> Response:
        desk.require(Permission.LIST)
        chosen = held_filter(request.args)
        now = dt.datetime.now(dt.UTC)
        records = desk.store.quarantine_records(chosen.statuses(), chosen.mta or None)
        shown = [r for r in reversed(records) if chosen.matches(r, now)]
        return desk.render("held.html", rows=shown[:ROWS_MAX], total=len(shown),
                           limit=ROWS_MAX, chosen=chosen, rules=list(Rule),
                           states=list(State), now=now)

    @app.get(f"/held/<int(max={RECORD_ID_MAX}):record_id>")
    def record(record_id: int) -> Response:
        return record_page(desk, record_id)

    @app.get("/audit")
    def audit() -> Response:
        desk.require(Permission.LIST)
        args = request.args
        actor = text_parameter(args, "actor")
        action = choice_parameter(args, "action", [str(a) for a in AuditAction])
        record_id = int_parameter(args, "record")
        before = int_parameter(args, "before")
        since = _date_parameter(args, "since")
        entries = desk.store.audit_search(
            actor=actor or None, action=AuditAction(action) if action else None,
            record_id=record_id, since=since, before_seq=before, limit=AUDIT_PAGE)
        older = entries[-1].seq if len(entries) == AUDIT_PAGE else None
        return desk.render("audit.html", entries=entries, older=older, actions=list(AuditAction),
                           chosen={"actor": actor, "action": action,
                                   "record": "" if record_id is None else record_id,
                                   "since": args.get("since", "") if since else ""})

    @app.get("/retired")
    def retired() -> Response:
        desk.require(Permission.LIST)
        days = number_parameter(request.args, "days", DAYS_MAX)
        days = 30.0 if days is None else days
        rows = desk.store.retired_attempts(dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
        return desk.render("retired.html", rows=rows, days=days)

    @app.get("/domains")
    def domains() -> Response:
        desk.require(Permission.LIST)
        reports = [(p, _domain_rows(p.body)) for p in desk.store.published("domains")]
        return desk.render("domains.html", reports=reports)

    @app.get("/policy")
    def policy() -> Response:
        desk.require(Permission.LIST)
        reports = [(p, _flat(_json(p.body))) for p in desk.store.published("policy")]
        return desk.render("policy.html", reports=reports)


def _date_parameter(args: MultiDict[str, str], name: str) -> dt.datetime | None:
    value = text_parameter(args, name)
    if not value:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
        # In UTC here: a date at the edge of the calendar cannot be moved there.
        return (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise PageError(400, "error.parameter", name=name,
                        expected=Phrase("expect.date", {})) from None


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _domain_rows(body: str) -> list[dict[str, str]] | None:
    """Each domain's status, or None when the report has another shape (shown as text)."""
    data = _json(body)
    rows = data.get("domains") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    return [{key: _scalar(row.get(key)) for key in ("domain", "status", "detail")}
            for row in rows]


def _flat(data: Any, prefix: str = "") -> list[tuple[str, str]] | None:
    """A JSON object as (dotted key, value) lines, or None when it is not an object."""
    if not isinstance(data, dict):
        return None
    lines: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        nested = _flat(value, f"{name}.") if isinstance(value, dict) and len(prefix) < 200 \
            else None
        lines += nested if nested else [(name, _scalar(value))]
    return lines


def _scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
