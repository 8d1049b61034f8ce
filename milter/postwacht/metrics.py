"""Prometheus metrics. Labels take bounded values only: never an address or a subject."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from postwacht.state import StateStore

MESSAGES = Counter(
    "postwacht_messages_total", "Outbound messages decided, by message action", ["action"]
)
RECIPIENTS = Counter(
    "postwacht_recipients_total", "Recipients decided, by action and rule", ["action", "rule"]
)
POLICY_RELOADS = Counter(
    "postwacht_policy_reloads_total", "Policy reload attempts, by result", ["result"]
)
POLICY_INFO = Gauge(
    "postwacht_policy_info", "The loaded policy (value 1), by checksum", ["checksum"]
)
POLICY_LOADED = Gauge(
    "postwacht_policy_loaded_timestamp_seconds", "When the running policy was loaded"
)
SOCKETMAP = Counter(
    "postwacht_socketmap_lookups_total", "Socketmap lookups, by table and answer",
    ["table", "answer"],
)
DNS = Counter("postwacht_dns_lookups_total", "DNS lookups, by result", ["result"])
DNS_SECONDS = Histogram(
    "postwacht_dns_lookup_seconds", "DNS lookup latency",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CACHE = Counter("postwacht_dns_cache_total", "DNS cache lookups, by result", ["result"])
RETIRED_ATTEMPTS = Counter(
    "postwacht_retired_attempts_total",
    "Attempts to mail a retired domain, by retired domain (a bounded list from the policy)",
    ["domain"],
)
DOMAIN_EXPIRY = Gauge(
    "postwacht_domain_expiry_timestamp_seconds",
    "When the registration of a watched domain expires (RDAP)", ["domain"],
)
DOMAIN_CONTROL = Gauge(
    "postwacht_domain_control_ok",
    "Domain watch check: 1 ok, 0 failed (control lost or a new holder), -1 unknown",
    ["domain", "check"],
)
DOMAIN_AUDIT = Gauge(
    "postwacht_domain_audit_timestamp_seconds", "When the domain watch last ran"
)
ERRORS = Counter("postwacht_errors_total", "Errors, by kind", ["kind"])
CALLBACK_SECONDS = Histogram(
    "postwacht_milter_callback_seconds",
    "Time spent in milter callbacks, by stage",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def show_policy(checksum: str, loaded_at: float) -> None:
    """Point the info metric at the running policy only."""
    POLICY_INFO.clear()
    POLICY_INFO.labels(checksum=checksum[:12]).set(1)
    POLICY_LOADED.set(loaded_at)


class QuarantineCollector(Collector):
    """Held messages and the age of the oldest, read from the records at each scrape."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from postwacht.state import StateError  # noqa: PLC0415 - state imports metrics' users

        try:
            count, oldest = self._store.held_summary()
        except StateError:
            ERRORS.labels(kind="state-store").inc()
            return
        age = (dt.datetime.now(dt.UTC) - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("postwacht_quarantine_messages",
                                "Messages held for review (Postwacht's records)", value=count)
        yield GaugeMetricFamily("postwacht_quarantine_oldest_age_seconds",
                                "Age of the oldest held message (0 when none)", value=age)
