"""The facts for one message, gathered within one deadline.

At end of message the milter needs, for each recipient domain the secure-transport rule
reads, what that domain offers (DANE, MTA-STS, and an NTA 7516 record when the policy
accepts one). The domains are looked up side by side
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
from typing import Any

from postwacht import defaults
from postwacht.core.classify import Classification
from postwacht.core.decide import Envelope, first_recipient_candidates, transport_domains
from postwacht.core.facts import Facts, Nta7516Facts, TransportFacts
from postwacht.core.policy import Policy
from postwacht.core.tables import TableAnswer
from postwacht.core.vocabulary import Accepted, Method
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
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self._today = today
        """The MTA's own day, by which an NTA 7516 record's validity is judged."""
        self._pool = pool
        self._known = known
        self._relayhost = relayhost
        self._control_lost = control_lost
        self.deadline = deadline
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="facts")
        self._lock = threading.RLock()  # a future already done calls back at once
        self._running: dict[tuple[object, ...], concurrent.futures.Future[Any]] = {}

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
        rules = policy.secure_transport
        nta = domains if rules is not None and Accepted.NTA7516 in rules.accept else set()
        transport, claims = self._gather(domains, nta, policy)
        facts = Facts(classification, transport, self._control_lost(),
                      visible=None if visible is None else tuple(visible),
                      relayhost=relayhost, nta7516=claims)
        candidates = first_recipient_candidates(envelope, policy, facts)
        if candidates and self._known is not None:
            facts = replace(facts, known=self._known(envelope.sender, candidates, policy))
        return facts

    def nta7516(self, domain: str, policy: Policy, day: dt.date) -> Nta7516Facts:
        """The domain's `v=NTA7516-1` claim on `day` (for `postwacht tls`)."""
        return self._pool.for_settings(policy.dns).nta7516(domain, day)

    def nta7516_tls(self, hop: str, policy: Policy) -> TableAnswer:
        """What the `nta7516` table answers for a hop of a route (for `postwacht tls`)."""
        return self._pool.for_settings(policy.dns).nta7516_tls(hop, policy)

    def transport(self, domains: set[str], policy: Policy) -> dict[str, TransportFacts]:
        """Discovery for every domain in `domains`, side by side, by one deadline."""
        return self._gather(domains, set(), policy)[0]

    def _gather(self, domains: set[str], nta: set[str], policy: Policy
                ) -> tuple[dict[str, TransportFacts], dict[str, Nta7516Facts]]:
        """Transport facts for `domains` and NTA 7516 claims for `nta`, all side by side,
        by one deadline; what has not answered by then is a failed lookup."""
        if not domains and not nta:
            return {}, {}
        until = time.monotonic() + self.deadline
        day = self._today()
        discovery = self._pool.for_settings(policy.dns)
        futures = {d: self._lookup((policy.dns, "transport", d), discovery.facts, d)
                   for d in sorted(domains)}
        claims = {d: self._lookup((policy.dns, "nta7516", d, day), discovery.nta7516, d, day)
                  for d in sorted(nta)}
        late = f"no answer within the message's deadline of {self.deadline:g} s"
        found: dict[str, TransportFacts] = {}
        for domain, future in futures.items():
            try:
                found[domain] = future.result(timeout=max(0.0, until - time.monotonic()))
            except concurrent.futures.TimeoutError:
                found[domain] = TransportFacts(domain, Method.FAILURE, late)
        said: dict[str, Nta7516Facts] = {}
        for domain, claim in claims.items():
            try:
                said[domain] = claim.result(timeout=max(0.0, until - time.monotonic()))
            except concurrent.futures.TimeoutError:
                said[domain] = Nta7516Facts(domain, None, False, late)
        return found, said

    def _lookup(self, key: tuple[object, ...], lookup: Callable[..., Any],
                *args: object) -> concurrent.futures.Future[Any]:
        """The lookup under way for `key` (kind, domain, DNS settings), or a new one."""
        with self._lock:
            future = self._running.get(key)
            if future is None:
                future = self._executor.submit(lookup, *args)
                self._running[key] = future
                future.add_done_callback(lambda _done: self._finished(key))
            return future

    def _finished(self, key: tuple[object, ...]) -> None:
        with self._lock:
            self._running.pop(key, None)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
