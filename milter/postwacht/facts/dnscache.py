"""DNS answers with their DNSSEC status, cached for as long as their TTL allows.

Three outcomes are kept apart, because they mean different things for secure transport:
an answer (possibly empty: NODATA), a name that does not exist (NXDOMAIN), and a lookup
that failed (SERVFAIL, which a validating resolver also gives for bogus signatures, or a
timeout). Answers and negative answers are cached (negative ones for the SOA minimum);
a failure is never cached and never turns into "no record".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.resolver

from postwacht.telemetry import NO_TELEMETRY, DnsResult, Telemetry

NEGATIVE_TTL_DEFAULT = 60
MAX_ENTRIES = 100_000
"""The cache stays bounded however many domains are mailed."""
MAX_TTL = 86400


class DnsLookupError(Exception):
    """A lookup that gave no usable answer (SERVFAIL, bogus, timeout, refused)."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    records: tuple[str, ...]
    """Record data in presentation form; empty for NODATA and NXDOMAIN."""
    secure: bool
    """The resolver validated it (AD bit)."""
    nxdomain: bool = False
    ttl: int = 0


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    nameservers: tuple[tuple[str, int], ...] = ()
    """Empty: the system's resolvers from /etc/resolv.conf."""
    timeout: float = 5.0


class DnsCache:
    def __init__(self, config: ResolverConfig, clock: Callable[[], float] = time.monotonic,
                 telemetry: Telemetry = NO_TELEMETRY) -> None:
        self.config = config
        self._clock = clock
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, DnsAnswer]] = {}
        self.hits = 0
        self.misses = 0

    def _resolver(self, port: int, nameserver: str | None) -> dns.resolver.Resolver:
        if nameserver is None:
            resolver = dns.resolver.Resolver()
        else:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [nameserver]
            resolver.port = port
        resolver.use_edns(0, dns.flags.DO, 1232)
        resolver.lifetime = self.config.timeout
        resolver.timeout = self.config.timeout
        resolver.cache = None
        return resolver

    def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        """The answer for `name`/`rdtype`, from the cache while its TTL lasts."""
        key = (name.lower().rstrip("."), rdtype)
        now = self._clock()
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None and cached[0] > now:
            self.hits += 1
            self._telemetry.dns_cache(hit=True)
            return cached[1]
        self.misses += 1
        self._telemetry.dns_cache(hit=False)
        answer = self._query(key[0], rdtype)
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:  # drop what expired; then the oldest half
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= MAX_ENTRIES:
                    ordered = sorted(self._entries.items(), key=lambda item: item[1][0])
                    self._entries = dict(ordered[len(ordered) // 2:])
            self._entries[key] = (now + answer.ttl, answer)
        return answer

    def _query(self, name: str, rdtype: str) -> DnsAnswer:
        servers: list[tuple[str | None, int]] = list(self.config.nameservers) or [(None, 53)]
        errors = []
        for nameserver, port in servers:
            started = time.perf_counter()
            try:
                answer = self._ask(self._resolver(port, nameserver), name, rdtype)
            except DnsLookupError as exc:
                self._telemetry.dns_lookup(DnsResult.FAILURE, time.perf_counter() - started)
                errors.append(str(exc))
                continue
            result = (DnsResult.NXDOMAIN if answer.nxdomain else
                      DnsResult.ANSWER if answer.records else DnsResult.NODATA)
            self._telemetry.dns_lookup(result, time.perf_counter() - started)
            return answer
        raise DnsLookupError("; ".join(errors))

    def _ask(self, resolver: dns.resolver.Resolver, name: str, rdtype: str) -> DnsAnswer:
        try:
            result = resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            responses: dict[Any, dns.message.Message] = exc.kwargs.get("responses", {})
            response = next(iter(responses.values()), None)
            secure = bool(response is not None and response.flags & dns.flags.AD)
            return DnsAnswer((), secure, nxdomain=True, ttl=_negative_ttl(response))
        except dns.resolver.NoNameservers as exc:
            raise DnsLookupError(f"{name} {rdtype}: no server gave an answer (SERVFAIL or "
                             f"bogus): {exc}") from None
        except dns.exception.Timeout:
            raise DnsLookupError(f"{name} {rdtype}: timed out") from None
        except dns.exception.DNSException as exc:
            raise DnsLookupError(f"{name} {rdtype}: {exc}") from None
        response = result.response
        secure = bool(response.flags & dns.flags.AD)
        if result.rrset is None:
            return DnsAnswer((), secure, ttl=_negative_ttl(response))
        records = tuple(_text(r) for r in result.rrset)
        return DnsAnswer(records, secure, ttl=min(result.rrset.ttl, MAX_TTL))


def _text(rdata: Any) -> str:
    """A record as text; a TXT record as its strings joined and decoded (UTF-8, bad bytes
    replaced), not in zone-file form with quotes and escapes."""
    strings = getattr(rdata, "strings", None)
    if isinstance(strings, tuple) and all(isinstance(p, bytes) for p in strings):
        return b"".join(strings).decode("utf-8", "replace")
    return str(rdata.to_text())


def _negative_ttl(response: dns.message.Message | None) -> int:
    if response is not None:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(min(rrset.ttl, rrset[0].minimum, MAX_TTL))
    return NEGATIVE_TTL_DEFAULT

