"""The composition root: builds the parts the daemon shares and hands them out.

`build()` turns the command line's paths into a running policy holder, a records store,
discovery (one DNS cache per resolver setting), the fact gatherer, the domain watch and
Prometheus telemetry, all wired to each other here and nowhere else. Adapters receive the
`App` (or the parts they need); no module keeps a global of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from postwacht.config.compiler import load
from postwacht.config.holder import PolicyHolder, PolicyWatcher
from postwacht.config.policyfile import PolicyError
from postwacht.facts.discovery import DiscoveryPool
from postwacht.facts.domainwatch import DomainWatcher
from postwacht.facts.gather import FactGatherer
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import RecordsError, RecordStore
from postwacht.telemetry import NO_TELEMETRY
from postwacht.telemetry.prometheus import PrometheusTelemetry

log = logging.getLogger("postwacht")


class StartError(Exception):
    """The daemon cannot start; the message (or `problems`) says why."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass
class App:
    telemetry: PrometheusTelemetry
    holder: PolicyHolder
    records: RecordStore
    discovery: DiscoveryPool
    facts: FactGatherer
    domain_watch: DomainWatcher
    policy_watch: PolicyWatcher
    state_dir: Path

    def start(self) -> None:
        """Start the background work: the policy file watch and the domain watch."""
        self.policy_watch.start()
        self.domain_watch.start()

    def stop(self) -> None:
        self.domain_watch.stop()
        self.policy_watch.stop()
        self.facts.close()
        self.records.close()


def build(policy_path: str, state_dir: str, check_interval: float) -> App:
    """Everything `serve` needs, or a `StartError` naming what is wrong."""
    try:
        policy = load(policy_path)
    except PolicyError as exc:
        raise StartError(f"{policy_path} is invalid",
                         tuple(str(p) for p in exc.problems)) from None
    try:
        records = SqliteRecords(state_dir)
    except RecordsError as exc:
        raise StartError(str(exc)) from None
    telemetry = PrometheusTelemetry()
    telemetry.watch_quarantine(lambda: _held_summary(records))
    holder = PolicyHolder(policy_path, policy, telemetry)
    discovery = DiscoveryPool(telemetry)
    domain_watch = DomainWatcher(lambda: holder.current, discovery, telemetry)
    holder.on_change(lambda _policy: domain_watch.wake())  # a new policy: audit it now
    facts = FactGatherer(discovery, lambda: domain_watch.control_lost)
    return App(telemetry, holder, records, discovery, facts, domain_watch,
               PolicyWatcher(holder, check_interval), Path(state_dir))


def _held_summary(records: RecordStore) -> tuple[int, dt.datetime | None] | None:
    try:
        return records.held_summary()
    except RecordsError as exc:
        log.error("quarantine metrics: %s", exc)
        return None


def command_facts() -> FactGatherer:
    """Discovery for a one-shot command (`explain`, `tls`): nothing is exported."""
    return FactGatherer(DiscoveryPool(NO_TELEMETRY))
