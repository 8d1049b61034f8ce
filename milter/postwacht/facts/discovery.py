"""What a recipient domain offers for secure transport: DANE, MTA-STS, or nothing.

DANE (RFC 7672) needs a validated MX RRset (or a validated implicit MX) and, for every MX
host, validated addresses and at least one usable TLSA record at `_25._tcp.<host>`
(usage DANE-TA(2) or DANE-EE(3); PKIX usages are not usable for SMTP). DANE wins over
MTA-STS. A lookup failure is reported as a failure, never as "nothing offered".
"""

from __future__ import annotations

import datetime as dt
import threading

from postwacht.core.facts import Nta7516Facts, TransportFacts
from postwacht.core.nta7516 import NO_RECORD, Nta7516Claim, nta7516_claim, route_host
from postwacht.core.policy import DnsSettings, Policy
from postwacht.core.tables import NOTFOUND, Status, TableAnswer, nta7516_tls_answer
from postwacht.core.vocabulary import Method
from postwacht.facts.dnscache import DnsAnswer, DnsCache, DnsLookupError, ResolverConfig
from postwacht.facts.mtasts import StsError, StsFetcher, txt_id
from postwacht.telemetry import Telemetry

USABLE_TLSA = {"usage": {2, 3}, "selector": {0, 1}, "mtype": {0, 1, 2}}


class Discovery:
    """Transport facts per domain, through one DNS cache and one MTA-STS policy cache."""

    def __init__(self, dns: DnsCache, sts: StsFetcher) -> None:
        self.dns = dns
        self.sts = sts

    def facts(self, domain: str) -> TransportFacts:
        try:
            return self._facts(domain)
        except DnsLookupError as exc:
            return TransportFacts(domain, Method.FAILURE, f"DNS lookup failed: {exc}")

    def nta7516(self, domain: str, day: dt.date) -> Nta7516Facts:
        """The domain's `v=NTA7516-1` claim on `day`. A failed lookup (SERVFAIL, a bogus
        signature, a timeout) is a failure, never "no record"."""
        try:
            answer = self.dns.lookup(domain, "TXT")
        except DnsLookupError as exc:
            return Nta7516Facts(domain, None, False, f"DNS lookup failed: {exc}")
        if answer.nxdomain:  # the transport facts say the domain does not exist
            return Nta7516Facts(domain, Nta7516Claim(None, NO_RECORD), answer.secure)
        claim = nta7516_claim(answer.records, day)
        return Nta7516Facts(domain, claim, answer.secure)

    def nta7516_tls(self, key: str, policy: Policy) -> TableAnswer:
        """What the `nta7516` table answers for next hop `key` (`[host]:25`): DANE where
        the host has validated addresses and a usable, validated TLSA record; TEMP when
        that cannot be learnt (the mail waits); NOTFOUND for a key that is no such hop
        (the transport's own level, secure, stands)."""
        host = route_host(key)
        if host is None:
            return NOTFOUND
        try:
            why_not = self._dane((host,))
        except DnsLookupError as exc:
            return TableAnswer(Status.TEMP, f"DNS lookup failed for {host}: {exc}")
        return nta7516_tls_answer(host, policy, why_not)

    def _facts(self, domain: str) -> TransportFacts:
        mx = self.dns.lookup(domain, "MX")
        if mx.nxdomain:
            return TransportFacts(domain, Method.NXDOMAIN, f"{domain} does not exist",
                                  dnssec=mx.secure)
        hosts = _mx_hosts(mx, domain)
        if hosts == ():
            return TransportFacts(domain, Method.NO_MAIL, f"{domain} accepts no mail (null MX)",
                                  dnssec=mx.secure)
        if mx.secure:
            dane = self._dane(hosts)
            if dane is None:
                return TransportFacts(domain, Method.DANE, "DNSSEC-signed MX with usable TLSA "
                                      f"records for {', '.join(hosts)}", hosts, True)
            why_not_dane = dane
        else:
            why_not_dane = "MX is not DNSSEC-signed"
        return self._mta_sts(domain, hosts, mx.secure, why_not_dane)

    def _dane(self, hosts: tuple[str, ...]) -> str | None:
        """None when every host has usable TLSA; else why not."""
        for host in hosts:
            address = self.dns.lookup(host, "A")
            if not address.secure:
                return f"address of {host} is not DNSSEC-signed"
            tlsa = self.dns.lookup(f"_25._tcp.{host}", "TLSA")
            if not tlsa.secure or not tlsa.records:
                return f"no signed TLSA record for {host}"
            if not any(_usable_tlsa(r) for r in tlsa.records):
                return f"no usable TLSA record for {host} (PKIX usages do not count for SMTP)"
        return None

    def _mta_sts(self, domain: str, hosts: tuple[str, ...], dnssec: bool,
                 why_not_dane: str) -> TransportFacts:
        txt = self.dns.lookup(f"_mta-sts.{domain}", "TXT")
        policy_id = txt_id(txt.records)
        if policy_id is None:
            cached = self.sts.cached(domain)
            if cached is None:
                return TransportFacts(domain, Method.NONE, f"{why_not_dane}; no MTA-STS record",
                                      hosts, dnssec)
            policy = cached  # the record may be gone (or stripped); the policy is not
        else:
            try:
                policy = self.sts.policy(domain, policy_id)
            except StsError as exc:
                return TransportFacts(domain, Method.NONE, f"{why_not_dane}; MTA-STS policy "
                                      f"unusable: {exc}", hosts, dnssec)
        if policy.mode != "enforce":
            return TransportFacts(domain, Method.NONE, f"{why_not_dane}; MTA-STS in mode "
                                  f"{policy.mode}, not enforce", hosts, dnssec, policy)
        unmatched = [h for h in hosts if not policy.matches(h)]
        if unmatched:
            return TransportFacts(domain, Method.NONE, f"{why_not_dane}; MX {unmatched[0]} is not "
                                  "in the MTA-STS policy", hosts, dnssec, policy)
        return TransportFacts(domain, Method.MTA_STS, f"MTA-STS policy in enforce mode for "
                              f"{', '.join(policy.mx)}", hosts, dnssec, policy)


def _mx_hosts(answer: DnsAnswer, domain: str) -> tuple[str, ...]:
    """MX hosts by preference; the domain itself when it has no MX; () for a null MX."""
    if not answer.records:
        return (domain,)
    pairs = []
    for record in answer.records:
        preference, _, exchange = record.partition(" ")
        pairs.append((int(preference), exchange.rstrip(".").lower()))
    if len(pairs) == 1 and pairs[0][1] == "":
        return ()
    return tuple(host for _, host in sorted(pairs) if host)


def _usable_tlsa(record: str) -> bool:
    try:
        usage, selector, mtype = (int(x) for x in record.split()[:3])
    except ValueError:
        return False
    return (usage in USABLE_TLSA["usage"] and selector in USABLE_TLSA["selector"]
            and mtype in USABLE_TLSA["mtype"])


class DiscoveryPool:
    """One `Discovery` (and so one DNS and MTA-STS cache) per DNS setting.

    Kept across reloads: messages decided under the old policy and the tls table under
    the new one keep their caches (the MTA-STS cache is what outlives a stripped record).
    Only the most recently used `MAX_SETTINGS` are kept, so reloads cannot grow it.
    """

    MAX_SETTINGS = 4

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._by_settings: dict[DnsSettings, Discovery] = {}

    def for_settings(self, settings: DnsSettings) -> Discovery:
        with self._lock:
            found = self._by_settings.pop(settings, None)
            if found is None:
                dns = DnsCache(ResolverConfig(settings.resolvers, settings.timeout),
                               telemetry=self._telemetry)
                found = Discovery(dns, StsFetcher(dns, port=settings.mta_sts_port))
            self._by_settings[settings] = found  # the most recently used last
            while len(self._by_settings) > self.MAX_SETTINGS:
                del self._by_settings[next(iter(self._by_settings))]
            return found
