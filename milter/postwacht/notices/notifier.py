"""The daemon's notices: a thread that tells senders of their held mail and sends the
reviewers' digest, so that the milter never waits for either.

The milter only hands a hold over (`Notifier.held`), into a bounded queue: when the queue
is full the notice is dropped, logged and counted, and mail goes on. Whom to tell is
decided once, in `addressee`: never a null sender, never a sender outside the owned
domains (a notice must not leave the organisation), never for a rule whose notices are
off, and never the notice address itself (a held notice would notify itself). Notices go
out from an owned domain to an owned domain, so the filter accepts them when they pass
it again. Nothing here may stop the thread: a store or a sendmail(1) that fails is
logged, and tried again with the next hold or period.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postwacht.core.names import DomainError, to_ascii
from postwacht.core.policy import DigestPeriod, NoticeSettings, Policy
from postwacht.core.text import printable
from postwacht.notices import links
from postwacht.notices.compose import Held, Outgoing, confirm_notice, digest, sender_notice
from postwacht.notices.schedule import IMMEDIATE_BATCH, IMMEDIATE_SPACING, period_name
from postwacht.notices.sendmail import Sendmail, SendmailError
from postwacht.telemetry import NO_TELEMETRY, ErrorKind, Telemetry

log = logging.getLogger("postwacht.notices")

QUEUE_SIZE = 1000
"""Sender notices waiting to be sent; beyond, a hold's notice is dropped."""
TICK = 1.0
"""Seconds between looks at the clock for a digest that is due."""
STORE_RETRY = 60.0
"""Seconds before a digest is tried again after the records store failed."""
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class RecordsUnavailableError(Exception):
    """The records store could not answer; the message says why."""


class NoticeRecords(Protocol):
    """What notices need of the records store (the composition root adapts the store).
    Each method raises `RecordsUnavailableError` when the store cannot answer."""

    def waiting(self) -> list[Held]:
        """Every open record, on every MTA: held, requested or awaiting approval."""

    def reviewers(self) -> list[tuple[str, str]]:
        """(name, email) of the users who review (reviewer or higher) and have an email."""

    def claim(self, what: str) -> bool:
        """True for the first caller across every MTA sharing the store."""

    def notified(self, record_id: int, detail: str) -> None:
        """The audit entry: the record's sender was sent a notice."""


@dataclass(frozen=True, slots=True)
class Addressee:
    """Whom a notice goes to, or why nobody (`address` is '' then)."""

    address: str
    domain: str = ""
    why_not: str = ""


def plain_address(text: str) -> tuple[str, str] | None:
    """(local part, ASCII domain) of a plain address, None for anything else (a null
    sender, a quoted or escaped local part, a domain that is no domain name)."""
    local, at, domain = text.strip().removeprefix("<").removesuffix(">").rpartition("@")
    if not at or _LOCAL_PART.fullmatch(local) is None or len(local) > 64:
        return None
    try:
        return local, to_ascii(domain)
    except DomainError:
        return None


def addressee(held: Held, policy: Policy) -> Addressee:
    """Whom the sender notice of `held` goes to under `policy`, or why it goes to nobody."""
    settings = policy.notices
    if settings is None:
        return Addressee("", why_not="the policy has no notices")
    if not settings.notifies_sender(held.rule):
        return Addressee("", why_not=f"sender notices are off for rule {held.rule}")
    if held.sender in ("", "<>"):
        return Addressee("", why_not="null sender")
    parsed = plain_address(held.sender)
    if parsed is None:
        return Addressee("", why_not="the sender is not a plain address")
    local, domain = parsed
    if not policy.owns(domain):
        return Addressee("", why_not=f"the sender's domain {domain} is not an owned domain")
    address = f"{local}@{domain}"
    if settings.is_own(address):
        return Addressee("", why_not="the held message is a notice itself")
    return Addressee(address, domain)


class Notifier:
    """Sender notices and digests, sent from one thread. `policy` gives the running
    policy; `clock` the local time (aware)."""

    def __init__(self, policy: Callable[[], Policy], records: NoticeRecords, mail: Sendmail,
                 queue_size: int = QUEUE_SIZE, tick: float = TICK,
                 clock: Callable[[], dt.datetime] | None = None,
                 batch: float = IMMEDIATE_BATCH, telemetry: Telemetry = NO_TELEMETRY,
                 link_key: bytes | None = None) -> None:
        self._policy = policy
        self._link_key = link_key
        """Signs the sender's confirmation links (None: no links, the plain notice)."""
        self._telemetry = telemetry
        self._records = records
        self._mail = mail
        self._queue: queue.Queue[Held] = queue.Queue(queue_size)
        self._tick = tick
        self._batch = batch
        self._clock = clock or (lambda: dt.datetime.now().astimezone())
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: float | None = None
        """When the oldest hold not yet in an `immediately` digest came (monotonic)."""
        self._done = ""
        """The name of the last period this daemon sent, or found sent or empty."""
        self._retry_at = 0.0
        self.sent = 0
        self.dropped = 0
        """Sender notices dropped because the queue was full."""
        self.failed = 0
        """Notices sendmail(1) did not take."""

    @property
    def last_period(self) -> str:
        """The digest period this daemon last sent, or found claimed or empty."""
        return self._done

    def held(self, held: Held) -> bool:
        """Hand over a hold (from a milter thread): never waits. False when dropped."""
        if self._policy().notices is None:
            return True
        try:
            self._queue.put_nowait(held)
        except queue.Full:
            self.dropped += 1
            self._telemetry.error(ErrorKind.NOTICE)
            log.warning("record #%d: notice queue full (%d waiting); the sender is not "
                        "told (%d dropped so far)", held.record_id, self._queue.maxsize,
                        self.dropped)
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if left := self._queue.qsize():
            log.warning("stopping with %d sender notice(s) not sent", left)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._round()
            except Exception:  # one bad notice must not end every later one
                self._telemetry.error(ErrorKind.NOTICE)
                log.exception("a notice could not be made or sent; going on with the next")

    def _round(self) -> None:
        try:
            held = self._queue.get(timeout=self._tick)
        except queue.Empty:
            pass
        else:
            self._after_hold(held)
        self._digest_if_due()

    def _after_hold(self, held: Held) -> None:
        policy = self._policy()
        settings = policy.notices
        if settings is None:
            return
        if settings.is_own(held.sender):
            # A notice of ours was held itself (its recipient's domain is in doubt, say):
            # telling anyone of it, or a new digest for it, would only be held again.
            log.warning("record #%d: a notice from %s was held (%s); nobody is told of it",
                        held.record_id, settings.sender_address, held.rule)
            return
        if settings.in_digest(held.rule) and self._pending is None:
            self._pending = time.monotonic()
        to = addressee(held, policy)
        if not to.address:
            log.info("record #%d: sender not told: %s", held.record_id, to.why_not)
            return
        notice = self._notice_for(held, to.address, policy, settings)
        if not self._send(notice, f"record #{held.record_id}: sender notice"):
            return
        try:
            self._records.notified(held.record_id, f"to {to.domain}")
        except RecordsUnavailableError as exc:
            log.error("record #%d: sender told, but not audited: %s", held.record_id, exc)
        log.info("record #%d: sender told (domain %s)", held.record_id, to.domain)

    def _notice_for(self, held: Held, to: str, policy: Policy,
                    settings: NoticeSettings) -> Outgoing:
        """A hold the sender may confirm gets the two signed links; any other, or one
        whose links cannot be signed, the plain notice (a reviewer decides)."""
        now = self._clock()
        guard = policy.first_recipient
        if (held.rule.sender_confirms and held.confirm and held.key and guard is not None
                and self._link_key is not None):
            valid = min(dt.timedelta(hours=guard.link_valid_hours),
                        dt.timedelta(seconds=policy.quarantine.retention_seconds))
            expires = held.held_at + valid
            signed = [links.url(settings.review_url, links.sign(
                self._link_key, held.record_id, held.key, action, int(expires.timestamp())))
                for action in (links.Confirm.SEND, links.Confirm.CANCEL)]
            return confirm_notice(held, to, settings, policy.organisation,
                                  (signed[0], signed[1]), expires, now)
        return sender_notice(held, to, settings, policy.organisation, policy.quarantine, now)

    def _send(self, notice: Outgoing, what: str) -> bool:
        try:
            self._mail.send(notice)
        except SendmailError as exc:
            self.failed += 1
            self._telemetry.error(ErrorKind.NOTICE)
            log.error("%s not sent: %s", what, exc)
            return False
        self.sent += 1
        return True

    def _digest_if_due(self) -> None:
        policy = self._policy()
        settings = policy.notices
        if settings is None or settings.digest is DigestPeriod.OFF:
            return
        now, ticks = self._clock(), time.monotonic()
        name = period_name(settings.digest, now)
        if name is None or name == self._done or ticks < self._retry_at:
            return
        if settings.digest is DigestPeriod.IMMEDIATELY and (
                self._pending is None or ticks - self._pending < self._batch):
            return
        try:
            self._digest(policy, settings, name, now)
        except RecordsUnavailableError as exc:
            self._retry_at = ticks + STORE_RETRY
            log.error("digest %s: %s; trying again in %g s", name, exc, STORE_RETRY)

    def _digest(self, policy: Policy, settings: NoticeSettings, name: str,
                now: dt.datetime) -> None:
        # Claimed before the list is read: the winner lists every hold recorded before
        # it looked, on any MTA. A loser of an `immediately` minute keeps its holds
        # pending for the next minute, so none is left out.
        won = self._records.claim(name)
        self._done = name
        if not won:
            return
        self._pending = None
        if settings.digest is DigestPeriod.IMMEDIATELY:
            self._retry_at = time.monotonic() + IMMEDIATE_SPACING
        try:
            waiting = [h for h in self._records.waiting() if settings.in_digest(h.rule)]
            reviewers = self._records.reviewers() if waiting else []
        except RecordsUnavailableError as exc:
            log.error("digest %s: claimed, but not sent: %s", name, exc)
            return
        sent = 0
        for who, email in reviewers:
            parsed = plain_address(email)
            if parsed is None or not policy.owns(parsed[1]):
                domain = email.rpartition("@")[2]
                log.warning("digest: not sent to reviewer %s: their address (domain %s) is "
                            "not a plain address in an owned domain", printable(who, 64),
                            printable(domain, 255) or "none")
                continue
            notice = digest(waiting, f"{parsed[0]}@{parsed[1]}", settings,
                            policy.organisation, settings.digest, now)
            sent += self._send(notice, f"digest for {printable(who, 64)}")
        if waiting:
            log.info("digest %s: %d waiting, sent to %d reviewer(s)", name, len(waiting),
                     sent)
