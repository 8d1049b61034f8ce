"""The composition root: builds the parts the daemon shares and hands them out.

`build()` turns the command line's paths into a running policy holder, a records store
(SQLite under the state directory, or PostgreSQL shared by several MTAs), discovery (one
DNS cache per resolver setting), the fact gatherer, the domain watch, the executor of
review requests and retention for this MTA, the notices to senders and reviewers, and
Prometheus telemetry, all wired to each other here and nowhere else. Adapters receive
the `App` (or the parts they need); no module keeps a global of its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from postwacht import defaults
from postwacht.config.compiler import load
from postwacht.config.holder import PolicyHolder, PolicyWatcher
from postwacht.config.policyfile import PolicyError
from postwacht.core.roles import Permission, allows
from postwacht.facts.discovery import DiscoveryPool
from postwacht.facts.domainwatch import DomainWatcher
from postwacht.facts.gather import FactGatherer
from postwacht.facts.relayhost import RelayhostUnknownError, RelayhostWatch, hops_of
from postwacht.notices.compose import Held, Standing
from postwacht.notices.notifier import Notifier, RecordsUnavailableError
from postwacht.notices.sendmail import SENDMAIL, Sendmail
from postwacht.records.correspondents import Correspondents
from postwacht.records.executor import ReleaseHelper, RequestExecutor
from postwacht.records.learner import CorrespondentLearner
from postwacht.records.locate import open_records
from postwacht.records.publish import ReportPublisher
from postwacht.records.queue import Postfix, PostfixError
from postwacht.records.review import held_by, sender_decides
from postwacht.records.secret import derive, load_secret, secret_path
from postwacht.records.sqlite import private_directory
from postwacht.records.store import (
    OPEN,
    POSTWACHT,
    AuditAction,
    QuarantineRecord,
    RecordsError,
    RecordStore,
    Status,
)
from postwacht.telemetry import NO_TELEMETRY, ErrorKind, Telemetry
from postwacht.telemetry.prometheus import PrometheusTelemetry

log = logging.getLogger("postwacht")


class StartError(Exception):
    """The daemon cannot start; the message (or `problems`) says why."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class RetiredAttempts:
    """Writes the attempts to mail a retired domain, for `postwacht report retired`,
    without letting a records store that is down slow the milter's RCPT replies: after a
    write fails, the attempts of the next `backoff` seconds are only counted (the
    recipient is refused all the same; the report misses them)."""

    def __init__(self, records: RecordStore, telemetry: Telemetry,
                 backoff: float = defaults.RETIRED_ATTEMPT_BACKOFF,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._records = records
        self._telemetry = telemetry
        self._backoff = backoff
        self._clock = clock
        self._failed_at: float | None = None

    def record(self, sender: str, client: str, domain: str, monitored: bool = False) -> None:
        failed_at = self._failed_at
        if failed_at is not None and self._clock() - failed_at < self._backoff:
            self._telemetry.error(ErrorKind.RECORDS)
            return
        try:
            self._records.record_retired_attempt(sender, client, domain, monitored)
        except RecordsError as exc:
            self._failed_at = self._clock()
            self._telemetry.error(ErrorKind.RECORDS)
            log.error("cannot record a retired-domain attempt: %s; attempts of the next "
                      "%g s are not recorded (the report misses them)", exc, self._backoff)
        else:
            self._failed_at = None


@dataclass(frozen=True)
class MtaSettings:
    """This MTA instance, as its records and review requests know it."""

    name: str
    """Names the MTA in every record: review requests on its messages come to it."""
    records: str | None = None
    """The records URL (postgresql://...); None: SQLite under the state directory."""
    postfix_config: str | None = None
    """The configuration directory of the Postfix this daemon filters for (None: Postfix's
    default): its hold queue is the one the records are kept true to."""
    requests_interval: float = defaults.REQUESTS_INTERVAL
    sync_interval: float = defaults.SYNC_INTERVAL
    sendmail: str = SENDMAIL
    """The sendmail(1) notices are handed to (with `-C postfix_config` when set)."""


def held_of(record: QuarantineRecord) -> Held:
    """What notices may know of a record: never more than the record itself holds."""
    standing = (Standing.AWAITING_APPROVAL if record.awaiting_approval
                else Standing.REQUESTED if record.status is Status.REQUESTED
                else Standing.HELD)
    # Links only for a hold its sender alone may end: else every link would end on a
    # page saying a privacy officer decides, and the notice would not say why.
    confirm = tuple(v.address for v in held_by(record)) if sender_decides(record) else ()
    return Held(record.record_id, record.sender, record.rule, record.reason, record.domains,
                record.held_at, standing, record.key, confirm)


class NoticeRecords:
    """The records store as notices use it (`notices.notifier.NoticeRecords`)."""

    def __init__(self, records: RecordStore) -> None:
        self._records = records

    def waiting(self) -> list[Held]:
        with self._unavailable():
            return [held_of(r) for r in self._records.quarantine_records(OPEN)]

    def reviewers(self) -> list[tuple[str, str]]:
        with self._unavailable():
            users = self._records.users()
        return [(u.name, u.email) for u in users
                if u.email and allows(u.role, Permission.ACT)]

    def claim(self, what: str) -> bool:
        with self._unavailable():
            return self._records.claim(what)

    def notified(self, record_id: int, detail: str) -> None:
        with self._unavailable():
            self._records.note(POSTWACHT, AuditAction.SENDER_NOTIFIED, record_id, detail)

    @staticmethod
    @contextlib.contextmanager
    def _unavailable() -> Iterator[None]:
        try:
            yield
        except RecordsError as exc:
            raise RecordsUnavailableError(str(exc)) from None


class Notices:
    """What the milter calls after a hold: the notifier, handed the record."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def held(self, record: QuarantineRecord) -> None:
        """Never waits: the notice is queued (or dropped when the queue is full). Never
        raises either: the message is held and recorded already, and a notice is not worth
        a tempfail that would hold it a second time."""
        try:
            self.notifier.held(held_of(record))
        except Exception:  # logged with its traceback below
            log.exception("record #%d: no notice queued", record.record_id)


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
    mta: str
    executor: RequestExecutor
    retired_attempts: RetiredAttempts
    notices: Notices
    reports: ReportPublisher
    learner: CorrespondentLearner
    relayhost: RelayhostWatch

    def start(self) -> None:
        """Start the background work: the policy file watch, the domain watch, the
        review requests and retention of this MTA, and the notices."""
        self.policy_watch.start()
        self.domain_watch.start()
        self.executor.start()
        self.notices.notifier.start()
        self.reports.start()
        self.learner.start()

    def stop(self) -> None:
        self.learner.stop()
        self.reports.stop()
        self.notices.notifier.stop()
        self.executor.stop()
        self.domain_watch.stop()
        self.policy_watch.stop()
        self.facts.close()
        self.records.close()


def build(policy_path: str, state_dir: str, check_interval: float, mta: MtaSettings,
          helper: ReleaseHelper) -> App:
    """Everything `serve` needs, or a `StartError` naming what is wrong. `helper` carries
    out review requests as root (the release helper's client)."""
    try:
        policy = load(policy_path)
    except PolicyError as exc:
        raise StartError(f"{policy_path} is invalid",
                         tuple(str(p) for p in exc.problems)) from None
    _state_directory(Path(state_dir))
    try:
        records = open_records(mta.records, state_dir, create=True, mta=mta.name)
    except RecordsError as exc:
        raise StartError(str(exc)) from None
    try:
        records.claim_mta()
        secret = load_secret(state_dir, create=True)
        correspondents = Correspondents(records, derive(secret, "correspondents"),
                                        key_file=secret_path(state_dir))
    except RecordsError as exc:
        records.close()
        raise StartError(str(exc)) from None
    key_problem = ""
    try:
        correspondents.check_key()
    except RecordsError as exc:
        # With the guard on, every known correspondent would look new: refuse. Without
        # it, say so, and let the filter run; a guard a reload turns on asks nobody and
        # writes nothing under this key (every first recipient is held as new).
        if policy.first_recipient is not None:
            records.close()
            raise StartError(str(exc)) from None
        key_problem = str(exc)
        log.error("%s; until then, a first_recipient rule would find nobody known", exc)
    telemetry = PrometheusTelemetry()
    telemetry.watch_quarantine(lambda: _held_summary(records, mta.name))
    holder = PolicyHolder(policy_path, policy, telemetry)
    discovery = DiscoveryPool(telemetry)
    domain_watch = DomainWatcher(lambda: holder.current, discovery, telemetry)
    holder.on_change(lambda _policy: domain_watch.wake())  # a new policy: audit it now
    learner = CorrespondentLearner(correspondents, lambda: holder.current, telemetry,
                                   key_problem=key_problem)
    postfix = Postfix(mta.postfix_config)
    relayhost = RelayhostWatch(lambda: _relayhost(postfix), _main_cf(mta.postfix_config),
                               lambda: holder.current, telemetry)
    relayhost.refresh()
    holder.on_change(lambda _policy: relayhost.announce())  # what the relay means changed
    facts = FactGatherer(discovery, lambda: domain_watch.control_lost, known=learner.known,
                         relayhost=lambda: relayhost.current)
    executor = RequestExecutor(
        records, mta.name, helper, postfix,
        lambda: holder.current.quarantine, telemetry, mta.requests_interval,
        mta.sync_interval)
    notifier = Notifier(lambda: holder.current, NoticeRecords(records),
                        Sendmail(mta.sendmail, mta.postfix_config), telemetry=telemetry,
                        link_key=derive(secret, "links"))
    return App(telemetry, holder, records, discovery, facts, domain_watch,
               PolicyWatcher(holder, check_interval, relayhost.refresh), Path(state_dir),
               mta.name, executor, RetiredAttempts(records, telemetry), Notices(notifier),
               ReportPublisher(records, lambda: holder.current, lambda: domain_watch.last),
               learner, relayhost)


def _main_cf(config_dir: str | None) -> Path:
    return Path(config_dir or defaults.POSTFIX_CONFIG) / "main.cf"


def _relayhost(postfix: Postfix) -> str:
    try:
        return postfix.setting("relayhost")
    except PostfixError as exc:
        raise RelayhostUnknownError(str(exc)) from None


def relayhost_of(config_dir: str | None) -> tuple[tuple[str, ...] | None, str]:
    """Postfix's relayhost for a one-shot command (`explain`, `check`), or None and why
    Postfix could not be asked (the policy's delivery section then stands)."""
    try:
        return hops_of(_relayhost(Postfix(config_dir))), ""
    except RelayhostUnknownError as exc:
        return None, str(exc)


def _state_directory(path: Path) -> None:
    """The control socket (and the SQLite records, and by default the release helper's
    socket) live here: made 0750 when missing, whatever the records backend."""
    try:
        private_directory(path, create=True)
    except OSError as exc:
        raise StartError(f"state directory {path}: cannot make it: "
                         f"{exc.strerror or exc}") from None


def _held_summary(records: RecordStore, mta: str) -> tuple[int, dt.datetime | None] | None:
    """This MTA's open records only: each MTA's gauges add up to the whole quarantine."""
    try:
        return records.held_summary(mta)
    except RecordsError as exc:
        log.error("quarantine metrics: %s", exc)
        return None


def command_facts(relayhost: tuple[str, ...] | None = None) -> FactGatherer:
    """Discovery for a one-shot command (`explain`, `tls`): nothing is exported; mail
    taken to leave through `relayhost` (None: as the policy's delivery section says)."""
    return FactGatherer(DiscoveryPool(NO_TELEMETRY), relayhost=lambda: relayhost)
