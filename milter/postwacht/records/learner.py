"""The daemon's side of the first-recipient guard: what it asks, what it learns.

At end of message the milter asks which recipients are known correspondents (one read of
the store, only for sensitive mail with outside recipients the guard could hold). What
left is learnt from a bounded queue by a thread of its own, so that accepting mail never
waits on the store; a full queue or a failing store costs a later message a question to
its sender, never a message. Entries not used for the policy's `forget_after_days` are
expired once an hour.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from postwacht.core.policy import Policy
from postwacht.records.correspondents import Correspondents
from postwacht.records.store import RecordsError
from postwacht.telemetry import NO_TELEMETRY, ErrorKind, Telemetry

log = logging.getLogger("postwacht.correspondents")

QUEUE_SIZE = 10_000
"""Messages whose recipients wait to be learnt; beyond, one is dropped (and counted)."""
PAIRS_WAITING = 200_000
"""Sender-recipient pairs waiting in all: a message with very many recipients counts for
each, so the queue's memory is bounded whatever the messages."""
BATCH = 500
"""Pairs learnt in one write."""
EXPIRE_EVERY = 3600.0
"""Seconds between expiries of unused correspondents."""


class CorrespondentLearner:
    """Known correspondents for the fact gatherer, and learning from mail that left."""

    def __init__(self, correspondents: Correspondents, policy: Callable[[], Policy],
                 telemetry: Telemetry = NO_TELEMETRY, queue_size: int = QUEUE_SIZE,
                 clock: Callable[[], dt.datetime] | None = None, *,
                 key_problem: str = "", pairs_waiting: int = PAIRS_WAITING) -> None:
        self._correspondents = correspondents
        self._key_problem = key_problem
        """Why this daemon's key is not the store's ('' when it is): then nothing is asked
        (every first recipient is new) and nothing written (no hashes of another key)."""
        self._pairs_waiting = pairs_waiting
        self._waiting = 0
        self._lock = threading.Lock()
        self._policy = policy
        self._telemetry = telemetry
        self._queue: queue.Queue[tuple[str, tuple[str, ...]]] = queue.Queue(queue_size)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._expired_at = 0.0
        self.dropped = 0

    def known(self, sender: str, recipients: Sequence[str], policy: Policy) -> frozenset[str]:
        """Which of `recipients` the guard knows for `sender`, by the policy's scope and
        match; none when the store cannot say (they are asked about, not lost)."""
        guard = policy.first_recipient
        if guard is None or not recipients:
            return frozenset()
        if self._key_problem:
            self._telemetry.error(ErrorKind.CORRESPONDENTS)
            log.error("known correspondents not asked: %s", self._key_problem)
            return frozenset()
        since = self._clock() - dt.timedelta(days=guard.forget_after_days)
        try:
            return self._correspondents.known(sender, recipients, guard.scope, guard.match,
                                              since)
        except RecordsError as exc:
            self._telemetry.error(ErrorKind.CORRESPONDENTS)
            log.error("known correspondents unavailable (%s): every first recipient of this "
                      "message counts as new", exc)
            return frozenset()

    def left(self, sender: str, recipients: Sequence[str]) -> None:
        """Mail from `sender` left for `recipients` (from a milter thread): never waits."""
        if (not recipients or not sender or self._key_problem
                or self._policy().first_recipient is None):
            return
        if not self._queued(sender, tuple(recipients)):
            self.dropped += 1
            self._telemetry.error(ErrorKind.CORRESPONDENTS)
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("correspondents queue full: %d messages not learnt so far",
                            self.dropped)

    def _queued(self, sender: str, recipients: tuple[str, ...]) -> bool:
        with self._lock:
            if self._waiting + len(recipients) > self._pairs_waiting:
                return False
            try:
                self._queue.put_nowait((sender, recipients))
            except queue.Full:
                return False
            self._waiting += len(recipients)
            return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="correspondents", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._round()
            except Exception:  # the thread must outlive one bad round
                self._telemetry.error(ErrorKind.CORRESPONDENTS)
                log.exception("learning correspondents failed; going on")

    def _round(self) -> None:
        pairs: list[tuple[str, str]] = []
        try:
            sender, recipients = self._queue.get(timeout=1.0)
        except queue.Empty:
            pass
        else:
            pairs.extend((sender, r) for r in recipients)
            while len(pairs) < BATCH:
                try:
                    sender, recipients = self._queue.get_nowait()
                except queue.Empty:
                    break
                pairs.extend((sender, r) for r in recipients)
        if pairs:
            with self._lock:
                self._waiting -= len(pairs)
            self._learn(pairs)
        if time.monotonic() - self._expired_at >= EXPIRE_EVERY:
            self._expire()

    def _learn(self, pairs: list[tuple[str, str]]) -> None:
        try:
            self._correspondents.learn_pairs(pairs, self._clock())
        except RecordsError as exc:
            self._telemetry.error(ErrorKind.CORRESPONDENTS)
            log.error("%d correspondents not learnt: %s", len(pairs), exc)

    def _expire(self) -> None:
        self._expired_at = time.monotonic()
        guard = self._policy().first_recipient
        if guard is None:
            return
        try:
            gone = self._correspondents.expire(
                self._clock() - dt.timedelta(days=guard.forget_after_days))
        except RecordsError as exc:
            self._telemetry.error(ErrorKind.CORRESPONDENTS)
            log.error("unused correspondents not expired: %s", exc)
            return
        if gone:
            log.info("%d correspondents unused for %g days forgotten", gone,
                     guard.forget_after_days)
