"""The daemon's share of review: requests carried out through the release helper, held
mail expired after the retention, and records of vanished messages closed."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from postwacht import defaults
from postwacht.core.decide import RecipientVerdict
from postwacht.core.policy import OnExpiry, QuarantineSettings
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.executor import GONE, HelperUnreachableError, RequestExecutor
from postwacht.records.queue import ActionResult, PostfixError
from postwacht.records.store import (
    ConflictError,
    QuarantineRecord,
    RecordsError,
    ReleaseMode,
    Request,
    Review,
    Status,
)
from postwacht.telemetry import ErrorKind, NoTelemetry, RequestOutcome

from tests.labs.util import poll

NOW = dt.datetime(2026, 3, 6, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
MTA = "mta-a"


def record(record_id: int, held_at: dt.datetime, queue_id: str = "",
           mta: str = MTA, status: Status = Status.HELD) -> QuarantineRecord:
    verdict = RecipientVerdict("x@samen-veiIig.nl", ("samen-veiig.nl",), Action.QUARANTINE,
                               Rule.LOOKALIKE, "looks like samen-veilig.nl")
    return QuarantineRecord(record_id, mta, queue_id or f"4Q{record_id:08X}", f"key{record_id}",
                            held_at, "a@samen-veilig.nl", (verdict,), Rule.LOOKALIKE,
                            verdict.reason, "0" * 64, status)


@dataclass
class Store:
    """The records store as the executor uses it; keeps what was asked of it."""

    records: dict[int, QuarantineRecord] = field(default_factory=dict)
    requests: dict[int, tuple[Request, QuarantineRecord]] = field(default_factory=dict)
    finished: list[tuple[int, bool, str, str | None]] = field(default_factory=list)
    gone: list[tuple[int, str]] = field(default_factory=list)
    declined: list[tuple[int, str, str]] = field(default_factory=list)
    fail: list[str] = field(default_factory=list)
    """Method names that raise RecordsError once each."""
    conflicts: set[int] = field(default_factory=set)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    captured: set[int] = field(default_factory=set)
    """Records whose content the helper saved."""

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            self.fail.remove(method)
            raise RecordsError(f"records unreachable in {method}")

    def add(self, *records: QuarantineRecord) -> None:
        self.records.update((r.record_id, r) for r in records)

    def quarantine_records(self, statuses: Collection[Status] | None = None,
                           mta: str | None = None) -> list[QuarantineRecord]:
        self._maybe_fail("quarantine_records")
        found = [r for r in self.records.values()
                 if (statuses is None or r.status in statuses) and mta in (None, r.mta)]
        return sorted(found, key=lambda r: r.held_at)

    def request(self, record_id: int, action: Review, mode: ReleaseMode, actor: str,
                reason: str) -> Request:
        if record_id in self.conflicts:
            raise ConflictError(f"record {record_id} is requested already (by reviewer)")
        request = Request(next(self.ids), record_id, action, mode, actor, reason, NOW)
        self.records[record_id] = replace(self.records[record_id], status=Status.REQUESTED,
                                          request=request)
        self.requests[request.request_id] = (request, self.records[record_id])
        return request

    def pending_requests(self, mta: str) -> list[tuple[Request, QuarantineRecord]]:
        self._maybe_fail("pending_requests")
        return [(q, r) for q, r in self.requests.values() if r.mta == mta and not q.outcome]

    def finish_request(self, request_id: int, ok: bool, detail: str,
                       queue_id: str | None = None) -> None:
        self._maybe_fail("finish_request")
        request, rec = self.requests[request_id]
        self.requests[request_id] = (replace(request, outcome="done" if ok else "failed"), rec)
        status = request.action.status if ok else Status.HELD
        self.records[rec.record_id] = replace(self.records[rec.record_id], status=status)
        self.finished.append((request_id, ok, detail, queue_id))

    def decline(self, request_id: int, actor: str, reason: str) -> None:
        request, rec = self.requests[request_id]
        self.requests[request_id] = (replace(request, outcome="declined"), rec)
        self.records[rec.record_id] = replace(self.records[rec.record_id], status=Status.HELD)
        self.declined.append((request_id, actor, reason))

    def close_gone(self, record_id: int, detail: str) -> None:
        self.records[record_id] = replace(self.records[record_id], status=Status.GONE)
        self.gone.append((record_id, detail))

    def without_content(self, mta: str) -> list[QuarantineRecord]:
        self._maybe_fail("without_content")
        return [r for r in self.quarantine_records([Status.HELD], mta)
                if r.record_id not in self.captured]


@dataclass
class Helper:
    answers: list[ActionResult | Exception] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)
    store: Store | None = None
    capture_answers: list[ActionResult | Exception] = field(default_factory=list)
    captures: list[int] = field(default_factory=list)

    def carry_out(self, request_id: int) -> ActionResult:
        self.asked.append(request_id)
        answer = self.answers.pop(0) if self.answers else ActionResult(True, "done it")
        if isinstance(answer, Exception):
            raise answer
        return answer

    def capture(self, record_id: int) -> ActionResult:
        """Saves the content, as the real helper does, unless told to answer otherwise."""
        self.captures.append(record_id)
        answer = (self.capture_answers.pop(0) if self.capture_answers
                  else ActionResult(True, "captured"))
        if isinstance(answer, Exception):
            raise answer
        if answer.ok and self.store is not None:
            self.store.captured.add(record_id)
        return answer


@dataclass
class HoldQueue:
    queue_ids: list[str] = field(default_factory=list)
    broken: bool = False
    arrival: float = (NOW - DAY).timestamp()

    def hold_queue(self) -> list[dict[str, object]]:
        if self.broken:
            raise PostfixError("postqueue -j failed: fatal: Queue report unavailable")
        return [{"queue_id": q, "queue_name": "hold", "arrival_time": self.arrival}
                for q in self.queue_ids]


class Counted(NoTelemetry):
    def __init__(self) -> None:
        self.requests: list[tuple[str, RequestOutcome]] = []
        self.errors: list[ErrorKind] = []
        self.gone = 0
        self.unrecorded: list[int] = []

    def held_unrecorded(self, count: int) -> None:
        self.unrecorded.append(count)

    def review_request(self, action: str, outcome: RequestOutcome) -> None:
        self.requests.append((action, outcome))

    def error(self, kind: ErrorKind) -> None:
        self.errors.append(kind)

    def record_gone(self) -> None:
        self.gone += 1


@dataclass
class Setup:
    store: Store
    helper: Helper
    queue: HoldQueue
    telemetry: Counted
    executor: RequestExecutor


def setup(settings: QuarantineSettings | None = None, sync_interval: float = 60.0) -> Setup:
    store, queue, telemetry = Store(), HoldQueue(), Counted()
    helper = Helper(store=store)
    quarantine = settings or QuarantineSettings(30.0, OnExpiry.RETURN)
    executor = RequestExecutor(store, MTA, helper, queue, lambda: quarantine, telemetry,
                               requests_interval=0.01, sync_interval=sync_interval,
                               clock=NOW.timestamp)
    return Setup(store, helper, queue, telemetry, executor)


def test_a_reviewers_request_is_carried_out_by_the_helper_and_its_outcome_written_back() -> None:
    s = setup()
    s.store.add(record(1, NOW - DAY), record(2, NOW - DAY, mta="mta-b"))
    mine = s.store.request(1, Review.RELEASE, ReleaseMode.PLAIN, "officer", "checked")
    s.store.request(2, Review.DELETE, ReleaseMode.PLAIN, "officer", "spam")
    s.helper.answers = [ActionResult(True, "released 4Q00000001 as 4R0000001", "4R0000001")]
    s.executor.carry_out_requests()
    assert s.helper.asked == [mine.request_id]  # the other MTA's request is not ours
    assert s.store.finished == [(mine.request_id, True, "released 4Q00000001 as 4R0000001",
                                 "4R0000001")]
    assert s.telemetry.requests == [("release", RequestOutcome.DONE)]


def test_a_helper_that_cannot_be_reached_fails_the_request_in_words_a_reviewer_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = setup()
    s.store.add(record(1, NOW - DAY))
    request = s.store.request(1, Review.DELETE, ReleaseMode.PLAIN, "officer", "spam")
    down = HelperUnreachableError("release helper at /x/release.sock: cannot be reached: "
                                  "No such file or directory")
    s.helper.answers = [down, down, down]
    s.executor.carry_out_requests()
    s.executor.carry_out_requests()
    assert s.store.finished == []  # it may be restarting: asked again next round
    monkeypatch.setattr(defaults, "RELEASE_HELPER_PATIENCE", 0.0)  # ... for so long
    s.executor.carry_out_requests()
    [(request_id, ok, detail, _)] = s.store.finished
    assert (request_id, ok) == (request.request_id, False)
    assert detail == ("the release helper on MTA mta-a is not running: release helper at "
                      "/x/release.sock: cannot be reached: No such file or directory")
    assert s.telemetry.errors == [ErrorKind.RELEASE_HELPER] * 3
    assert s.telemetry.requests == [("delete", RequestOutcome.FAILED)]


@pytest.mark.parametrize(("on_expiry", "mode"), [(OnExpiry.RETURN, ReleaseMode.RETURN),
                                                 (OnExpiry.DELETE, ReleaseMode.PLAIN)])
def test_held_mail_older_than_the_retention_is_expired_as_the_policy_says(
    on_expiry: OnExpiry, mode: ReleaseMode,
) -> None:
    s = setup(QuarantineSettings(30.0, on_expiry))
    s.store.add(record(1, NOW - 31 * DAY), record(2, NOW - 29 * DAY),
                record(3, NOW - 40 * DAY, mta="mta-b"))
    s.queue.queue_ids = [r.queue_id for r in s.store.records.values()]
    s.executor.sync()
    [(request, _)] = s.store.requests.values()
    assert (request.record_id, request.action, request.mode, request.actor) == (
        1, Review.EXPIRE, mode, "postwacht")
    assert request.reason == "held longer than 30 days (quarantine.retention_days)"
    s.executor.carry_out_requests()
    assert s.store.records[1].status is Status.EXPIRED
    assert s.telemetry.requests == [("expire", RequestOutcome.DONE)]


def test_a_reviewer_who_acted_first_wins_over_the_expiry() -> None:
    s = setup()
    s.store.add(record(1, NOW - 31 * DAY), record(2, NOW - 31 * DAY))
    s.queue.queue_ids = [r.queue_id for r in s.store.records.values()]
    s.store.conflicts.add(1)
    s.executor.sync()
    assert [q.record_id for q, _ in s.store.requests.values()] == [2]


def test_a_failed_expiry_is_not_asked_for_again_every_round() -> None:
    s = setup()
    s.store.add(record(1, NOW - 31 * DAY))
    s.queue.queue_ids = [s.store.records[1].queue_id]
    s.helper.answers = [ActionResult(False, "not the message this record is about")]
    s.executor.sync()
    s.executor.carry_out_requests()
    assert s.store.records[1].status is Status.HELD
    s.executor.sync()
    assert len(s.store.requests) == 1


def test_a_record_whose_message_left_the_hold_queue_is_closed_as_gone_after_a_grace() -> None:
    s = setup(sync_interval=60.0)
    s.store.add(record(1, NOW - dt.timedelta(minutes=10)),  # gone
                record(2, NOW - dt.timedelta(minutes=10)),  # still held
                record(3, NOW - dt.timedelta(seconds=30)),  # maybe not in hold yet
                record(4, NOW - dt.timedelta(minutes=10), mta="mta-b"))  # not ours
    s.queue.queue_ids = [s.store.records[2].queue_id]
    s.executor.sync()
    assert s.store.gone == [(1, "left the hold queue outside Postwacht")]
    assert s.telemetry.gone == 1
    assert s.executor.gone_grace == 120.0


def test_held_messages_that_no_record_describes_are_counted_for_operations() -> None:
    s = setup()
    s.store.add(record(1, NOW - dt.timedelta(minutes=10)))
    s.queue.queue_ids = [s.store.records[1].queue_id, "4QUNRECORDED1"]
    s.executor.sync()
    assert s.telemetry.unrecorded == [1]
    s.queue.arrival = NOW.timestamp()  # just held: its record may still be on its way
    s.executor.sync()
    assert s.telemetry.unrecorded == [1, 0]


def test_a_hold_queue_that_cannot_be_listed_closes_nothing() -> None:
    s = setup()
    s.store.add(record(1, NOW - dt.timedelta(minutes=10)))
    s.queue.broken = True
    s.executor.sync()
    assert s.store.gone == []
    assert s.telemetry.errors == [ErrorKind.HOLD_QUEUE]


def test_records_that_cannot_be_reached_are_tried_again_and_the_thread_lives_on() -> None:
    s = setup()
    s.store.add(record(1, NOW - DAY))
    s.queue.queue_ids = [s.store.records[1].queue_id]
    s.store.request(1, Review.DELETE, ReleaseMode.PLAIN, "officer", "spam")
    s.store.fail = ["quarantine_records", "pending_requests", "finish_request"]
    s.executor.start()
    try:
        poll(lambda: s.store.finished, "the request to be carried out", timeout=10)
    finally:
        s.executor.stop()
    assert s.telemetry.errors.count(ErrorKind.RECORDS) == 3
    assert s.helper.asked == [1, 1]  # asked again after finishing failed: it answers alike


# What review may see of held messages.

def test_new_holds_of_this_mta_get_their_content_captured_once() -> None:
    s = setup()
    s.store.add(record(1, NOW - DAY), record(2, NOW - DAY, mta="mta-b"),
                record(3, NOW - DAY, status=Status.RELEASED))
    s.executor.capture_content()
    s.executor.capture_content()
    assert s.helper.captures == [1]  # not the other MTA's, not a closed one, not twice
    assert s.store.captured == {1}
    assert s.telemetry.errors == []


def test_a_hold_of_the_last_moments_waits_for_postfix_to_move_it_into_hold() -> None:
    s = setup()
    s.store.add(record(1, NOW - dt.timedelta(seconds=1)))
    s.executor.capture_content()
    assert s.helper.captures == []
    s.store.add(record(1, NOW - dt.timedelta(seconds=defaults.GONE_GRACE)))
    s.executor.capture_content()
    assert s.helper.captures == [1]


def test_at_most_a_batch_is_captured_per_round_oldest_first() -> None:
    s = setup()
    s.store.add(*(record(i, NOW - DAY + dt.timedelta(seconds=i))
                  for i in range(1, defaults.CAPTURE_BATCH + 6)))
    s.executor.capture_content()
    assert s.helper.captures == list(range(1, defaults.CAPTURE_BATCH + 1))
    s.executor.capture_content()
    assert s.helper.captures[defaults.CAPTURE_BATCH:] == list(
        range(defaults.CAPTURE_BATCH + 1, defaults.CAPTURE_BATCH + 6))


def test_a_failed_capture_is_counted_and_not_tried_again_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = setup()
    s.store.add(record(1, NOW - DAY), record(2, NOW - DAY))
    s.helper.capture_answers = [ActionResult(False, "not the message this record is about")]
    s.executor.capture_content()
    assert s.helper.captures == [1, 2]  # one failure does not stop the others
    assert s.telemetry.errors == [ErrorKind.CONTENT_CAPTURE]
    s.executor.capture_content()
    assert s.helper.captures == [1, 2]
    monkeypatch.setattr(defaults, "CAPTURE_RETRY", 0.0)  # ... until its pause is over
    s.executor.capture_content()
    assert s.helper.captures == [1, 2, 1]
    assert s.store.captured == {1, 2}


def test_a_helper_that_cannot_be_reached_pauses_capture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = setup()
    s.store.add(record(1, NOW - DAY), record(2, NOW - DAY))
    s.helper.capture_answers = [HelperUnreachableError("release helper: cannot be reached")]
    s.executor.capture_content()
    assert s.helper.captures == [1]  # the rest would only fail too
    assert s.telemetry.errors == [ErrorKind.RELEASE_HELPER]
    s.executor.capture_content()
    assert s.helper.captures == [1]
    monkeypatch.setattr(defaults, "CAPTURE_PAUSE", 0.0)
    s.executor.capture_content()
    assert s.helper.captures == [1, 1, 2]


def test_the_daemons_thread_captures_after_the_requests_and_lives_through_failures() -> None:
    s = setup()
    s.store.add(record(1, NOW - DAY))
    s.queue.queue_ids = [s.store.records[1].queue_id]
    s.store.fail = ["without_content"]
    s.executor.start()
    try:
        poll(lambda: s.store.captured, "the content to be captured", timeout=10)
    finally:
        s.executor.stop()
    assert s.telemetry.errors == [ErrorKind.RECORDS]


def awaiting(store: Store, record_id: int) -> Request:
    """A release of `record_id` asked by a reviewer, waiting for a second person."""
    request = Request(next(store.ids), record_id, Review.RELEASE, ReleaseMode.OVERRIDE,
                      "anna", "the partner confirmed", NOW,
                      needs_approval="it overrides the lookalike hold")
    store.records[record_id] = replace(store.records[record_id], status=Status.REQUESTED,
                                       request=request)
    store.requests[request.request_id] = (request, store.records[record_id])
    return request


def test_a_release_nobody_approved_does_not_keep_its_message_past_the_retention() -> None:
    s = setup(QuarantineSettings(30.0, OnExpiry.DELETE))
    s.store.add(record(1, NOW - 31 * DAY), record(2, NOW - 29 * DAY))
    s.queue.queue_ids = [r.queue_id for r in s.store.records.values()]
    first, second = awaiting(s.store, 1), awaiting(s.store, 2)
    s.executor.sync()
    assert s.store.declined == [(first.request_id, "postwacht",
                                 "held longer than 30 days (quarantine.retention_days): no "
                                 "second person approved it in time")]
    expiry = [q for q, _ in s.store.requests.values() if q.action is Review.EXPIRE]
    assert [q.record_id for q in expiry] == [1]
    assert s.store.records[2].request == second  # younger: still waits for its approver


def test_a_release_waiting_for_approval_whose_message_left_is_closed_as_gone() -> None:
    s = setup()
    s.store.add(record(1, NOW - dt.timedelta(minutes=10)))
    asked = awaiting(s.store, 1)
    s.executor.sync()
    assert s.store.declined == [(asked.request_id, "postwacht", GONE)]
    assert s.store.gone == [(1, GONE)]
