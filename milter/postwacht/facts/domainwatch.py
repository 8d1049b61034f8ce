"""Domain watch: is every owned domain still ours, and has a retired one found a new holder?

The 2019 leak began when a retired domain lapsed and strangers registered it. For owned
domains the watch checks the delegation and MX against what the policy expects and when
the registration expires (RDAP); for retired domains it looks for signs of a new holder:
name servers or MX hosts outside the organisation, or a registration dated after the
domain was retired. A check that cannot be made is "unknown", never "fine".
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping

from postwacht.core.facts import CheckResult, DomainReport, Registration, control_lost
from postwacht.core.policy import OwnedDomain, Policy, RetiredDomain
from postwacht.core.vocabulary import CheckName
from postwacht.facts.discovery import DiscoveryPool
from postwacht.facts.dnscache import DnsCache, DnsLookupError
from postwacht.facts.rdap import RdapClient, RdapError
from postwacht.telemetry import ErrorKind, Telemetry

log = logging.getLogger("postwacht.domains")


def _registration(ok: bool | None, detail: str) -> CheckResult:
    return CheckResult(CheckName.REGISTRATION, ok, detail)


class DomainAuditor:
    def __init__(self, policy: Policy, dns: DnsCache, rdap: RdapClient | None = None) -> None:
        self.policy = policy
        self.dns = dns
        self.settings = policy.domain_watch
        self.rdap = rdap or RdapClient(self.settings)
        owned = policy.owned_domains()
        self._owned = owned
        self._our_nameservers = frozenset().union(*(o.nameservers for o in owned))
        self._our_mx = frozenset().union(*(o.mx for o in owned))

    def audit(self, now: dt.datetime | None = None) -> list[DomainReport]:
        now = now or dt.datetime.now(dt.UTC)
        reports = [self._owned_report(o, now) for o in self._owned]
        reports += [self._retired_report(r) for r in self.policy.retired]
        return reports

    def _owned_report(self, owned: OwnedDomain, now: dt.datetime) -> DomainReport:
        checks = []
        if owned.nameservers:
            checks.append(self._expect(owned.domain, "NS", CheckName.DELEGATION,
                                       owned.nameservers))
        if owned.mx:
            checks.append(self._expect(owned.domain, "MX", CheckName.MX, owned.mx))
        registration, expires, soon = self._registration_owned(owned.domain, now)
        checks.append(registration)
        return DomainReport(owned.domain, "owned", tuple(checks), expires, soon)

    def _host_check(self, domain: str, rdtype: str, name: CheckName,
                    judge: Callable[[frozenset[str] | None], CheckResult]) -> CheckResult:
        """Look up NS or MX hosts and let `judge` rule; a failed lookup is unknown."""
        try:
            found = self._hosts(domain, rdtype)
        except DnsLookupError as exc:
            return CheckResult(name, None, f"unknown: {exc}")
        return judge(found)

    def _expect(self, domain: str, rdtype: str, name: CheckName,
                expected: frozenset[str]) -> CheckResult:
        def judge(found: frozenset[str] | None) -> CheckResult:
            if found is None:
                return CheckResult(name, False, f"{domain} does not exist in DNS (lapsed?)")
            if found == expected:
                return CheckResult(name, True, f"{rdtype} {', '.join(sorted(found))} as expected")
            return CheckResult(name, False, f"{rdtype} is {', '.join(sorted(found)) or 'empty'}; "
                         f"expected {', '.join(sorted(expected))}")

        return self._host_check(domain, rdtype, name, judge)

    def _hosts(self, domain: str, rdtype: str) -> frozenset[str] | None:
        """NS or MX host names; None for NXDOMAIN."""
        answer = self.dns.lookup(domain, rdtype)
        if answer.nxdomain:
            return None
        hosts = (r.split()[-1] for r in answer.records)
        return frozenset(h.rstrip(".").lower() for h in hosts if h != ".")

    def _registration_owned(
        self, domain: str, now: dt.datetime
    ) -> tuple[CheckResult, dt.datetime | None, bool]:
        try:
            reg = self.rdap.lookup(domain)
        except RdapError as exc:
            return _registration(None, f"unknown: {exc}"), None, False
        if not reg.registered:
            return _registration(False, f"{domain} is not registered (lapsed)"), None, False
        if reg.expires is None:
            return _registration(None, "unknown: RDAP gives no expiry"), None, False
        days = (reg.expires - now).total_seconds() / 86400
        if days < 0:
            return _registration(False, f"expired on {reg.expires:%Y-%m-%d}"), \
                reg.expires, True
        soon = days < self.settings.expiry_warning_days
        note = f"lapse approaching: expires {reg.expires:%Y-%m-%d}, in {days:.0f} days" \
            if soon else f"registered until {reg.expires:%Y-%m-%d}"
        return _registration(True, note), reg.expires, soon

    def _retired_report(self, retired: RetiredDomain) -> DomainReport:
        domain = retired.domain
        checks = [
            self._foreign(domain, "NS", CheckName.DELEGATION, self._our_nameservers,
                          "delegated to name servers outside the organisation"),
            self._foreign(domain, "MX", CheckName.MX, self._our_mx,
                          "accepts mail at hosts outside the organisation"),
        ]
        try:
            reg = self.rdap.lookup(domain)
        except RdapError as exc:
            checks.append(_registration(None, f"unknown: {exc}"))
        else:
            checks.append(self._new_holder(retired, reg))
        return DomainReport(domain, "retired", tuple(checks))

    def _foreign(self, domain: str, rdtype: str, name: CheckName, ours: frozenset[str],
                 problem: str) -> CheckResult:
        def judge(found: frozenset[str] | None) -> CheckResult:
            if found is None:
                return CheckResult(name, True, f"{domain} does not exist in DNS")
            if not found:
                return CheckResult(name, True, f"no {rdtype} records")
            foreign = sorted(found - ours)
            if foreign:
                return CheckResult(name, False, f"{problem}: {', '.join(foreign)}")
            return CheckResult(name, True, f"{rdtype} only at the organisation's hosts")

        return self._host_check(domain, rdtype, name, judge)

    @staticmethod
    def _new_holder(retired: RetiredDomain, reg: Registration) -> CheckResult:
        if not reg.registered:
            return _registration(True, "not registered: nobody holds it")
        since = retired.since
        if reg.created is not None and since is not None and reg.created.date() > since:
            return _registration(False, f"registered again on {reg.created:%Y-%m-%d}, "
                         f"after it was retired on {since.isoformat()}: a new holder")
        return _registration(True, "registration predates the retirement")


class DomainWatcher(threading.Thread):
    """Runs the audit in the daemon every `domain_watch.interval` seconds, and at once
    when `wake()` says the policy changed."""

    def __init__(self, current: Callable[[], Policy], pool: DiscoveryPool,
                 telemetry: Telemetry) -> None:
        super().__init__(name="domain-watch", daemon=True)
        self._current = current
        self._pool = pool
        self._telemetry = telemetry
        self._stopping = False
        self._wake = threading.Event()
        self.control_lost: Mapping[str, str] = {}
        """Owned domains whose last audit failed a check, with the failed checks."""
        self.last: tuple[dt.datetime, tuple[DomainReport, ...]] | None = None
        """When the last audit ran, and what it found (for review)."""

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            policy = self._current()
            if policy.domain_watch.enabled:
                self.run_once(policy)
            else:
                self.control_lost = {}
            self._wake.wait(policy.domain_watch.interval)

    def run_once(self, policy: Policy) -> list[DomainReport]:
        try:
            dns = self._pool.for_settings(policy.dns).dns
            reports = DomainAuditor(policy, dns).audit()
        except Exception:  # a bad answer must not end the watch: the next run may do
            self._telemetry.error(ErrorKind.DOMAIN_WATCH)
            log.exception("domain watch could not run; keeping the last results")
            return []
        self._telemetry.domain_audit(reports, time.time())
        self.control_lost = control_lost(reports)
        self.last = (dt.datetime.now(dt.UTC), tuple(reports))
        for report in reports:
            noted = [c for c in report.checks if c.ok is not True
                     or (report.expiring_soon and c.name is CheckName.REGISTRATION)]
            if noted:
                log.warning("domain watch: %s %s: %s", report.kind, report.domain,
                            "; ".join(f"{c.name}: {c.detail}" for c in noted))
        return reports

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
