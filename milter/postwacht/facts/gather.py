"""The facts for one message, gathered within one deadline.

At end of message the milter needs, for each recipient domain the secure-transport rule
reads, what that domain offers (DANE, MTA-STS). The domains are looked up side by side
on a bounded pool of threads, and whatever has not answered when the message's deadline
passes counts as a failed lookup: the rule then applies `on_dns_failure` (tempfail by
default), and Postfix never waits past its own `milter_content_timeout`.

A lookup already under way for a domain is shared by every message that needs it, so a
domain whose servers hang ties up one thread, not one per message; other domains keep
the rest of the pool.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from postwacht import defaults
from postwacht.core.classify import Classification
from postwacht.core.decide import Envelope, first_recipient_candidates, transport_domains
from postwacht.core.facts import Facts, Nta7516Facts, TransportFacts
from postwacht.core.policy import Policy
from postwacht.core.vocabulary import Method
from postwacht.facts.discovery import DiscoveryPool

NoControlLost: Callable[[], Mapping[str, str]] = dict
Known = Callable[[str, Sequence[str], Policy], frozenset[str]]
"""Which of the recipients are known correspondents of the sender, under a policy."""


class FactGatherer:
    """Gathers `Facts` for the milter and `explain`, the same way for both."""

    def __init__(
        self,
        pool: DiscoveryPool,
        control_lost: Callable[[], Mapping[str, str]] = NoControlLost,
        deadline: float = defaults.FACTS_DEADLINE,
        workers: int = defaults.FACTS_WORKERS,
        known: Known | None = None,
        relayhost: Callable[[], tuple[str, ...] | None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._known = known
        self._relayhost = relayhost
        self._control_lost = control_lost
        self.deadline = deadline
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="facts")
        self._lock = threading.RLock()  # a future already done calls back at once
        self._running: dict[tuple[object, str], concurrent.futures.Future[TransportFacts]] = {}

    def before_content(self) -> Facts:
        """What RCPT can know: the domain watch's findings."""
        return Facts(control_lost=self._control_lost())

    def for_message(
        self, envelope: Envelope, policy: Policy, classification: Classification | None,
        visible: Sequence[str] | None = (),
    ) -> Facts:
        """Everything the end of message can know. Only sensitive mail needs transport
        facts and known correspondents: for other mail they could not change the verdict.
        `visible`: the addresses in the message's To and Cc."""
        domains: set[str] = set()
        relayhost = self._relayhost()  # read once: the domains and the verdict agree
        if classification is not None and classification.sensitive:
            domains = transport_domains(envelope, policy, relayhost)
        facts = Facts(classification, self.transport(domains, policy), self._control_lost(),
                      visible=None if visible is None else tuple(visible),
                      relayhost=relayhost)
        candidates = first_recipient_candidates(envelope, policy, facts)
        if candidates and self._known is not None:
            facts = replace(facts, known=self._known(envelope.sender, candidates, policy))
        return facts

    def nta7516(self, domain: str, policy: Policy, day: dt.date) -> Nta7516Facts:
        """The domain's `v=NTA7516-1` claim on `day` (for `postwacht tls`)."""
        return self._pool.for_settings(policy.dns).nta7516(domain, day)

    def transport(self, domains: set[str], policy: Policy) -> dict[str, TransportFacts]:
        """Discovery for every domain in `domains`, side by side, by one deadline."""
        if not domains:
            return {}
        until = time.monotonic() + self.deadline
        futures = {d: self._lookup(policy, d) for d in sorted(domains)}
        found: dict[str, TransportFacts] = {}
        for domain, future in futures.items():
            try:
                found[domain] = future.result(timeout=max(0.0, until - time.monotonic()))
            except concurrent.futures.TimeoutError:
                found[domain] = TransportFacts(
                    domain, Method.FAILURE,
                    f"no answer within the message's deadline of {self.deadline:g} s")
        return found

    def _lookup(self, policy: Policy, domain: str) -> concurrent.futures.Future[TransportFacts]:
        """The lookup under way for `domain` (with these DNS settings), or a new one."""
        key = (policy.dns, domain)
        with self._lock:
            future = self._running.get(key)
            if future is None:
                discovery = self._pool.for_settings(policy.dns)
                future = self._executor.submit(discovery.facts, domain)
                self._running[key] = future
                future.add_done_callback(lambda _done: self._finished(key))
            return future

    def _finished(self, key: tuple[object, str]) -> None:
        with self._lock:
            self._running.pop(key, None)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
