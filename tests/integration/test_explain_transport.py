"""`postwacht explain` and `postwacht tls` with real discovery (the DNSSEC lab)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import write_test_policy
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer

POSTWACHT = str(Path(sys.executable).with_name("postwacht"))


@pytest.fixture
def policy(tmp_path: Path, dns_lab: DnsLab, sts_server: StsServer) -> Path:
    path = tmp_path / "policy.yaml"
    write_test_policy(
        path,
        sensitive={"detectors": ["bsn"]},
        secure_transport={"otherwise": "quarantine"},
        dns={"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
             "mta_sts_port": sts_server.port},
    )
    return path


def run(sts_server: StsServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SSL_CERT_FILE": str(sts_server.cafile)}
    return subprocess.run([POSTWACHT, *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def test_explain_shows_classification_and_transport_per_recipient(
    policy: Path, sts_server: StsServer, tmp_path: Path
) -> None:
    body = tmp_path / "body.txt"
    body.write_text("BSN 123456782\n")
    result = run(sts_server, "explain", "--policy", str(policy), "--from", "a@samen-veilig.nl",
                 "--to", "arts@dane.pw.test", "--to", "arts@plain.pw.test",
                 "--body-file", str(body), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["classification"] == {"sensitive": True, "reason": "detector bsn",
                                     "detector": "bsn"}
    dane, plain = out["recipients"]
    assert (dane["action"], dane["rule"], dane["transport"]["method"]) == (
        "accept", "secure-transport", "dane")
    assert (plain["action"], plain["rule"], plain["transport"]["method"]) == (
        "quarantine", "insecure-transport", "none")
    assert out["action"] == "quarantine"


def test_explain_without_content_shows_the_envelope_decision_and_says_so(
    policy: Path, sts_server: StsServer
) -> None:
    result = run(sts_server, "explain", "--policy", str(policy), "--from", "a@samen-veilig.nl",
                 "--to", "arts@plain.pw.test")
    assert result.returncode == 0
    assert "action:  accept" in result.stdout
    assert "secure transport: not evaluated" in result.stdout


@pytest.mark.parametrize(
    ("domain", "says"),
    [
        ("dane.pw.test", ["dane (verified)", "Postfix TLS policy: dane-only protocols=>=TLSv1.2"]),
        ("sts.pw-unsigned.test", ["mta-sts (verified)", "MTA-STS: mode enforce",
                                  "secure match=mx.sts.pw-unsigned.test"]),
        ("nullmx.pw.test", ["no-mail", "accepts no mail (null MX)"]),
        ("bogus.pw.test", ["failure", "SERVFAIL or bogus"]),
    ],
)
def test_tls_command_prints_what_discovery_found(
    policy: Path, sts_server: StsServer, domain: str, says: list[str]
) -> None:
    result = run(sts_server, "tls", domain, "--policy", str(policy))
    assert result.returncode == 0, result.stderr
    for text in says:
        assert text in result.stdout
