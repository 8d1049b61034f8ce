"""The daemon's share of review, on the MTA that holds the messages.

Reviewers only write requests to the records store; the daemon on each MTA carries out
those for its own messages, through the release helper (root, a separate process: the
daemon itself may not run postsuper), and writes the outcome back. The same thread keeps
the records true to Postfix's hold queue: held mail older than the policy's
`quarantine.retention_days` is expired (a request like a reviewer's, by the actor
`postwacht`, so it is carried out and audited the same way), and a record whose message
left the hold queue some other way (`postsuper -d` by hand) is closed as gone, instead of
being shown and counted as held for ever. And after each round of requests it has the
helper capture what review may see of new holds (`records.content`): review runs
unprivileged and elsewhere, and reads only the store.

Nothing here may stop: a store that cannot be reached, a helper that is down or a
`postqueue` that fails is logged, counted and tried again next round.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Protocol

from postwacht import defaults
from postwacht.core.policy import OnExpiry, QuarantineSettings
from postwacht.core.text import printable
from postwacht.records.queue import ActionResult, PostfixError
from postwacht.records.store import (
    OPEN,
    POSTWACHT,
    ConflictError,
    QuarantineRecord,
    RecordsError,
    RecordStore,
    ReleaseMode,
    Request,
    Review,
    Status,
)
from postwacht.telemetry import ErrorKind, RequestOutcome, Telemetry

log = logging.getLogger("postwacht.review")

GONE = "left the hold queue outside Postwacht"


class HelperUnreachableError(Exception):
    """The release helper could not be asked, or gave no proper answer; the message says
    why. Whether it acted is unknown: asking again is safe (it answers a request it carried
    out with the same answer)."""


class ReleaseHelper(Protocol):
    def carry_out(self, request_id: int) -> ActionResult:
        """Carry out one pending request, or say why not; `HelperUnreachableError` when the
        helper cannot be asked."""

    def capture(self, record_id: int) -> ActionResult:
        """Capture what review may see of the message held under one record into the
        store, or say why not; `HelperUnreachableError` when the helper cannot be asked."""


class HoldQueue(Protocol):
    def hold_queue(self) -> list[dict[str, object]]:
        """The messages in Postfix's hold queue (`postqueue -j` entries); PostfixError."""


class RequestExecutor:
    """Carries out this MTA's review requests every `requests_interval` seconds, and
    expires and closes records every `sync_interval` seconds, in one thread."""

    def __init__(self, store: RecordStore, mta: str, helper: ReleaseHelper,
                 postfix: HoldQueue, settings: Callable[[], QuarantineSettings],
                 telemetry: Telemetry, requests_interval: float = defaults.REQUESTS_INTERVAL,
                 sync_interval: float = defaults.SYNC_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._mta = mta
        self._helper = helper
        self._postfix = postfix
        self._settings = settings
        self._telemetry = telemetry
        self._requests_interval = requests_interval
        self._sync_interval = sync_interval
        self._clock = clock
        self._unreachable: dict[int, float] = {}
        """Since when (monotonic) the helper could not be asked about a request."""
        self._helper_down_at: float | None = None
        self._expiry_failed: dict[int, float] = {}
        """Records whose expiry failed, and when: asked again only after EXPIRY_RETRY."""
        self._unrecorded_seen: set[str] = set()
        self._capture_failed: dict[int, float] = {}
        """Records whose capture failed, and when: tried again only after CAPTURE_RETRY."""
        self._capture_paused_at: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def gone_grace(self) -> float:
        return max(2 * self._sync_interval, defaults.GONE_GRACE)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="review-requests",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(defaults.RELEASE_HELPER_TIMEOUT)
            if self._thread.is_alive():
                log.warning("review requests: still waiting for the release helper; "
                            "stopping without it")
            self._thread = None

    def _run(self) -> None:
        next_sync = time.monotonic()
        while not self._stopping.is_set():
            if time.monotonic() >= next_sync:
                self._guarded("retention and vanished messages", self.sync)
                next_sync = time.monotonic() + self._sync_interval
            self._guarded("review requests", self.carry_out_requests)
            self._guarded("content capture", self.capture_content)
            self._stopping.wait(self._requests_interval)

    def _guarded(self, what: str, work: Callable[[], None]) -> None:
        try:
            work()
        except RecordsError as exc:
            self._telemetry.error(ErrorKind.RECORDS)
            log.error("%s on MTA %s: %s; trying again next round", what, self._mta, exc)
        except Exception:  # this thread must outlive any bug; the traceback says where
            log.exception("%s on MTA %s failed; trying again next round", what, self._mta)

    # Requests.

    def carry_out_requests(self) -> None:
        """Every request waiting for this MTA, through the release helper, one by one."""
        for request, record in self._store.pending_requests(self._mta):
            if self._stopping.is_set():
                return
            self._carry_out(request, record)

    def _carry_out(self, request: Request, record: QuarantineRecord) -> None:
        try:
            result = self._helper.carry_out(request.request_id)
        except HelperUnreachableError as exc:
            self._telemetry.error(ErrorKind.RELEASE_HELPER)
            self._helper_down_at = time.monotonic()
            since = self._unreachable.setdefault(request.request_id, time.monotonic())
            if time.monotonic() - since < defaults.RELEASE_HELPER_PATIENCE:
                log.warning("request %d: %s; asking again next round", request.request_id,
                            exc)
                return
            result = ActionResult(False, f"the release helper on MTA {self._mta} is not "
                                         f"running: {exc}")
        else:
            self._helper_down_at = None
        self._unreachable.pop(request.request_id, None)
        try:
            self._store.finish_request(request.request_id, result.ok, result.detail,
                                       result.queue_id)
        except ConflictError as exc:  # finished already (a write whose answer was lost)
            log.info("request %d: %s", request.request_id, exc)
            return
        if request.action is Review.EXPIRE and not result.ok:
            self._expiry_failed[record.record_id] = time.monotonic()
        outcome = RequestOutcome.DONE if result.ok else RequestOutcome.FAILED
        self._telemetry.review_request(request.action.value, outcome)
        log.info("request %d (%s of %s on %s, by %s): %s: %s", request.request_id,
                 request.action, record.queue_id, self._mta, request.actor, outcome,
                 result.detail)

    # What review may see of held messages.

    def capture_content(self) -> None:
        """Have the helper capture the content of this MTA's held messages that have none
        yet, oldest first, at most CAPTURE_BATCH a round."""
        if self._recently(self._capture_paused_at, defaults.CAPTURE_PAUSE):
            return  # the helper was down: each would only fail
        waiting = self._store.without_content(self._mta)
        # Forget failures past their pause, and those of records no longer waiting: the
        # memo stays no larger than the quarantine.
        ids = {r.record_id for r in waiting}
        self._capture_failed = {k: t for k, t in self._capture_failed.items()
                                if k in ids and self._recently(t, defaults.CAPTURE_RETRY)}
        # Not yet: Postfix moves a message into hold only after the milter's answer.
        cutoff = self._now() - dt.timedelta(seconds=defaults.GONE_GRACE)
        asked = 0
        for record in waiting:
            if asked >= defaults.CAPTURE_BATCH or self._stopping.is_set():
                return
            if record.record_id in self._capture_failed or record.held_at > cutoff:
                continue
            asked += 1
            if not self._capture(record):
                return

    def _capture(self, record: QuarantineRecord) -> bool:
        """Capture one; False when the helper cannot be asked (no use asking on)."""
        try:
            result = self._helper.capture(record.record_id)
        except HelperUnreachableError as exc:
            self._telemetry.error(ErrorKind.RELEASE_HELPER)
            self._capture_paused_at = time.monotonic()
            log.warning("content of held messages on MTA %s not captured for review: %s; "
                        "trying again in %g s", self._mta, exc, defaults.CAPTURE_PAUSE)
            return False
        if result.ok:
            log.info("record %d (%s on %s): %s", record.record_id, record.queue_id,
                     self._mta, result.detail)
        else:
            self._capture_failed[record.record_id] = time.monotonic()
            self._telemetry.error(ErrorKind.CONTENT_CAPTURE)
            log.warning("record %d (%s on %s): content not captured for review: %s; trying "
                        "again in %g s", record.record_id, record.queue_id, self._mta,
                        result.detail, defaults.CAPTURE_RETRY)
        return True

    # Retention and vanished messages.

    def sync(self) -> None:
        """Close the records of vanished messages (their expiry could only fail), then
        expire what is held too long; this MTA's open records are read once for both."""
        records = self._store.quarantine_records(OPEN, mta=self._mta)
        gone = self.close_vanished(records)
        self.expire([r for r in records if _undecided(r) and r.record_id not in gone])
        self._telemetry.records_synced(self._clock())

    def expire(self, held: list[QuarantineRecord]) -> None:
        """Ask for the expiry of held mail (oldest first) older than the retention (carried
        out by the next round of requests)."""
        if self._recently(self._helper_down_at, defaults.HELPER_DOWN_PAUSE):
            return  # each expiry would only fail, and be audited as failed
        self._expiry_failed = {k: t for k, t in self._expiry_failed.items()
                               if self._recently(t, defaults.EXPIRY_RETRY)}
        settings = self._settings()
        cutoff = self._now() - dt.timedelta(seconds=settings.retention_seconds)
        mode = ReleaseMode.RETURN if settings.on_expiry is OnExpiry.RETURN else ReleaseMode.PLAIN
        reason = f"held longer than {settings.retention} (quarantine.retention_days)"
        asked = 0
        for record in held:
            if record.held_at > cutoff or asked >= defaults.EXPIRY_BATCH:
                break
            if self._recently(self._expiry_failed.get(record.record_id), defaults.EXPIRY_RETRY):
                continue  # the failure is in the audit trail; not again every round
            if not self._decline_waiting(record, f"{reason}: no second person approved it "
                                                 "in time"):
                continue
            try:
                self._store.request(record.record_id, Review.EXPIRE, mode, POSTWACHT, reason)
            except ConflictError as exc:  # a reviewer acted first
                log.info("expiry of %s on %s: %s", record.queue_id, self._mta, exc)
                continue
            asked += 1
            log.info("expiring %s on %s (record %d): %s; %s", record.queue_id, self._mta,
                     record.record_id, reason,
                     "returning it to the sender" if mode is ReleaseMode.RETURN
                     else "deleting it")

    def close_vanished(self, records: list[QuarantineRecord]) -> set[int]:
        """Close the held ones of this MTA's open `records` whose message is no longer in
        the hold queue, and count the held messages that no record describes (review
        cannot see those); the ids of the records closed."""
        cutoff = self._now() - dt.timedelta(seconds=self.gone_grace)
        # Not yet: Postfix moves a message into hold only after the milter's answer.
        candidates = [r for r in records
                      if _undecided(r) and r.held_at <= cutoff]
        try:
            queue = self._postfix.hold_queue()
        except PostfixError as exc:
            self._telemetry.error(ErrorKind.HOLD_QUEUE)
            log.warning("cannot list the hold queue of MTA %s: %s; records of messages that "
                        "left it stay open until it can be listed", self._mta, exc)
            return set()
        held = _queue_ids(queue)
        self._count_unrecorded(queue, {r.queue_id for r in records}, cutoff)
        closed: set[int] = set()
        for record in candidates:
            if record.queue_id in held or not self._decline_waiting(record, GONE):
                continue
            try:
                self._store.close_gone(record.record_id, GONE)
            except ConflictError as exc:  # a reviewer acted on it meanwhile
                log.info("record %d of %s on %s: %s", record.record_id, record.queue_id,
                         self._mta, exc)
                continue
            closed.add(record.record_id)
            self._telemetry.record_gone()
            log.warning("record %d: message %s %s on MTA %s; closed as gone",
                        record.record_id, record.queue_id, GONE, self._mta)
        return closed

    def _decline_waiting(self, record: QuarantineRecord, why: str) -> bool:
        """A request that waits for a second person would keep its message out of
        retention and gone records open for ever: decline it first (audited as the
        daemon's). False when it was approved or acted on meanwhile."""
        if not record.awaiting_approval or record.request is None:
            return True
        try:
            self._store.decline(record.request.request_id, POSTWACHT, why)
        except ConflictError as exc:
            log.info("record %d of %s on %s: %s", record.record_id, record.queue_id,
                     self._mta, exc)
            return False
        return True

    def _count_unrecorded(self, queue: list[dict[str, object]], recorded: set[str],
                          cutoff: dt.datetime) -> None:
        unrecorded = sorted(
            str(e.get("queue_id")) for e in queue
            if str(e.get("queue_id")) not in recorded and _arrived_before(e, cutoff))
        self._telemetry.held_unrecorded(len(unrecorded))
        new = [q for q in unrecorded if q not in self._unrecorded_seen]
        self._unrecorded_seen = set(unrecorded)
        if new:
            log.warning("MTA %s holds %d message(s) that no Postwacht record describes "
                        "(review cannot see them; check them with postcat -q and release "
                        "or delete them with postsuper): %s", self._mta, len(new),
                        ", ".join(printable(q, 64) for q in new[:20]))

    @staticmethod
    def _recently(failed_at: float | None, span: float) -> bool:
        return failed_at is not None and time.monotonic() - failed_at < span

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)


def _arrived_before(entry: dict[str, object], cutoff: dt.datetime) -> bool:
    arrival = entry.get("arrival_time")
    return isinstance(arrival, int | float) and \
        dt.datetime.fromtimestamp(arrival, dt.UTC) <= cutoff


def _queue_ids(entries: Collection[dict[str, object]]) -> frozenset[str]:
    return frozenset(str(e.get("queue_id", "")) for e in entries)


def _undecided(record: QuarantineRecord) -> bool:
    """Held, or asked for but waiting for a second person: nobody has decided yet, so
    retention and gone records reach it."""
    return record.status is Status.HELD or record.awaiting_approval
