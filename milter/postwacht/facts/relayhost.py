"""Postfix's relayhost, as the daemon last read it.

Through a relay, what the filter finds about a recipient's domain protects the mail only
when the policy names the relay and trusts it (`postwacht.core.relay`). So the daemon
reads `relayhost` with postconf at start, again whenever main.cf changes (the policy
watcher looks every few seconds) and on `postwacht reload`, and says in its log what the
value means for sensitive mail. A read that fails keeps the value read before and is
tried again a minute later; a main.cf that was never read counts as a relay nobody named
(no sensitive mail counts as verified); with no main.cf at all (the filter runs on
another machine) the policy's `delivery` section is taken for the truth, and the log
says so. Postfix's new processes read main.cf as the file is now (and `postfix reload`
restarts them all), so the file's value is the one mail leaves by, give or take the
processes still running: after changing relayhost, reload Postfix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from postwacht.core.policy import Policy
from postwacht.core.relay import UNREADABLE, HopError, next_hops, relaying
from postwacht.core.vocabulary import Mode
from postwacht.filestamp import FileStamp, file_stamp
from postwacht.telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger("postwacht.relay")

RETRY = 60.0
"""Seconds before a failed read of the relayhost is tried again (main.cf unchanged)."""


class RelayhostUnknownError(Exception):
    """Postfix could not be asked; the message says why."""


class RelayhostWatch:
    """The relayhost of one Postfix configuration, read again when main.cf changes."""

    def __init__(self, read: Callable[[], str], main_cf: Path,
                 policy: Callable[[], Policy], telemetry: Telemetry = NO_TELEMETRY,
                 retry: float = RETRY, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._telemetry = telemetry
        self._main_cf = main_cf
        self._policy = policy
        self._retry = retry
        self._clock = clock
        self._lock = threading.RLock()  # announce() from the policy watcher, too
        self._looked = False
        self._seen: FileStamp | None = None
        self._current: tuple[str, ...] | None = None
        self._unknown = ""
        self._retry_at = 0.0

    @property
    def current(self) -> tuple[str, ...] | None:
        """The relayhost's next hops (empty: none) as last read; `UNREADABLE` when main.cf
        is there but was never read; None when there is no main.cf to read."""
        return self._current  # one reference read: atomic under the GIL

    def refresh(self, force: bool = False) -> None:
        """Read the relayhost again if main.cf changed since the last look, if the last
        read failed `retry` seconds ago, or when `force`d."""
        with self._lock:
            seen, now = file_stamp(self._main_cf), self._clock()
            if self._looked and not (force or seen != self._seen
                                     or (self._unknown and now >= self._retry_at)):
                return
            before = (self._current, self._unknown)
            try:
                value = self._read()
            except RelayhostUnknownError as exc:
                # Keep what Postfix said last: a relay does not vanish because postconf
                # failed once (a timeout, a main.cf being written). Never read, with a
                # main.cf there: a relay nobody named, for all the filter knows.
                self._unknown, self._retry_at = str(exc), now + self._retry
                if self._current is None or self._current == UNREADABLE:
                    self._current = UNREADABLE if seen is not None else None
            else:
                self._current, self._unknown = hops_of(value), ""
            self._looked, self._seen = True, seen
            if (self._current, self._unknown) != before:
                self.announce()

    def announce(self) -> None:
        """Say in the log how outside mail leaves, under the running policy."""
        with self._lock:
            policy = self._policy()
            if self._unknown:
                if self._current == UNREADABLE:
                    kept = "sensitive mail counts as not verified until it is read"
                elif self._current is None:
                    kept = "no main.cf: taking the policy's delivery section for it"
                else:
                    kept = "keeping the value read before"
                log.warning("cannot read Postfix's relayhost (%s): %s; trying again within "
                            "%g s", self._unknown, kept, self._retry)
            standing = relaying(policy, self._current)
            secure = policy.secure_transport
            unverified = standing.problem is not None and secure is not None
            # The alert is for mail held (or refused, or routed) now, not in monitor mode.
            self._telemetry.relay_unverified(
                unverified and secure is not None and secure.mode is Mode.ENFORCE)
            if unverified:
                log.warning("outside mail leaves %s; sensitive mail counts as not verified",
                            standing.describe())
            else:
                log.info("outside mail leaves %s", standing.describe())


def hops_of(value: str) -> tuple[str, ...]:
    """A relayhost this module cannot read still names a relay: kept as written, it
    matches no policy, so sensitive mail through it is never taken for verified."""
    try:
        return next_hops(value)
    except HopError:
        log.error("Postfix's relayhost %r is not a next hop Postwacht understands", value)
        return (value.strip().lower(),)
