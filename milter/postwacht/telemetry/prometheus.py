"""Prometheus metrics. Labels take bounded values only: never an address or a subject.

Every metric lives in the registry of one `PrometheusTelemetry`, made by the composition
root; nothing is registered at import time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from postwacht.core.facts import DomainReport
from postwacht.core.vocabulary import Action, Rule
from postwacht.telemetry import DnsResult, ErrorKind, ReloadResult, RequestOutcome, Stage

HeldSummary = Callable[[], tuple[int, dt.datetime | None] | None]
"""How many messages are held on this MTA, and since when the oldest; None when it cannot
tell."""


class PrometheusTelemetry:
    """The `Telemetry` interface, exported to Prometheus from `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Label lookups bound once per label set: every message counts several times,
        # and `labels()` validates and hashes its arguments on every call.
        self._bound: dict[tuple[object, ...], Any] = {}
        if registry is None:
            registry = CollectorRegistry()
            for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(standard)  # process_* and python_*, as before
        self.registry = registry
        r = self.registry
        self._messages = Counter(
            "postwacht_messages_total", "Outbound messages decided, by message action",
            ["action"], registry=r)
        self._recipients = Counter(
            "postwacht_recipients_total", "Recipients decided, by action and rule",
            ["action", "rule"], registry=r)
        self._monitored = Counter(
            "postwacht_monitored_total",
            "Decisions of rules in monitor mode (made and logged, not carried out), by the "
            "action enforcing them would take, and rule", ["action", "rule"], registry=r)
        self._reloads = Counter(
            "postwacht_policy_reloads_total", "Policy reload attempts, by result", ["result"],
            registry=r)
        self._policy_info = Gauge(
            "postwacht_policy_info", "The loaded policy (value 1), by checksum", ["checksum"],
            registry=r)
        self._policy_loaded = Gauge(
            "postwacht_policy_loaded_timestamp_seconds", "When the running policy was loaded",
            registry=r)
        self._policy_checked = Gauge(
            "postwacht_policy_last_check_timestamp_seconds",
            "When the policy watcher last finished a look at the policy file (a value that "
            "stops moving means the watcher is stuck)", registry=r)
        self._socketmap = Counter(
            "postwacht_socketmap_lookups_total", "Socketmap lookups, by table and answer",
            ["table", "answer"], registry=r)
        self._dns = Counter("postwacht_dns_lookups_total", "DNS lookups, by result",
                            ["result"], registry=r)
        self._dns_seconds = Histogram(
            "postwacht_dns_lookup_seconds", "DNS lookup latency",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=r)
        self._cache = Counter("postwacht_dns_cache_total", "DNS cache lookups, by result",
                              ["result"], registry=r)
        self._retired = Counter(
            "postwacht_retired_attempts_total",
            "Attempts to mail a retired domain, by retired domain (a bounded list from the "
            "policy)", ["domain"], registry=r)
        self._expiry = Gauge(
            "postwacht_domain_expiry_timestamp_seconds",
            "When the registration of a watched domain expires (RDAP)", ["domain"], registry=r)
        self._control = Gauge(
            "postwacht_domain_control_ok",
            "Domain watch check: 1 ok, 0 failed (control lost or a new holder), -1 unknown",
            ["domain", "check"], registry=r)
        self._audit = Gauge("postwacht_domain_audit_timestamp_seconds",
                            "When the domain watch last ran", registry=r)
        self._errors = Counter("postwacht_errors_total", "Errors, by kind", ["kind"], registry=r)
        self._requests = Counter(
            "postwacht_review_requests_total",
            "Review requests carried out on this MTA by the release helper, by action "
            "(release, delete, expire) and outcome (done, failed)", ["action", "outcome"],
            registry=r)
        self._gone = Counter(
            "postwacht_quarantine_gone_total",
            "Records closed because their message left the hold queue outside Postwacht",
            registry=r)
        self._synced = Gauge(
            "postwacht_records_sync_timestamp_seconds",
            "When the daemon last finished a round of retention and of closing the records "
            "of vanished messages (a value that stops moving means that work is stuck)",
            registry=r)
        self._unrecorded = Gauge(
            "postwacht_hold_unrecorded_messages",
            "Messages in this MTA's hold queue that no open Postwacht record describes "
            "(review cannot see them: held by hand, or before a records store was lost)",
            registry=r)
        self._relay = Gauge(
            "postwacht_relay_unverified",
            "1 while Postfix hands outside mail to a relay the policy does not name or "
            "trust (sensitive mail to outside domains is then never verified)",
            registry=r)
        self._callbacks = Histogram(
            "postwacht_milter_callback_seconds", "Time spent in milter callbacks, by stage",
            # Edges at 0.25 ms and 2 ms: an envelope callback takes a fraction of a
            # millisecond, and its p99 is meant to stay under 2 ms (bench/steady_state.py).
            ["stage"], buckets=(0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25, 1.0),
            registry=r)

    def watch_quarantine(self, held: HeldSummary) -> None:
        """Export the held messages and the oldest one's age, read at each scrape."""
        self.registry.register(QuarantineCollector(held, self))

    def _child(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once per label set (the sets are bounded:
        enums only)."""
        key = (id(metric), *values)
        child = self._bound.get(key)
        if child is None:
            child = self._bound[key] = metric.labels(*values)
        return child

    def recipient(self, action: Action, rule: Rule) -> None:
        self._child(self._recipients, action.value, rule.value).inc()

    def monitored(self, action: Action, rule: Rule) -> None:
        self._child(self._monitored, action.value, rule.value).inc()

    def message(self, action: Action) -> None:
        self._child(self._messages, action.value).inc()

    def retired_attempt(self, domain: str) -> None:
        self._retired.labels(domain=domain).inc()

    def callback(self, stage: Stage, seconds: float) -> None:
        self._child(self._callbacks, stage.value).observe(seconds)

    def socketmap(self, table: str, answer: str) -> None:
        self._socketmap.labels(table=table, answer=answer).inc()

    def dns_lookup(self, result: DnsResult, seconds: float) -> None:
        self._dns.labels(result=result.value).inc()
        self._dns_seconds.observe(seconds)

    def dns_cache(self, hit: bool) -> None:
        self._cache.labels(result="hit" if hit else "miss").inc()

    def error(self, kind: ErrorKind) -> None:
        self._errors.labels(kind=kind.value).inc()

    def policy_loaded(self, checksum: str, at: float) -> None:
        self._policy_info.clear()  # only the running policy is shown
        self._policy_info.labels(checksum=checksum[:12]).set(1)
        self._policy_loaded.set(at)

    def policy_reload(self, result: ReloadResult) -> None:
        self._reloads.labels(result=result.value).inc()

    def policy_checked(self, at: float) -> None:
        self._policy_checked.set(at)

    def review_request(self, action: str, outcome: RequestOutcome) -> None:
        self._requests.labels(action=action, outcome=outcome.value).inc()

    def record_gone(self) -> None:
        self._gone.inc()

    def records_synced(self, at: float) -> None:
        self._synced.set(at)

    def held_unrecorded(self, count: int) -> None:
        self._unrecorded.set(count)

    def relay_unverified(self, unverified: bool) -> None:
        self._relay.set(1 if unverified else 0)

    def domain_audit(self, reports: Sequence[DomainReport], at: float) -> None:
        """The domain list is bounded: it comes from the policy."""
        self._control.clear()
        self._expiry.clear()
        for report in reports:
            for check in report.checks:
                value = -1 if check.ok is None else int(check.ok)
                self._control.labels(domain=report.domain, check=check.name.value).set(value)
            if report.expires is not None:
                self._expiry.labels(domain=report.domain).set(report.expires.timestamp())
        self._audit.set(at)


class QuarantineCollector(Collector):
    """Held messages and the age of the oldest, read from the records at each scrape."""

    def __init__(self, held: HeldSummary, telemetry: PrometheusTelemetry) -> None:
        self._held = held
        self._telemetry = telemetry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        summary = self._held()
        yield GaugeMetricFamily(
            "postwacht_records_ok", "1 when the records store answers and is intact; 0 when "
            "it cannot be read, was deleted, replaced or damaged (holds then tempfail)",
            value=0 if summary is None else 1)
        if summary is None:  # the gauges go missing rather than show a false zero
            self._telemetry.error(ErrorKind.RECORDS)
            return
        count, oldest = summary
        age = (dt.datetime.now(dt.UTC) - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("postwacht_quarantine_messages",
                                "Messages held for review on this MTA (Postwacht's open "
                                "records: held, or a release or delete under way)",
                                value=count)
        yield GaugeMetricFamily("postwacht_quarantine_oldest_age_seconds",
                                "Age of the oldest held message (0 when none)", value=age)


class MetricsServer:
    """The `/metrics` HTTP listener, serving one registry from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
