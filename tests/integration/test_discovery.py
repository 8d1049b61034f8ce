"""Discovery against a real signing DNS server, a validating resolver and an HTTPS server."""

from __future__ import annotations

from pathlib import Path

import pytest
from postwacht.facts.discovery import Discovery
from postwacht.facts.dnscache import DnsCache, ResolverConfig
from postwacht.facts.mtasts import StsError, StsFetcher

from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.util import free_port


@pytest.fixture
def discovery(dns_lab: DnsLab, sts_server: StsServer) -> Discovery:
    cache = DnsCache(ResolverConfig((("127.0.0.1", dns_lab.port),), timeout=3))
    return Discovery(cache, StsFetcher(cache, port=sts_server.port, cafile=str(sts_server.cafile)))


@pytest.mark.parametrize(
    ("domain", "method", "says"),
    [
        ("dane.pw.test", "dane", "usable TLSA records for mx.dane.pw.test"),
        ("nomx.pw.test", "dane", "usable TLSA records for nomx.pw.test"),
        ("plain.pw.test", "none", "no signed TLSA record for mx.plain.pw.test"),
        ("pkix.pw.test", "none", "PKIX usages do not count"),
        ("nullmx.pw.test", "no-mail", "accepts no mail (null MX)"),
        ("missing.pw.test", "nxdomain", "does not exist"),
        ("bogus.pw.test", "failure", "SERVFAIL or bogus"),
        ("sts.pw-unsigned.test", "mta-sts", "enforce mode for mx.sts.pw-unsigned.test"),
        ("stsbad.pw-unsigned.test", "none", "answered 301"),
        ("unsigned.pw-unsigned.test", "none", "MX is not DNSSEC-signed; no MTA-STS record"),
    ],
)
def test_discovery_tells_each_case_apart(
    discovery: Discovery, domain: str, method: str, says: str
) -> None:
    facts = discovery.facts(domain)
    assert facts.method == method, facts.detail
    assert says in facts.detail


def test_signed_answers_are_marked_secure_and_unsigned_ones_are_not(
    discovery: Discovery,
) -> None:
    assert discovery.facts("dane.pw.test").dnssec is True
    assert discovery.facts("unsigned.pw-unsigned.test").dnssec is False


def test_a_resolver_that_does_not_answer_is_a_failure_not_no_policy() -> None:
    cache = DnsCache(ResolverConfig((("127.0.0.1", free_port()),), timeout=0.5))
    facts = Discovery(cache, StsFetcher(cache)).facts("dane.pw.test")
    assert facts.method == "failure"
    assert not facts.verified


def test_a_cached_mta_sts_policy_outlives_a_failed_fetch(
    dns_lab: DnsLab, tmp_path: Path
) -> None:
    server = StsServer(tmp_path)
    server.start()
    cache = DnsCache(ResolverConfig((("127.0.0.1", dns_lab.port),), timeout=3))
    fetcher = StsFetcher(cache, port=server.port, cafile=str(server.cafile))
    first = fetcher.policy("sts.pw-unsigned.test", "id1")
    server.stop()
    assert fetcher.policy("sts.pw-unsigned.test", "id2") == first  # the new one failed
    assert fetcher.cached("sts.pw-unsigned.test") == first
    with pytest.raises(StsError, match="cannot fetch"):
        fetcher.policy("stsbad.pw-unsigned.test", "x")
