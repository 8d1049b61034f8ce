"""Postfix's relayhost, as the daemon last read it.

Through a relay, what the filter finds about a recipient's domain protects the mail only
when the policy names the relay and trusts it (`postwacht.core.relay`). So the daemon
reads `relayhost` with postconf at start, again whenever main.cf changes (the policy
watcher looks every few seconds) and on `postwacht reload`, and says in its log what the
value means for sensitive mail. Where Postfix cannot be asked (no postconf here, no
main.cf), the policy's `delivery` section is taken for the truth, and the log says so.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from postwacht.core.policy import Policy
from postwacht.core.relay import HopError, next_hops, relaying

log = logging.getLogger("postwacht.relay")


class RelayhostUnknownError(Exception):
    """Postfix could not be asked; the message says why."""


class RelayhostWatch:
    """The relayhost of one Postfix configuration, read again when main.cf changes."""

    def __init__(self, read: Callable[[], str], main_cf: Path,
                 policy: Callable[[], Policy]) -> None:
        self._read = read
        self._main_cf = main_cf
        self._policy = policy
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | bool | None = False  # False: never looked
        self._current: tuple[str, ...] | None = None
        self._unknown = ""

    @property
    def current(self) -> tuple[str, ...] | None:
        """The relayhost's next hops (empty: none); None when Postfix could not be asked."""
        return self._current  # one reference read: atomic under the GIL

    def refresh(self, force: bool = False) -> None:
        """Read the relayhost again if main.cf changed since the last look (or `force`)."""
        with self._lock:
            seen = self._signature()
            if seen == self._seen and not force:
                return
            self._seen = seen
            before = (self._current, self._unknown)
            try:
                value = self._read()
            except RelayhostUnknownError as exc:
                self._current, self._unknown = None, str(exc)
            else:
                self._current, self._unknown = hops_of(value), ""
            if (self._current, self._unknown) != before:
                self.announce()

    def announce(self) -> None:
        """Say in the log how outside mail leaves, under the running policy."""
        policy = self._policy()
        if self._unknown:
            log.warning("cannot read Postfix's relayhost (%s): taking the policy's delivery "
                        "section for it", self._unknown)
        standing = relaying(policy, self._current)
        if standing.problem is not None and policy.secure_transport is not None:
            log.warning("outside mail leaves %s; sensitive mail counts as not verified",
                        standing.describe())
        else:
            log.info("outside mail leaves %s", standing.describe())

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._main_cf)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)


def hops_of(value: str) -> tuple[str, ...]:
    """A relayhost this module cannot read still names a relay: kept as written, it
    matches no policy, so sensitive mail through it is never taken for verified."""
    try:
        return next_hops(value)
    except HopError:
        log.error("Postfix's relayhost %r is not a next hop Postwacht understands", value)
        return (value.strip().lower(),)
