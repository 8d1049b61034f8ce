"""The records interface: what the milter writes and review reads, whatever the backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from postwacht.core.decide import RecipientVerdict
from postwacht.core.vocabulary import Rule


class RecordsError(Exception):
    """The records cannot be read or written; the message says which and why."""


class Review(StrEnum):
    """What a reviewer did to a held message."""

    RELEASE = "release"
    DELETE = "delete"

    @property
    def status(self) -> str:
        return {Review.RELEASE: "released", Review.DELETE: "deleted"}[self]


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    queue_id: str
    held_at: dt.datetime
    sender: str
    recipients: tuple[RecipientVerdict, ...]
    rule: Rule
    reason: str
    policy: str
    status: str
    """held, released or deleted."""
    record_id: int = 0
    """Records are never replaced: several may share a (reused or claimed) queue id."""
    client: str = ""
    """Where the milter conversation said the message came from (as the MTA told it)."""

    @property
    def needs_force(self) -> bool:
        """Addressed to a retired domain (whoever holds it now would receive it), or to an
        address that cannot be read (Postfix may route it somewhere the filter never saw;
        released mail is not filtered again)."""
        strict = (Rule.RETIRED, Rule.BAD_ADDRESS)
        return self.rule in strict or any(r.rule in strict for r in self.recipients)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: dt.datetime
    actor: str
    action: str
    queue_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RetiredSender:
    sender: str
    client: str
    domain: str
    attempts: int
    first: dt.datetime
    last: dt.datetime


class RecordStore(Protocol):
    """Every method raises `RecordsError` when the backend cannot do it, and from the
    moment the backend finds its storage lost or damaged, until it is opened again."""

    def record_quarantine(self, queue_id: str, sender: str,
                          recipients: Sequence[RecipientVerdict], rule: Rule, reason: str,
                          policy: str, client: str = "") -> None:
        """Add a record before the message is held; never replace one."""

    def quarantine_records(self, status: str | None = "held") -> list[QuarantineRecord]: ...
    def records_of(self, queue_id: str) -> list[QuarantineRecord]:
        """Every record under the queue id, oldest first."""

    def resolve(self, queue_id: str, review: Review, actor: str, reason: str) -> None:
        """Record a review action on every held record of the queue id, and its audit
        line, together."""

    def record_retired_attempt(self, sender: str, client: str, domain: str) -> None: ...
    def retired_attempts(self, since: dt.datetime) -> list[RetiredSender]: ...
    def held_summary(self) -> tuple[int, dt.datetime | None]: ...
    def audit(self) -> list[AuditRecord]: ...
    def close(self) -> None: ...
