"""The records interface: what the milter writes, review reads and requests, and the
daemon on each MTA carries out, whatever the backend (SQLite or PostgreSQL).

A record names the MTA instance that holds the message, its queue id there, and a key
that never repeats (also written into the held message's X-Postwacht-Quarantine
header): a reused queue id can never make an action touch another message. Review never
runs Postfix commands: it writes a request, and the daemon on the MTA that holds the
message carries it out and writes the outcome back. Every change is an audit entry,
chained to the one before by a hash (`records.audit`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from postwacht.core.decide import RecipientVerdict
from postwacht.core.roles import Role
from postwacht.core.vocabulary import Rule


class RecordsError(Exception):
    """The records cannot be read or written; the message says which and why."""


class ConflictError(RecordsError):
    """The record is not in the state the action needs (another reviewer acted first,
    the message is gone, ...); the message says what it is in now."""


class Status(StrEnum):
    """Where a held message's record stands."""

    HELD = "held"
    REQUESTED = "requested"
    """A release or delete waits for the daemon on the MTA that holds the message."""
    RELEASED = "released"
    DELETED = "deleted"
    EXPIRED = "expired"
    """Older than the policy's quarantine.retention_days: deleted or returned."""
    GONE = "gone"
    """Left the hold queue outside Postwacht (postsuper by hand, say); shown to review
    until a reviewer dismisses it."""
    DISMISSED = "dismissed"


POSTWACHT = "postwacht"
"""The actor of what a daemon does by itself (holds, expiries, notices), in the audit."""
OPEN = (Status.HELD, Status.REQUESTED)
MIGRATED_KEY = "migrated-"
"""How the keys of records carried over from before keys begin (their held messages
carry an X-Postwacht-Quarantine header without a key)."""
TO_REVIEW = (Status.HELD, Status.REQUESTED, Status.GONE)
"""What `quarantine list` shows by default."""
CORRESPONDENTS_MAX = 4096
"""Correspondent hashes one call may name: the four kinds of each of Postfix's default
1000 recipients of a message (smtpd_recipient_limit) fit; a caller with more splits."""


class Review(StrEnum):
    """What a reviewer (or retention) asks the MTA's daemon to do with a held message."""

    RELEASE = "release"
    DELETE = "delete"
    EXPIRE = "expire"
    """Retention: delete it, or return it to the sender (policy quarantine.on_expiry)."""

    @property
    def status(self) -> Status:
        return {Review.RELEASE: Status.RELEASED, Review.DELETE: Status.DELETED,
                Review.EXPIRE: Status.EXPIRED}[self]


class ReleaseMode(StrEnum):
    PLAIN = "plain"
    ROUTE = "route"
    """Held for insecure-transport with the policy's secure route already set in the
    held message (X-Postwacht-Route): it leaves through the secure-mail provider."""
    OVERRIDE = "override"
    """Out the ordinary way although a rule said no: recorded as an override."""
    RETURN = "return"
    """Expiry only: returned to the sender as expired (postsuper -f) instead of deleted."""


class AuditAction(StrEnum):
    """The events of the audit trail (NTA 7516: what a mail service must log)."""

    HELD = "held"
    RELEASE_REQUESTED = "release-requested"
    DELETE_REQUESTED = "delete-requested"
    EXPIRE_REQUESTED = "expire-requested"
    RELEASED = "released"
    DELETED = "deleted"
    EXPIRED = "expired"
    FAILED = "failed"
    """A requested action the MTA's daemon could not carry out (detail says why)."""
    GONE = "gone"
    DISMISSED = "dismissed"
    REVIEWER_ADDED = "reviewer-added"
    REVIEWER_REMOVED = "reviewer-removed"
    MIGRATED = "migrated"
    """Review actions from before the audit trail was chained, carried over."""
    APPROVED = "approved"
    """A second person approved a release that needs one (four eyes)."""
    DECLINED = "declined"
    """A second person declined it: the message is held again."""
    VIEWED = "viewed"
    """Somebody read a held message's content (web review, `quarantine show`)."""
    SIGNED_IN = "signed-in"
    SIGNED_OUT = "signed-out"
    USER_ADDED = "user-added"
    USER_REMOVED = "user-removed"
    ROLE_CHANGED = "role-changed"
    PASSWORD_CHANGED = "password-changed"  # noqa: S105 (an event name)
    SENDER_NOTIFIED = "sender-notified"
    """The sender of a held message was sent a notice (never its content)."""


@dataclass(frozen=True, slots=True)
class Hold:
    """What the milter knows when it holds a message."""

    mta: str
    queue_id: str
    key: str
    """Never repeats; also in the held message's X-Postwacht-Quarantine header."""
    sender: str
    recipients: tuple[RecipientVerdict, ...]
    rule: Rule
    reason: str
    policy: str
    client: str = ""
    route: str | None = None
    """The route set in the held message (the policy's secure route, or the NTA 7516
    hosts a hold kept): a release sends it there."""
    detected: str = ""
    """The detector that found the message sensitive ('bsn'), '' when none did: its
    release needs a second person."""


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    record_id: int
    action: Review
    mode: ReleaseMode
    actor: str
    reason: str
    requested_at: dt.datetime
    done_at: dt.datetime | None = None
    outcome: str = ""
    """'' while pending, 'done', 'failed' or 'declined'."""
    detail: str = ""
    needs_approval: str = ""
    """Why a second person must approve it before it is carried out ('' when not)."""
    approved_by: str = ""
    approved_at: dt.datetime | None = None

    @property
    def awaiting_approval(self) -> bool:
        return bool(self.needs_approval) and not self.approved_by and not self.outcome


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    record_id: int
    mta: str
    queue_id: str
    key: str
    held_at: dt.datetime
    sender: str
    recipients: tuple[RecipientVerdict, ...]
    rule: Rule
    reason: str
    policy: str
    status: Status
    client: str = ""
    """Where the milter conversation said the message came from (as the MTA told it)."""
    route: str | None = None
    closed_at: dt.datetime | None = None
    request: Request | None = None
    """The newest request on this record, if any (pending while status is requested)."""
    detected: str = ""
    """The detector that found the message sensitive, '' when none did."""

    @property
    def awaiting_approval(self) -> bool:
        """Requested, but the request waits for a second person's approval."""
        return (self.status is Status.REQUESTED and self.request is not None
                and self.request.awaiting_approval)

    @property
    def needs_force(self) -> bool:
        """Addressed to a retired domain (whoever holds it now would receive it), or to an
        address that cannot be read (Postfix may route it somewhere the filter never saw;
        released mail is not filtered again)."""
        strict = (Rule.RETIRED, Rule.BAD_ADDRESS)
        return self.rule in strict or any(r.rule in strict for r in self.recipients)

    @property
    def domains(self) -> tuple[str, ...]:
        """The recipient domains, each once, in order: what the audit trail names."""
        seen: dict[str, None] = {}
        for r in self.recipients:
            for d in r.domains:
                seen.setdefault(d, None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: dt.datetime
    actor: str
    action: AuditAction
    mta: str
    queue_id: str
    record_id: int
    rule: str
    domains: tuple[str, ...]
    reason: str
    override: bool
    detail: str
    prev: str
    """The hash of the entry before (64 zeros for the first)."""
    hash: str


@dataclass(frozen=True, slots=True)
class RetiredSender:
    sender: str
    client: str
    domain: str
    attempts: int
    first: dt.datetime
    last: dt.datetime
    monitored: int = 0
    """Of the attempts, those that left: the domain's rule was only monitored."""


@dataclass(frozen=True, slots=True)
class User:
    """A person who may use the web review (and, once any user exists, the review CLI)."""

    name: str
    role: Role
    email: str
    """Where the reviewers' digest goes ('' for none)."""
    has_password: bool
    """False: signs in only through the trusted single sign-on header."""
    created_at: dt.datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    role: Role
    csrf: str
    """The token every form of this session must carry."""
    created_at: dt.datetime
    seen_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str
    size: int
    """Bytes after decoding the transfer encoding."""


@dataclass(frozen=True, slots=True)
class HeldContent:
    """What review may show of a held message: never HTML, never an attachment's bytes,
    every BSN masked. Captured on the MTA that holds it (`records.content`)."""

    headers: tuple[tuple[str, str], ...]
    text: str
    """The first text part, decoded, bounded, BSNs masked ('' when there is none)."""
    attachments: tuple[Attachment, ...]
    notes: tuple[str, ...] = ()
    """What was left out, and why (an HTML part, a truncated body)."""
    captured_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Published:
    """A daemon's report for review (`kind`: 'policy', 'domains'), as JSON text."""

    mta: str
    kind: str
    at: dt.datetime
    body: str


class RecordStore(Protocol):
    """Every method raises `RecordsError` when the backend cannot do it (`ConflictError` when
    the record is not in the state the action needs). Safe to call from many threads and
    from several processes and MTAs at once: a state change is one transaction, and of two
    requests on one record exactly one wins."""

    # The milter.
    def record_quarantine(self, hold: Hold) -> QuarantineRecord:
        """Add a record (and its `held` audit entry) before the message is held."""

    def record_retired_attempt(self, sender: str, client: str, domain: str,
                               monitored: bool = False) -> None:
        """`monitored`: the retired domain's rule was in monitor mode, and the mail left."""
    def retired_attempts(self, since: dt.datetime) -> list[RetiredSender]: ...
    def held_summary(self, mta: str | None = None) -> tuple[int, dt.datetime | None]:
        """How many open records (held or requested), and since when the oldest."""

    # Review.
    def quarantine_records(self, statuses: Collection[Status] | None = OPEN,
                           mta: str | None = None) -> list[QuarantineRecord]:
        """Oldest first; `statuses` None: every record."""

    def record(self, record_id: int) -> QuarantineRecord:
        """One record; RecordsError naming the id when there is none."""

    def records_of(self, queue_id: str, mta: str | None = None) -> list[QuarantineRecord]:
        """Every record under the queue id (on one MTA, or on any), oldest first."""

    def request(self, record_id: int, action: Review, mode: ReleaseMode, actor: str,
                reason: str, needs_approval: str = "") -> Request:
        """Ask the MTA's daemon to act: the record goes from held to requested, with an
        audit entry, in one transaction. `ConflictError` (naming who asked before, or the
        status) when the record is not held. `needs_approval` (why): the daemon waits
        until a second person approves."""

    def approve(self, request_id: int, actor: str, reason: str) -> Request:
        """A second person approves: `ConflictError` when it does not await approval or
        `actor` asked for it."""

    def decline(self, request_id: int, actor: str, reason: str) -> None:
        """A second person declines (the requester may withdraw): the record is held
        again; `ConflictError` when it does not await approval."""

    def awaiting_approval(self) -> list[tuple[Request, QuarantineRecord]]: ...

    def request_of(self, request_id: int) -> Request: ...
    def dismiss(self, record_id: int, actor: str, reason: str) -> None:
        """Close a record whose message is gone; `ConflictError` for any other status."""

    # The daemon on the MTA that holds the message.
    def pending_requests(self, mta: str) -> list[tuple[Request, QuarantineRecord]]: ...
    def finish_request(self, request_id: int, ok: bool, detail: str,
                       queue_id: str | None = None) -> None:
        """Done: the record takes the action's status (and `queue_id`, when the message
        got a new one). Failed: the record is held again. Audited either way."""

    def close_gone(self, record_id: int, detail: str) -> None:
        """A held record whose message left the hold queue outside Postwacht."""

    # What review may show of a message's content.
    def save_content(self, record_id: int, content: HeldContent) -> None:
        """Kept while the record is open; removed when it closes."""

    def content(self, record_id: int) -> HeldContent | None: ...
    def without_content(self, mta: str) -> list[QuarantineRecord]:
        """Records of `mta` whose content has not been captured yet, held or with a
        release waiting for approval; the oldest 1000 at most."""

    # The audit trail.
    def audit_entries(self, since: dt.datetime | None = None) -> list[AuditEntry]:
        """In order (seq); `since`: those at or after it."""

    def audit_search(self, *, actor: str | None = None, action: AuditAction | None = None,
                     record_id: int | None = None, since: dt.datetime | None = None,
                     before_seq: int | None = None, limit: int = 200) -> list[AuditEntry]:
        """The newest entries first that match every filter given, at most `limit`."""

    def note(self, actor: str, action: AuditAction, record_id: int = 0,
             detail: str = "") -> None:
        """An audit entry that changes no record (viewed, signed in, sender notified)."""

    # Accounts (web review), sessions and sign-in failures.
    def users(self) -> list[User]: ...
    def user(self, name: str) -> User | None: ...
    def password_hash(self, name: str) -> str: ...
    def add_user(self, name: str, role: Role, email: str, password_hash: str,
                 actor: str) -> None: ...
    def remove_user(self, name: str, actor: str) -> None: ...
    def set_role(self, name: str, role: Role, actor: str) -> None: ...
    def set_password(self, name: str, password_hash: str, actor: str) -> None: ...
    def open_session(self, token_hash: str, name: str, csrf: str) -> None: ...
    def session(self, token_hash: str, idle: dt.timedelta,
                lifetime: dt.timedelta) -> Session | None:
        """The session (its user's current role), touched; None when unknown, idle longer
        than `idle`, older than `lifetime`, or its user is gone."""

    def close_session(self, token_hash: str) -> None: ...
    def sign_in_failed(self, name: str, client: str) -> None: ...
    def sign_in_failures(self, since: dt.datetime, name: str | None = None,
                         client: str | None = None) -> int: ...

    # Daemons' reports, for review.
    def publish(self, kind: str, body: str) -> None:
        """Replace this store's MTA's report of `kind`."""

    def published(self, kind: str) -> list[Published]: ...

    def claim(self, what: str) -> bool:
        """True for the first caller only, across every process and MTA sharing the store
        (one daemon sends a digest period, say)."""

    # Who has been mailed (records.correspondents): keyed hashes, each 64 lower-case hex
    # digits, never an address; ValueError for anything else, or for more than
    # CORRESPONDENTS_MAX in one call. No audit entries: they record no decision.
    def remember_correspondents(self, hashes: Collection[str], at: dt.datetime) -> None:
        """Add the hashes, or move their last use to `at` when that is later."""

    def known_correspondents(self, hashes: Collection[str], since: dt.datetime) -> set[str]:
        """Those of `hashes` that were last used at or after `since`."""

    def forget_correspondents(self, hashes: Collection[str]) -> int:
        """Remove the hashes; how many there were."""

    def expire_correspondents(self, before: dt.datetime) -> int:
        """Remove every hash last used before `before`; how many."""

    def correspondents_count(self) -> int: ...

    def correspondents_key(self, fingerprint: str) -> bool:
        """Whether the hashes were made with the key of this fingerprint: the first caller
        stores it, every later one is compared with it."""

    def audit_head(self) -> tuple[int, str]:
        """The seq and hash of the newest entry, as kept apart from the entries."""

    def reviewers(self) -> list[str]: ...
    def add_reviewer(self, name: str, actor: str) -> None: ...
    def remove_reviewer(self, name: str, actor: str) -> None: ...

    def claim_mta(self) -> None:
        """Serve this store's MTA name, alone: `ConflictError` when another running daemon
        already does (two daemons under one name would close each other's records as
        gone). Held until the store is closed, or the daemon ends."""

    def close(self) -> None: ...

