"""A relayhost end to end: the daemon reads it from Postfix, holds sensitive mail while
the policy does not name the relay, and once it does, the mail leaves and Postfix
verifies the relay's certificate because the TLS table answered for the relay."""

from __future__ import annotations

import json
import smtplib
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.integration.conftest import Lab, Sink, held_for, running_lab, write_test_policy
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.util import poll

SENDER = "medewerker@samen-veilig.nl"
BSN_BODY = "Verslag van het gesprek.\r\nBSN: 123456782\r\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def relay(ca: trustme.CA) -> Iterator[Sink]:
    """The provider's smarthost: STARTTLS only, with a certificate for `localhost`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    sink = Sink(tls=context)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def relay_lab(dns_lab: DnsLab, sts_server: StsServer, relay: Sink,
              ca: trustme.CA) -> Iterator[Lab]:
    with running_lab("postwacht-relay-", cafile=sts_server.cafile,
                     policy=secure_policy(dns_lab, sts_server)) as lab:
        cafile = lab.postfix.root / "relay-ca.pem"
        ca.cert_pem.write_to_path(str(cafile))
        cafile.chmod(0o644)
        # Postfix names the relay by the host name its certificate carries, found in
        # /etc/hosts (no DNS for it here).
        lab.postfix.postconf("-e", "default_transport = smtp",
                             f"relayhost = [localhost]:{relay.port}",
                             "smtp_host_lookup = native", f"smtp_tls_CAfile = {cafile}",
                             "smtp_tls_loglevel = 1")
        subprocess.run(["postfix", "-c", str(lab.postfix.config), "reload"],
                       capture_output=True, check=True)
        # The daemon follows main.cf on its own, without a restart or a reload.
        poll(lambda: f"through the relay [localhost]:{relay.port}" in lab.daemon.log_text(),
             "the daemon to read the new relayhost")
        yield lab


def secure_policy(dns_lab: DnsLab, sts_server: StsServer, **changes: Any) -> dict[str, Any]:
    return {
        "sensitive": {"default": "not-sensitive", "detectors": ["bsn"]},
        "secure_transport": {"otherwise": "quarantine"},
        "dns": {"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
                "mta_sts_port": sts_server.port},
        **changes,
    }


def checksum(lab: Lab) -> str:
    out = lab.daemon.cli("status", "--state", str(lab.daemon.state), "--json").stdout
    return str(json.loads(out)["checksum"])


def use(lab: Lab, policy: dict[str, Any]) -> None:
    before, text = checksum(lab), lab.daemon.policy.read_text()
    write_test_policy(lab.daemon.policy, **policy)
    if lab.daemon.policy.read_text() != text:
        poll(lambda: checksum(lab) != before, "the new policy to load")


def send(lab: Lab, to: str) -> str:
    m = uuid.uuid4().hex[:12]
    message = f"From: <{SENDER}>\r\nSubject: verslag {m}\r\n\r\n{BSN_BODY}"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, [to], message)
    return m


def maillog(lab: Lab) -> str:
    path: Path = lab.postfix.maillog
    return path.read_text(errors="replace")


def test_a_relay_the_policy_does_not_name_holds_sensitive_mail_to_a_dane_domain(
        relay_lab: Lab, dns_lab: DnsLab, sts_server: StsServer, relay: Sink) -> None:
    use(relay_lab, secure_policy(dns_lab, sts_server))
    m = send(relay_lab, "arts@dane.pw.test")
    entry = held_for(relay_lab, "arts@dane.pw.test")
    [held] = [h for h in json.loads(relay_lab.quarantine("list", "--json").stdout)
              if h["queue_id"] == entry["queue_id"]]
    assert held["rule"] == "insecure-transport"
    assert f"relayhost [localhost]:{relay.port}, which the policy's delivery section does " \
        "not name" in held["reason"]
    assert relay.with_marker(m) == []


def test_the_named_trusted_relay_carries_it_over_tls_the_table_demands(
        relay_lab: Lab, dns_lab: DnsLab, sts_server: StsServer, relay: Sink) -> None:
    hop = f"[localhost]:{relay.port}"
    use(relay_lab, secure_policy(dns_lab, sts_server, delivery={
        "relay": hop, "tls": "secure", "trusted_to_enforce": True}))
    verified = f"Verified TLS connection established to localhost[127.0.0.1]:{relay.port}"
    before = maillog(relay_lab).count(verified)
    m = send(relay_lab, "arts@dane.pw.test")
    poll(lambda: relay.with_marker(m), "delivery through the relay")
    # Postfix's default level is "may": "Verified" means the table's `secure` was used
    # for this delivery (the only one through the relay in this module).
    poll(lambda: maillog(relay_lab).count(verified) > before, "the verified TLS log line")
    answer = subprocess.run(
        ["postmap", "-c", str(relay_lab.postfix.config), "-q", hop,
         f"socketmap:inet:127.0.0.1:{relay_lab.daemon.ports.socketmap}:tls"],
        capture_output=True, text=True, check=False)
    assert answer.stdout.strip() == "secure protocols=>=TLSv1.2", answer.stderr
    # A domain without verified TLS is still held: the relay is trusted to keep TLS
    # verified, not to make an unverified domain safe.
    send(relay_lab, "arts@plain.pw.test")
    assert held_for(relay_lab, "arts@plain.pw.test")


def test_check_and_explain_say_what_the_relayhost_means(
        relay_lab: Lab, dns_lab: DnsLab, sts_server: StsServer, relay: Sink,
        tmp_path: Path) -> None:
    use(relay_lab, secure_policy(dns_lab, sts_server))
    hop = f"[localhost]:{relay.port}"
    config = ["--postfix-config", str(relay_lab.postfix.config)]
    policy = str(relay_lab.daemon.policy)
    checked = relay_lab.daemon.cli("check", policy, *config)
    assert checked.returncode == 0
    assert f"warning: Postfix hands outside mail to the relayhost {hop}, which the " \
        "policy's delivery section does not name" in checked.stdout
    body = tmp_path / "body.txt"
    body.write_text(BSN_BODY)
    explain = ["explain", "--policy", policy, "--from", SENDER, "--to", "arts@dane.pw.test",
               "--body-file", str(body), "--json"]
    relayed = json.loads(relay_lab.daemon.cli(*explain, *config).stdout)
    assert relayed["delivery"]["relayhost"] == [hop]
    assert relayed["recipients"][0]["rule"] == "insecure-transport"
    direct = json.loads(relay_lab.daemon.cli(*explain, "--relayhost", "").stdout)
    assert direct["delivery"] == {"relayhost": [], "problem": None}
    assert direct["recipients"][0]["rule"] == "secure-transport"
