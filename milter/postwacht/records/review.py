"""Review of held mail from the records store alone: no shell on the MTA, no root.

A reviewer finds a record, and asks for a release or a delete; the request is written to
the store, and the daemon on the MTA that holds the message carries it out (through the
root release helper) and writes the outcome back, which the reviewer waits for. What may
be asked is decided here, before anything is written, and again by the helper before it
acts: a reason is required; mail to a retired domain is never released (the transport
table would bounce it); mail to an unreadable address leaves only as a recorded override;
mail held for want of verified TLS leaves through the policy's secure route, or as a
recorded override, never by an ordinary release. A hold that only its sender can judge (a
first recipient) the sender ends by a signed link (`confirm`), without an account.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from postwacht.core.decide import RecipientVerdict
from postwacht.core.roles import Permission, Role, allows, least_role, needs_second_person
from postwacht.core.text import is_queue_id, printable
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.sql import ACTOR_MAX, REASON_MAX
from postwacht.records.store import (
    TO_REVIEW,
    ConflictError,
    QuarantineRecord,
    RecordStore,
    ReleaseMode,
    Request,
    Review,
    Status,
    User,
)

WAIT_STEP = 0.2
"""Seconds between looks at a request's outcome."""
SENDER_REASONS = {
    Review.RELEASE: "the sender confirmed the recipients by the link in the notice",
    Review.DELETE: "the sender cancelled the message by the link in the notice",
}
"""The audit trail's reason for each decision a sender may make by a link."""

Remember = Callable[[str, Sequence[str]], None]
"""Told (sender, recipients' addresses) once a sender confirmed them: known from then on."""


class ReviewError(Exception):
    """A review action that cannot be done; the message says why."""


def find(store: RecordStore, ref: str, mta: str | None = None) -> QuarantineRecord:
    """The record `ref` names: `#N` (a record number), or a queue id that names exactly one
    record to review (on `mta`, when given)."""
    if ref.startswith("#") and ref[1:].isdigit():
        return store.record(int(ref[1:]))
    if not is_queue_id(ref):
        raise ReviewError(f"{printable(ref, 64)!r} is neither a record number (#N) nor a "
                          "Postfix queue id")
    records = [r for r in store.records_of(ref, mta) if r.status in TO_REVIEW]
    if not records:
        where = f" on {mta}" if mta else ""
        raise ReviewError(f"no held message {ref}{where} in the records (`quarantine list` "
                          "shows what is held; `--all` also what was)")
    if len(records) > 1:
        which = ", ".join(f"#{r.record_id} ({r.mta}, {r.rule}, held "
                          f"{r.held_at:%Y-%m-%d %H:%M})" for r in records)
        raise ReviewError(f"{len(records)} records claim queue id {ref}: {which}; name one "
                          "by its number (#N)")
    return records[0]


def release_mode(route: bool, override: bool) -> ReleaseMode:
    if route and override:
        raise ReviewError("choose --route or --override, not both")
    return ReleaseMode.ROUTE if route else ReleaseMode.OVERRIDE if override else \
        ReleaseMode.PLAIN


def check_release(record: QuarantineRecord, mode: ReleaseMode) -> None:
    """Whether this release may be asked for; ReviewError saying why not and what may."""
    verdicts = [*record.recipients]
    rules = {record.rule, *(v.rule for v in verdicts)}
    name = f"{record.queue_id} (#{record.record_id})"
    if Rule.RETIRED in rules:
        domains = sorted({v.matched or v.domains[0] for v in verdicts
                          if v.rule is Rule.RETIRED and (v.matched or v.domains)})
        raise ReviewError(
            f"{name} is addressed to retired domain {', '.join(domains) or '(unnamed)'}: "
            "it is not released, because Postfix asks Postwacht's transport table about "
            "every recipient and would bounce it anyway. Delete it, and ask the sender to "
            "use the current address")
    if mode is ReleaseMode.ROUTE and not record.route:
        raise ReviewError(
            f"{name} has no secure route: the policy had none when it was held. Release it "
            "with --override (recorded as one), or delete it")
    if mode is ReleaseMode.OVERRIDE and record.route and Rule.BAD_ADDRESS not in rules:
        raise ReviewError(
            f"{name} carries the secure route {record.route}: it leaves through it whatever "
            "is asked, so release it with --route (no override is needed)")
    if mode is ReleaseMode.OVERRIDE:
        return
    if Rule.BAD_ADDRESS in rules:
        raise ReviewError(
            f"{name} is addressed to an address the filter cannot read, which Postfix may "
            "route to another domain (a retired one, say); released mail is not checked "
            "again. Add --override to release it anyway (recorded as an override)")
    if Rule.INSECURE_TRANSPORT in rules and mode is ReleaseMode.PLAIN:
        choice = (f"--route sends it through the secure route {record.route}, set in the "
                  "held message, which is the only way it can leave"
                  if record.route else
                  "the policy had no secure route when it was held; --override sends it "
                  "the ordinary way, recorded as an override")
        raise ReviewError(
            f"{name} was held because a recipient domain offers no verified TLS: an "
            f"ordinary release would send it in the clear. {choice}")


def ask(store: RecordStore, record: QuarantineRecord, action: Review, mode: ReleaseMode,
        actor: str, reason: str) -> Request:
    """Write the request, after every check a reviewer can be told about now."""
    _reason_given(reason, f"a {action}")
    users = store.users()
    _may(users, actor, Permission.ACT)
    if record.status is not Status.HELD:
        raise ReviewError(_not_held(record))
    why = ""
    if action is Review.RELEASE:
        check_release(record, mode)
        why = second_person(record, mode)
    if why and not [u for u in users
                    if u.name != actor and allows(u.role, Permission.APPROVE)]:
        raise ReviewError(f"this release needs a second person ({why}), and no account "
                          "but yours may approve: an admin adds one with `postwacht users add "
                          "NAME --role approver`")
    try:
        return store.request(record.record_id, action, mode, actor, reason, why)
    except ConflictError as exc:
        raise ReviewError(str(exc)) from None


def second_person(record: QuarantineRecord, mode: ReleaseMode, actor: str = "") -> str:
    """Why releasing `record` this way (asked by `actor`) needs approval by a second person
    ('' when not). The sender's own confirmation of a hold only its sender decides needs
    nobody else: the sender vouches for the address. A reviewer's release of the same
    message follows the four-eyes rules like any other."""
    if (actor and actor == sender_actor(record) and sender_decides(record)
            and mode is ReleaseMode.PLAIN):
        return ""
    return needs_second_person(_holding(record), record.detected,
                               mode is ReleaseMode.OVERRIDE)


def held_by(record: QuarantineRecord) -> list[RecipientVerdict]:
    """The recipient verdicts that hold the message (every one but an accepted one)."""
    return [v for v in record.recipients if v.action is not Action.ACCEPT]


def _holding(record: QuarantineRecord) -> set[Rule]:
    return {record.rule, *(v.rule for v in held_by(record))}


def sender_decides(record: QuarantineRecord) -> bool:
    """Whether every rule that holds `record` is one its sender confirms: then the sender's
    link may end the hold; otherwise a privacy officer decides."""
    return all(rule.sender_confirms for rule in _holding(record))


def by_sender(record: QuarantineRecord) -> Request | None:
    """The record's newest request, if its sender made it by a link."""
    asked = record.request
    if asked is None or asked.actor != sender_actor(record) or \
            SENDER_REASONS.get(asked.action) != asked.reason:
        return None
    return asked


def sender_actor(record: QuarantineRecord) -> str:
    return printable(record.sender, ACTOR_MAX)


def confirm(store: RecordStore, record: QuarantineRecord, action: Review,
            remember: Remember | None) -> Request:
    """The sender's decision by a link from the notice (the link checked by the caller):
    RELEASE sends the message to the recipients it was held for and has `remember` learn
    them; DELETE cancels it. The sender has no account and needs none (`may` is not
    asked): the signed link is what shows that the sender decides. Only for a held message
    whose every holding rule is one its sender confirms."""
    reason = SENDER_REASONS.get(action)
    if reason is None:
        raise ReviewError(f"a sender's link releases or deletes a message, not {action}")
    if record.status is not Status.HELD:
        raise ReviewError(_not_held(record))
    name = f"{record.queue_id} (#{record.record_id})"
    if not sender_decides(record):
        rules = sorted(str(r) for r in _holding(record) if not r.sender_confirms)
        raise ReviewError(f"{name} was held for another reason ({', '.join(rules)}), not "
                          "only for a recipient its sender never mailed: a privacy officer "
                          "decides whether it may leave, not its sender")
    if not record.sender:
        raise ReviewError(f"{name} has no sender (a bounce) to confirm it")
    why = ""
    if action is Review.RELEASE:
        check_release(record, ReleaseMode.PLAIN)
        why = second_person(record, ReleaseMode.PLAIN, sender_actor(record))
    try:
        asked = store.request(record.record_id, action, ReleaseMode.PLAIN,
                              sender_actor(record), reason, why)
    except ConflictError as exc:
        raise ReviewError(str(exc)) from None
    if action is Review.RELEASE and remember is not None:
        # Only once the request is written: a refused one teaches nothing.
        remember(record.sender, [v.address for v in held_by(record)])
    return asked


def approve(store: RecordStore, record: QuarantineRecord, actor: str,
            reason: str) -> Request:
    """A second person approves the release that waits for one: the MTA's daemon then
    carries it out. Never the person who asked for it."""
    asked = _awaiting(record)
    _reason_given(reason, "an approval")
    if may(store, actor, Permission.APPROVE) is None:
        raise ReviewError("an approval is a second person's, and persons are known by their "
                          "accounts: an admin adds approvers with `postwacht users add NAME "
                          "--role approver`")
    if asked.actor == actor:
        raise ReviewError(f"{actor} asked for this release: nobody approves their own "
                          "request; another approver must")
    check_release(record, asked.mode)  # the rules may have changed since it was asked
    try:
        return store.approve(asked.request_id, actor, reason)
    except ConflictError as exc:
        raise ReviewError(str(exc)) from None


def decline(store: RecordStore, record: QuarantineRecord, actor: str, reason: str) -> None:
    """An approver declines a release that waits for approval, or its requester withdraws
    it: the message is held again."""
    asked = _awaiting(record)
    _reason_given(reason, "declining")
    if asked.actor != actor:
        may(store, actor, Permission.APPROVE)
    try:
        store.decline(asked.request_id, actor, reason)
    except ConflictError as exc:
        raise ReviewError(str(exc)) from None


def _awaiting(record: QuarantineRecord) -> Request:
    asked = record.request
    if not record.awaiting_approval or asked is None:
        raise ReviewError(f"{record.queue_id} (#{record.record_id}) has no request waiting "
                          "for approval")
    return asked


def _reason_given(reason: str, what: str) -> None:
    if not reason.strip():
        raise ReviewError(f"a reason is required for {what} (--reason): it is kept in the "
                          "audit trail")
    if len(reason) > REASON_MAX:
        raise ReviewError(f"the reason is {len(reason)} characters; at most {REASON_MAX}")


def may(store: RecordStore, actor: str, permission: Permission) -> Role | None:
    """Whether `actor` may do this: once any account exists, only an account whose role
    allows it (the database's grants are what really keeps others out: an actor is what
    the command was told). None: no accounts yet, anyone with access to the store."""
    return _may(store.users(), actor, permission)


def _may(users: list[User], actor: str, permission: Permission) -> Role | None:
    if not users:
        return None
    user = next((u for u in users if u.name == actor), None)
    if user is None:
        reviewers = [u.name for u in users if allows(u.role, Permission.ACT)]
        raise ReviewError(f"{actor} may not review held mail: no such account (reviewers: "
                          f"{', '.join(reviewers) or 'none'}; `postwacht users add` by an "
                          "admin)")
    if not allows(user.role, permission):
        raise ReviewError(f"{actor} is a {user.role}: to {permission} takes the role "
                          f"{least_role(permission)} or higher")
    return user.role


def may_review(store: RecordStore, actor: str) -> None:
    may(store, actor, Permission.ACT)


def _not_held(record: QuarantineRecord) -> str:
    asked = record.request
    if record.status is Status.REQUESTED and asked is not None and not asked.outcome:
        return (f"{record.queue_id} (#{record.record_id}): {asked.actor} asked to "
                f"{asked.action} it at {asked.requested_at:%Y-%m-%d %H:%M:%S} UTC; the daemon "
                f"on {record.mta} has not carried it out yet")
    done = (f": {asked.action} by {asked.actor} at {asked.requested_at:%Y-%m-%d %H:%M:%S} "
            f"UTC (reason: {asked.reason})" if asked is not None and asked.outcome == "done"
            else "")
    return f"{record.queue_id} (#{record.record_id}) is {record.status}, not held{done}"


def wait(store: RecordStore, request_id: int, seconds: float,
         sleep: Callable[[float], None] = time.sleep) -> Request:
    """The request once the MTA's daemon has finished it, or as it stands after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        request = store.request_of(request_id)
        if request.outcome or time.monotonic() >= deadline:
            return request
        sleep(WAIT_STEP)


def dismiss(store: RecordStore, record: QuarantineRecord, actor: str, reason: str) -> None:
    if not reason.strip():
        raise ReviewError("a reason is required to dismiss a record (--reason)")
    may_review(store, actor)
    if record.status is not Status.GONE:
        raise ReviewError(f"{record.queue_id} (#{record.record_id}) is {record.status}: only "
                          "a record whose message is gone can be dismissed")
    try:
        store.dismiss(record.record_id, actor, reason)
    except ConflictError as exc:
        raise ReviewError(str(exc)) from None


def note(record: QuarantineRecord, others: Sequence[QuarantineRecord] = ()) -> str:
    """What a reviewer should know beyond rule and reason ("" when nothing)."""
    request = record.request
    if record.status is Status.GONE:
        return ("the message left the hold queue outside Postwacht (postsuper by hand?); "
                "dismiss the record once checked")
    if record.status is Status.REQUESTED and request is not None and \
            request.awaiting_approval:
        return (f"{request.action} requested by {request.actor}; waiting for a second "
                f"person's approval ({request.needs_approval}): `quarantine approve`")
    if record.status is Status.REQUESTED and request is not None:
        return (f"{request.action} requested by {request.actor}; waiting for the daemon on "
                f"{record.mta}")
    if request is not None and request.outcome == "failed":
        return f"the last {request.action} failed: {request.detail}"
    if others:
        return (f"{len(others) + 1} records claim queue id {record.queue_id} on {record.mta}: "
                "name the record by its number")
    return ""
