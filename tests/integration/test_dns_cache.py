"""The DNS cache against the real resolver: TTLs, negative caching, failures never cached."""

from __future__ import annotations

import pytest
from postwacht.facts.dnscache import DnsCache, DnsLookupError, ResolverConfig

from tests.labs.dns import DnsLab


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(dns_lab: DnsLab, clock: Clock) -> DnsCache:
    return DnsCache(ResolverConfig((("127.0.0.1", dns_lab.port),), timeout=3), clock=clock)


def test_an_answer_is_kept_for_its_ttl(cache: DnsCache, clock: Clock) -> None:
    first = cache.lookup("dane.pw.test", "MX")
    assert first.secure
    assert first.records == ("10 mx.dane.pw.test.",)
    assert 0 < first.ttl <= 300
    assert cache.lookup("DANE.pw.test.", "MX") == first
    assert (cache.misses, cache.hits) == (1, 1)
    clock.now += first.ttl + 1
    cache.lookup("dane.pw.test", "MX")
    assert cache.misses == 2


def test_nxdomain_and_nodata_are_cached_for_the_soa_minimum(
    cache: DnsCache, clock: Clock
) -> None:
    missing = cache.lookup("missing.pw.test", "MX")
    nodata = cache.lookup("nomx.pw.test", "MX")
    assert (missing.nxdomain, missing.records) == (True, ())
    assert (nodata.nxdomain, nodata.records) == (False, ())
    assert 0 < missing.ttl <= 60  # the zone's SOA minimum, counted down by the resolver
    assert 0 < nodata.ttl <= 60
    cache.lookup("missing.pw.test", "MX")
    cache.lookup("nomx.pw.test", "MX")
    assert cache.hits == 2
    clock.now += 61
    cache.lookup("missing.pw.test", "MX")
    assert cache.misses == 3


def test_a_failure_is_raised_every_time_and_never_cached(cache: DnsCache) -> None:
    for _ in range(2):
        with pytest.raises(DnsLookupError, match="SERVFAIL or bogus"):
            cache.lookup("bogus.pw.test", "MX")
    assert (cache.misses, cache.hits) == (2, 0)
