"""The daemon's reports for review: its running policy and its domain watch's findings.

The web review may read neither the policy file nor the DNS, so every daemon writes a
summary of both to the records store (one row per MTA and kind, replaced each time):
the policy when its checksum changes, the domain watch after each of its rounds. A
store that cannot be written is logged and tried again next round; nothing here stops
the daemon.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable

from postwacht import defaults
from postwacht.core.facts import DomainReport
from postwacht.core.policy import Policy
from postwacht.core.summary import domains_report, policy_summary
from postwacht.records.store import RecordsError, RecordStore

log = logging.getLogger("postwacht.review")

POLICY = "policy"
DOMAINS = "domains"

LastAudit = Callable[[], "tuple[dt.datetime, tuple[DomainReport, ...]] | None"]


class ReportPublisher(threading.Thread):
    def __init__(self, store: RecordStore, current: Callable[[], Policy],
                 last_audit: LastAudit, interval: float = defaults.REPORTS_INTERVAL) -> None:
        super().__init__(name="report-publisher", daemon=True)
        self._store = store
        self._current = current
        self._last_audit = last_audit
        self._interval = interval
        self._stopping = threading.Event()
        self._policy: tuple[str, dt.datetime] | None = None
        """The checksum last seen, and when it was first seen running."""
        self._published: set[tuple[str, object]] = set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.publish_once()
            except Exception:  # stale reports are better than none: go on next round
                log.exception("the reports for review could not be made")
            self._stopping.wait(self._interval)

    def publish_once(self) -> None:
        policy = self._current()
        if self._policy is None or self._policy[0] != policy.checksum:
            self._policy = (policy.checksum, dt.datetime.now(dt.UTC))
        loaded_at = self._policy[1]
        self._publish(POLICY, policy.checksum, lambda: policy_summary(policy, loaded_at))
        audit = self._last_audit()
        if audit is not None:
            self._publish(DOMAINS, audit[0], lambda: domains_report(audit[1], audit[0]))

    def _publish(self, kind: str, version: object,
                 body: Callable[[], dict[str, object]]) -> None:
        if (kind, version) in self._published:
            return
        try:
            self._store.publish(kind, json.dumps(body(), sort_keys=True))
        except RecordsError as exc:
            log.warning("cannot publish the %s report for review (tried again in %g s): %s",
                        kind, self._interval, exc)
            return
        self._published = {k for k in self._published if k[0] != kind} | {(kind, version)}

    def stop(self) -> None:
        self._stopping.set()
