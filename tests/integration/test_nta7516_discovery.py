"""The `v=NTA7516-1` record through a real signing DNS server and validating resolver:
what discovery reports for each case, and what `postwacht tls` shows."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from postwacht.facts.discovery import Discovery
from postwacht.facts.dnscache import DnsCache, ResolverConfig
from postwacht.facts.mtasts import StsFetcher

from tests.conftest import EXAMPLE_POLICY
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer

POSTWACHT = str(Path(sys.executable).with_name("postwacht"))
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture
def discovery(dns_lab: DnsLab, sts_server: StsServer) -> Discovery:
    cache = DnsCache(ResolverConfig((("127.0.0.1", dns_lab.port),), timeout=3))
    return Discovery(cache, StsFetcher(cache, port=sts_server.port,
                                       cafile=str(sts_server.cafile)))


def test_a_valid_signed_record_counts_with_its_hosts_by_preference(
        discovery: Discovery) -> None:
    found = discovery.nta7516("nta.pw.test", TODAY)
    assert found.record is not None
    assert found.dnssec
    assert found.record.provider == "Zorgmail"
    assert [(h.preference, h.host) for h in found.record.hosts] == [
        (10, "smtp1.nta-provider.pw.test"), (20, "smtp2.nta-provider.pw.test")]
    assert found.record.valid_on(TODAY)


def test_a_record_without_ntamx_leaves_the_domains_own_mx(discovery: Discovery) -> None:
    found = discovery.nta7516("nta-own.pw.test", TODAY)
    assert found.record is not None
    assert found.record.hosts == ()
    assert "hosts the domain's MX hosts" in found.describe()
    # its two TXT strings are one record, its UTF-8 bytes one name
    assert found.record.provider == "ZorgÜ"


def test_an_unsigned_record_counts_but_says_it_is_not_signed(discovery: Discovery) -> None:
    found = discovery.nta7516("nta.pw-unsigned.test", TODAY)
    assert found.record is not None
    assert not found.dnssec
    assert found.describe().endswith("(not DNSSEC-signed)")


@pytest.mark.parametrize(("domain", "says"), [
    ("nta-old.pw.test", "none counts: expired (provider Zorgmail"),
    ("nta-future.pw.test", "none counts: not valid yet"),
    ("nta-two.pw.test", "none counts: 2 v=NTA7516-1 records: none counts"),
    ("nta-bad.pw.test", "none counts: a v=NTA7516-1 record that cannot be read: startdate "
                        "'2025-13' is not YYYY-MM"),
    ("plain.pw.test", "none counts: no v=NTA7516-1 record"),
    ("nta-ten.pw.test", "none counts: no v=NTA7516-1 record (DNSSEC-signed)"),
    ("missing.pw.test", "none counts: no v=NTA7516-1 record"),
])
def test_a_record_that_does_not_count_says_why(
        discovery: Discovery, domain: str, says: str) -> None:
    found = discovery.nta7516(domain, TODAY)
    assert found.record is None
    assert found.claim is not None
    assert found.describe().startswith(says)


def test_a_bogus_answer_is_a_dns_failure_never_no_record(discovery: Discovery) -> None:
    found = discovery.nta7516("nta-bogus.pw.test", TODAY)
    assert found.claim is None
    assert "SERVFAIL or bogus" in found.failure
    assert found.describe().startswith("unknown: DNS lookup failed")


def test_tls_shows_the_record(dns_lab: DnsLab, sts_server: StsServer, tmp_path: Path) -> None:
    policy = yaml.safe_load(EXAMPLE_POLICY.read_text())
    policy["dns"] = {"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
                     "mta_sts_port": sts_server.port}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    shown = subprocess.run([POSTWACHT, "tls", "nta.pw.test", "--policy", str(path)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert ("NTA 7516 record: provider Zorgmail, valid " in shown.stdout)
    assert "hosts 10 smtp1.nta-provider.pw.test, 20 smtp2.nta-provider.pw.test" in (
        shown.stdout)
    assert "(DNSSEC-signed)" in shown.stdout
    as_json = subprocess.run([POSTWACHT, "tls", "nta-old.pw.test", "--policy", str(path),
                              "--json"], capture_output=True, text=True, timeout=60,
                             check=False)
    nta = json.loads(as_json.stdout)["nta7516"]
    assert nta["counts"] is False
    assert nta["detail"].startswith("expired")
