"""Domain watch against a local DNS server and a local RDAP server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postwacht.facts.rdap import RdapClient, RdapError

from tests.integration.conftest import Lab, held_for, write_test_policy
from tests.labs.dns import OUR_MX, OUR_NS, DnsLab
from tests.labs.rdap import RdapServer
from tests.labs.util import free_port, poll
from tests.unit.test_rdap_bootstrap import settings

POSTWACHT = str(Path(sys.executable).with_name("postwacht"))


def owned(domain: str) -> dict[str, Any]:
    return {"domain": domain, "nameservers": OUR_NS, "mx": OUR_MX}


def watch_policy(path: Path, dns_lab: DnsLab, rdap_url: str, **extra: Any) -> None:
    write_test_policy(
        path,
        owned_domains=[owned(d) for d in
                       ("samen-veilig.test", "expiring.test", "moved.test", "mxmoved.test")],
        retired_domains=[
            {"domain": "bjz-old.test", "since": "2015-01-01", "successor": "samen-veilig.test"},
            {"domain": "gone.nx.test", "since": "2018-01-01"},
        ],
        partners=[],
        dns={"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3},
        domain_watch={"rdap": {"base_url": rdap_url, "timeout": 3}, **extra},
    )


def audit(policy: Path) -> tuple[int, dict[str, Any]]:
    result = subprocess.run([POSTWACHT, "domains", "audit", "--policy", str(policy), "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, {r["domain"]: r for r in json.loads(result.stdout)}


def checks(report: dict[str, Any]) -> dict[str, tuple[bool | None, str]]:
    return {c["check"]: (c["ok"], c["detail"]) for c in report["checks"]}


@pytest.fixture
def reports(tmp_path: Path, dns_lab: DnsLab, rdap_server: RdapServer) -> dict[str, Any]:
    watch_policy(tmp_path / "policy.yaml", dns_lab, rdap_server.url)
    code, found = audit(tmp_path / "policy.yaml")
    assert code == 3  # some domains are in trouble
    return found


def test_a_domain_as_expected_is_fine(reports: dict[str, Any]) -> None:
    report = reports["samen-veilig.test"]
    assert report["control_ok"] is True
    assert report["expiring_soon"] is False
    assert {c: ok for c, (ok, _) in checks(report).items()} == {
        "delegation": True, "mx": True, "registration": True}


def test_an_approaching_lapse_is_reported(reports: dict[str, Any]) -> None:
    report = reports["expiring.test"]
    assert report["expiring_soon"] is True
    assert "lapse approaching" in checks(report)["registration"][1]


def test_moved_delegation_and_moved_mx_are_control_lost(reports: dict[str, Any]) -> None:
    moved = checks(reports["moved.test"])["delegation"]
    assert moved[0] is False
    assert "ns.registrar-parking.example" in moved[1]
    mx = checks(reports["mxmoved.test"])["mx"]
    assert mx[0] is False
    assert "mail.elsewhere.example" in mx[1]


def test_a_retired_domain_with_a_new_holder_is_flagged(reports: dict[str, Any]) -> None:
    found = checks(reports["bjz-old.test"])
    assert found["delegation"][0] is False
    assert found["mx"][0] is False
    assert found["registration"][0] is False
    assert "registered again on 2023-05-01" in found["registration"][1]
    quiet = checks(reports["gone.nx.test"])
    assert {c: ok for c, (ok, _) in quiet.items()} == {
        "delegation": True, "mx": True, "registration": True}


def test_rdap_down_is_unknown_not_fine(tmp_path: Path, dns_lab: DnsLab) -> None:
    watch_policy(tmp_path / "policy.yaml", dns_lab, f"http://127.0.0.1:{free_port()}/")
    code, found = audit(tmp_path / "policy.yaml")
    assert code == 3
    report = found["samen-veilig.test"]
    assert report["control_ok"] is None
    assert checks(report)["registration"][0] is None
    assert checks(report)["registration"][1].startswith("unknown: ")


def test_the_text_report_reads_well(tmp_path: Path, dns_lab: DnsLab,
                                    rdap_server: RdapServer) -> None:
    watch_policy(tmp_path / "policy.yaml", dns_lab, rdap_server.url)
    result = subprocess.run([POSTWACHT, "domains", "audit", "--policy",
                             str(tmp_path / "policy.yaml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert "samen-veilig.test (owned): ok" in result.stdout
    assert "moved.test (owned): PROBLEM" in result.stdout
    assert "expiring.test (owned): EXPIRING" in result.stdout


@pytest.fixture
def watched_lab(lab: Lab, dns_lab: DnsLab, rdap_server: RdapServer) -> Iterator[Lab]:
    state = str(lab.daemon.state)
    original = lab.daemon.policy.read_text()

    def checksum() -> str:
        return str(json.loads(lab.daemon.cli("status", "--state", state, "--json").stdout)
                   ["checksum"])

    before = checksum()
    watch_policy(lab.daemon.policy, dns_lab, rdap_server.url, hold_on_control_loss=True)
    poll(lambda: checksum() != before, "the domain-watch policy to load")
    yield lab
    changed = checksum()
    lab.daemon.policy.write_text(original)
    poll(lambda: checksum() != changed, "the original policy to be back")


def test_the_daemon_exports_the_audit_and_holds_mail_to_a_domain_out_of_control(
    watched_lab: Lab,
) -> None:
    lab = watched_lab
    daemon = lab.daemon
    moved = 'postwacht_domain_control_ok{check="delegation",domain="moved.test"}'
    poll(lambda: daemon.metric(moved, absent=None) == 0, "the audit of moved.test")
    assert daemon.metric(
        'postwacht_domain_control_ok{check="registration",domain="samen-veilig.test"}') == 1
    expiry = daemon.metric('postwacht_domain_expiry_timestamp_seconds{domain="expiring.test"}',
                           absent=None)
    assert expiry is not None
    assert expiry > 0
    lab.postfix.submit("medewerker@samen-veilig.test", ["team@moved.test"], "controlcheck")
    held_for(lab, "team@moved.test")
    listing = json.loads(lab.quarantine("list", "--json").stdout)
    assert any(h["rule"] == "control-lost" and "team@moved.test" in h["recipients"]
               for h in listing)


def test_an_rdap_answer_of_the_wrong_shape_is_unknown_not_a_crash(
    rdap_server: RdapServer,
) -> None:
    client = RdapClient(settings(rdap_base_url=rdap_server.url, rdap_timeout=3))
    with pytest.raises(RdapError, match="no RDAP domain object"):
        client.lookup("badshape.test")
    assert client.lookup("unknown.test").registered is False
