"""What the filter counts, as a small interface handed to the layers that count.

The layers call these methods; only `postwacht.telemetry.prometheus` knows Prometheus.
Commands that export nothing (check, explain, tls, audit) pass `NO_TELEMETRY`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from postwacht.core.facts import DomainReport
from postwacht.core.vocabulary import Action, Rule


class ErrorKind(StrEnum):
    RECORDS = "state-store"
    NO_QUEUE_ID = "no-queue-id"
    BAD_QUEUE_ID = "bad-queue-id"
    """A queue id Postfix never makes: someone else speaks to the milter port."""
    SOCKETMAP = "socketmap"
    SOCKETMAP_BUSY = "socketmap-busy"
    """The socketmap was at its connection limit: a flood, or a limit set too low."""
    DOMAIN_WATCH = "domain-watch"
    RELEASE_HELPER = "release-helper"
    """The release helper could not be reached: review requests on this MTA wait or fail."""
    HOLD_QUEUE = "hold-queue"
    """postqueue could not list the hold queue: records of vanished messages stay open."""
    CONTENT_CAPTURE = "content-capture"
    """The release helper could not capture a held message's content: review cannot show
    it until a later try succeeds."""
    NOTICE = "notice"
    """A notice to a sender or a digest was dropped (queue full) or not taken by
    sendmail(1): somebody was not told."""
    CORRESPONDENTS = "correspondents"
    """The known correspondents could not be read (the first recipients of the message
    counted as new) or what left could not be learnt (dropped, or the store failed)."""


class RequestOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"


class Stage(StrEnum):
    RCPT = "rcpt"
    EOM = "eom"


class DnsResult(StrEnum):
    ANSWER = "answer"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    FAILURE = "failure"


class ReloadResult(StrEnum):
    OK = "ok"
    UNCHANGED = "unchanged"
    INVALID = "invalid"


class Telemetry(Protocol):
    def recipient(self, action: Action, rule: Rule) -> None: ...
    def monitored(self, action: Action, rule: Rule) -> None:
        """A rule in monitor mode decided `action` for a recipient; the mail went on."""
    def message(self, action: Action) -> None: ...
    def retired_attempt(self, domain: str) -> None: ...
    def callback(self, stage: Stage, seconds: float) -> None: ...
    def socketmap(self, table: str, answer: str) -> None: ...
    def dns_lookup(self, result: DnsResult, seconds: float) -> None: ...
    def dns_cache(self, hit: bool) -> None: ...
    def error(self, kind: ErrorKind) -> None: ...
    def policy_loaded(self, checksum: str, at: float) -> None: ...
    def policy_reload(self, result: ReloadResult) -> None: ...
    def policy_checked(self, at: float) -> None:
        """The policy watcher looked at the file and finished what it found to do."""
    def domain_audit(self, reports: Sequence[DomainReport], at: float) -> None: ...
    def review_request(self, action: str, outcome: RequestOutcome) -> None:
        """A review request carried out on this MTA (or failed); `action` is release,
        delete or expire (records.store.Review)."""
    def record_gone(self) -> None:
        """A record closed because its message left the hold queue outside Postwacht."""
    def records_synced(self, at: float) -> None:
        """The daemon finished a round of retention and of closing vanished records."""
    def held_unrecorded(self, count: int) -> None:
        """Messages in this MTA's hold queue that no open record describes."""
    def relay_unverified(self, unverified: bool) -> None:
        """Postfix hands outside mail to a relay through which sensitive mail cannot
        count as verified (the policy does not name it, or does not trust it)."""


class NoTelemetry:
    """Counts nothing: for one-shot commands."""

    def recipient(self, action: Action, rule: Rule) -> None:
        pass

    def monitored(self, action: Action, rule: Rule) -> None:
        pass

    def message(self, action: Action) -> None:
        pass

    def retired_attempt(self, domain: str) -> None:
        pass

    def callback(self, stage: Stage, seconds: float) -> None:
        pass

    def socketmap(self, table: str, answer: str) -> None:
        pass

    def dns_lookup(self, result: DnsResult, seconds: float) -> None:
        pass

    def dns_cache(self, hit: bool) -> None:
        pass

    def error(self, kind: ErrorKind) -> None:
        pass

    def policy_loaded(self, checksum: str, at: float) -> None:
        pass

    def policy_reload(self, result: ReloadResult) -> None:
        pass

    def policy_checked(self, at: float) -> None:
        pass

    def domain_audit(self, reports: Sequence[DomainReport], at: float) -> None:
        pass

    def review_request(self, action: str, outcome: RequestOutcome) -> None:
        pass

    def record_gone(self) -> None:
        pass

    def records_synced(self, at: float) -> None:
        pass

    def held_unrecorded(self, count: int) -> None:
        pass

    def relay_unverified(self, unverified: bool) -> None:
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()
