"""Domain watch: is every owned domain still ours, and has a retired one found a new holder?

The 2019 leak began when a retired domain lapsed and strangers registered it. For owned
domains the watch checks the delegation and MX against what the policy expects and when
the registration expires (RDAP); for retired domains it looks for signs of a new holder:
name servers or MX hosts outside the organisation, or a registration dated after the
domain was retired. A check that cannot be made is "unknown", never "fine".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postwacht import metrics
from postwacht.discovery import discovery_for
from postwacht.dnscache import DnsCache, DnsLookupError
from postwacht.policy import DomainWatch, OwnedDomain, Policy, RetiredDomain
from postwacht.policyholder import PolicyHolder

log = logging.getLogger("postwacht.domains")
MAX_RDAP_BYTES = 1024 * 1024


class RdapError(Exception):
    """Registration data could not be had; the message says why."""


@dataclass(frozen=True, slots=True)
class Registration:
    registered: bool
    created: dt.datetime | None = None
    expires: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    """delegation, mx or registration: bounded, used as a metric label."""
    ok: bool | None
    """None: unknown (the check could not be made)."""
    detail: str


@dataclass(frozen=True, slots=True)
class DomainReport:
    domain: str
    kind: str
    checks: tuple[Check, ...]
    expires: dt.datetime | None = None
    expiring_soon: bool = False

    @property
    def control_ok(self) -> bool | None:
        if any(c.ok is False for c in self.checks):
            return False
        if any(c.ok is None for c in self.checks):
            return None
        return True


class RdapClient:
    def __init__(self, settings: DomainWatch) -> None:
        self._base = settings.rdap_base_url
        self._timeout = settings.rdap_timeout
        self._bootstrap: dict[str, str] = {}
        if settings.bootstrap_file:
            self._bootstrap = _read_bootstrap(Path(settings.bootstrap_file))

    def base_for(self, domain: str) -> str | None:
        if self._base:
            return self._base
        return self._bootstrap.get(domain.rsplit(".", 1)[-1])

    def lookup(self, domain: str) -> Registration:
        base = self.base_for(domain)
        if base is None:
            raise RdapError("no RDAP server configured for this top-level domain")
        if not base.startswith(("https://", "http://")):
            raise RdapError(f"RDAP base URL {base!r} is not http(s)")
        url = f"{base.rstrip('/')}/domain/{domain}"
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, headers={"Accept": "application/rdap+json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read(MAX_RDAP_BYTES)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return Registration(False)
            raise RdapError(f"{url} answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise RdapError(f"{url} did not answer: {exc}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise RdapError(f"{url} sent no JSON") from None
        raw_events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(raw_events, list):
            raise RdapError(f"{url} sent no RDAP domain object with events")
        events = {e.get("eventAction"): e.get("eventDate") for e in raw_events
                  if isinstance(e, dict)}
        return Registration(True, _date(events.get("registration")),
                            _date(events.get("expiration")))


def _read_bootstrap(path: Path) -> dict[str, str]:
    """IANA RDAP bootstrap (RFC 9224): [[["nl", ...], ["https://rdap.example/"]], ...]."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RdapError(f"cannot read RDAP bootstrap file {path}: {exc}") from None
    out: dict[str, str] = {}
    try:
        for tlds, urls in data["services"]:
            https = [u for u in urls if u.startswith("https://")] or list(urls)
            for tld in tlds:
                out[str(tld).lower()] = str(https[0])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        raise RdapError(f"RDAP bootstrap file {path} is not in the IANA format") from None
    return out


def _date(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class DomainAuditor:
    def __init__(self, policy: Policy, dns: DnsCache, rdap: RdapClient | None = None) -> None:
        self.policy = policy
        self.dns = dns
        self.settings = policy.domain_watch or DomainWatch()
        self.rdap = rdap or RdapClient(self.settings)
        owned = [r for d in policy.owned if isinstance(r := policy.rule_for(d), OwnedDomain)]
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
            checks.append(self._expect(owned.domain, "NS", "delegation", owned.nameservers))
        if owned.mx:
            checks.append(self._expect(owned.domain, "MX", "mx", owned.mx))
        registration, expires, soon = self._registration_owned(owned.domain, now)
        checks.append(registration)
        return DomainReport(owned.domain, "owned", tuple(checks), expires, soon)

    def _host_check(self, domain: str, rdtype: str, name: str,
                    judge: Callable[[frozenset[str] | None], Check]) -> Check:
        """Look up NS or MX hosts and let `judge` rule; a failed lookup is unknown."""
        try:
            found = self._hosts(domain, rdtype)
        except DnsLookupError as exc:
            return Check(name, None, f"unknown: {exc}")
        return judge(found)

    def _expect(self, domain: str, rdtype: str, name: str, expected: frozenset[str]) -> Check:
        def judge(found: frozenset[str] | None) -> Check:
            if found is None:
                return Check(name, False, f"{domain} does not exist in DNS (lapsed?)")
            if found == expected:
                return Check(name, True, f"{rdtype} {', '.join(sorted(found))} as expected")
            return Check(name, False, f"{rdtype} is {', '.join(sorted(found)) or 'empty'}; "
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
    ) -> tuple[Check, dt.datetime | None, bool]:
        try:
            reg = self.rdap.lookup(domain)
        except RdapError as exc:
            return Check("registration", None, f"unknown: {exc}"), None, False
        if not reg.registered:
            return Check("registration", False, f"{domain} is not registered (lapsed)"), None, False
        if reg.expires is None:
            return Check("registration", None, "unknown: RDAP gives no expiry"), None, False
        days = (reg.expires - now).total_seconds() / 86400
        if days < 0:
            return Check("registration", False, f"expired on {reg.expires:%Y-%m-%d}"), \
                reg.expires, True
        soon = days < self.settings.expiry_warning_days
        note = f"lapse approaching: expires {reg.expires:%Y-%m-%d}, in {days:.0f} days" \
            if soon else f"registered until {reg.expires:%Y-%m-%d}"
        return Check("registration", True, note), reg.expires, soon

    def _retired_report(self, retired: RetiredDomain) -> DomainReport:
        domain = retired.domain
        checks = [
            self._foreign(domain, "NS", "delegation", self._our_nameservers,
                          "delegated to name servers outside the organisation"),
            self._foreign(domain, "MX", "mx", self._our_mx,
                          "accepts mail at hosts outside the organisation"),
        ]
        try:
            reg = self.rdap.lookup(domain)
        except RdapError as exc:
            checks.append(Check("registration", None, f"unknown: {exc}"))
        else:
            checks.append(self._new_holder(retired, reg))
        return DomainReport(domain, "retired", tuple(checks))

    def _foreign(self, domain: str, rdtype: str, name: str, ours: frozenset[str],
                 problem: str) -> Check:
        def judge(found: frozenset[str] | None) -> Check:
            if found is None:
                return Check(name, True, f"{domain} does not exist in DNS")
            if not found:
                return Check(name, True, f"no {rdtype} records")
            foreign = sorted(found - ours)
            if foreign:
                return Check(name, False, f"{problem}: {', '.join(foreign)}")
            return Check(name, True, f"{rdtype} only at the organisation's hosts")

        return self._host_check(domain, rdtype, name, judge)

    @staticmethod
    def _new_holder(retired: RetiredDomain, reg: Registration) -> Check:
        if not reg.registered:
            return Check("registration", True, "not registered: nobody holds it")
        since = retired.since
        if reg.created is not None and since is not None and reg.created.date() > since:
            return Check("registration", False, f"registered again on {reg.created:%Y-%m-%d}, "
                         f"after it was retired on {since.isoformat()}: a new holder")
        return Check("registration", True, "registration predates the retirement")


def export(reports: list[DomainReport]) -> None:
    """Publish an audit as metrics (the domain list is bounded: it comes from the policy)."""
    metrics.DOMAIN_CONTROL.clear()
    metrics.DOMAIN_EXPIRY.clear()
    for report in reports:
        for check in report.checks:
            value = -1 if check.ok is None else int(check.ok)
            metrics.DOMAIN_CONTROL.labels(domain=report.domain, check=check.name).set(value)
        if report.expires is not None:
            metrics.DOMAIN_EXPIRY.labels(domain=report.domain).set(report.expires.timestamp())
    metrics.DOMAIN_AUDIT.set(time.time())


class DomainWatcher(threading.Thread):
    """Runs the audit in the daemon every `domain_watch.interval` seconds."""

    def __init__(self, holder: PolicyHolder) -> None:
        super().__init__(name="domain-watch", daemon=True)
        self._holder = holder
        self._stopping = False
        self._wake = threading.Event()
        self.control_lost: Mapping[str, str] = {}
        """Owned domains whose last audit failed a check, with the failed checks."""
        holder.on_change(lambda _policy: self._wake.set())  # a new policy: audit it now

    def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            policy = self._holder.current
            if policy.domain_watch is not None:
                self.run_once(policy)
            else:
                self.control_lost = {}
            self._wake.wait(policy.domain_watch.interval if policy.domain_watch else 3600)

    def run_once(self, policy: Policy) -> list[DomainReport]:
        try:
            reports = DomainAuditor(policy, discovery_for(policy.dns).dns).audit()
        except Exception:  # a bad answer must not end the watch: the next run may do
            metrics.ERRORS.labels(kind="domain-watch").inc()
            log.exception("domain watch could not run; keeping the last results")
            return []
        export(reports)
        self.control_lost = {
            r.domain: "; ".join(f"{c.name}: {c.detail}" for c in r.checks if c.ok is False)
            for r in reports if r.kind == "owned" and r.control_ok is False
        }
        for report in reports:
            noted = [c for c in report.checks if c.ok is not True
                     or (report.expiring_soon and c.name == "registration")]
            if noted:
                log.warning("domain watch: %s %s: %s", report.kind, report.domain,
                            "; ".join(f"{c.name}: {c.detail}" for c in noted))
        return reports

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
