"""NTA 7516 end to end: BSN mail to a domain with a valid `v=NTA7516-1` record leaves
through the real Postfix to the hosts the record names, over TLS that Postfix verifies
(DANE where the host has usable TLSA records, else a certificate naming the host), and
mail whose record does not count is held, or waits.

The hosts are sinks on port 25 of their own loopback addresses (127.0.0.2, .3, .4), as
the DNSSEC lab's zone says. Postfix runs in its own mount namespace, where
/etc/resolv.conf names a second validating resolver of the lab on 127.0.0.153, port 53:
so Postfix finds the hosts, and their TLSA records, through DNSSEC as it would outside,
and the machine's own resolver is never asked.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.integration.conftest import (
    Delivered,
    Lab,
    PostfixInstance,
    Sink,
    held_for,
    running_lab,
)
from tests.labs.dns import NTA_ADDRESSES, DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.util import poll

SENDER = "medewerker@samen-veilig.nl"
BSN_BODY = "Verslag van het gesprek.\r\nBSN: 123456782\r\n"
RESOLVER = "127.0.0.153"
SMTP1, SMTP2, SMTP3 = (f"smtp{n}.nta-provider.pw.test" for n in (1, 2, 3))
OWN_MX = "mx.nta-own.pw.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def hosts(dns_lab: DnsLab, ca: trustme.CA) -> Iterator[dict[str, Sink]]:
    """The NTA 7516 hosts: smtp1 shows the key its TLSA record pins, smtp2 a certificate
    for its name from the test CA, smtp3 one for another name; nta-own's MX one for its
    name."""
    dane = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    dane.load_cert_chain(dns_lab.nta_dane_cert, dns_lab.nta_dane_key)
    named = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SMTP2).configure_cert(named)
    other = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.somebody-else.example").configure_cert(other)
    own = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(OWN_MX).configure_cert(own)
    sinks = {host: Sink(tls=context, host=NTA_ADDRESSES[host], port=25)
             for host, context in ((SMTP1, dane), (SMTP2, named), (SMTP3, other),
                                   (OWN_MX, own))}
    for sink in sinks.values():
        sink.start()
    yield sinks
    for sink in sinks.values():
        sink.stop()


def nta_policy(dns_lab: DnsLab, sts_server: StsServer) -> dict[str, Any]:
    return {
        "sensitive": {"default": "not-sensitive", "detectors": ["bsn"]},
        "secure_transport": {"accept": ["dane", "mta-sts", "partner", "nta7516"],
                             "otherwise": "quarantine"},
        "dns": {"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
                "mta_sts_port": sts_server.port},
    }


@pytest.fixture(scope="module")
def nta_lab(dns_lab: DnsLab, sts_server: StsServer, hosts: dict[str, Sink],
            ca: trustme.CA) -> Iterator[Lab]:
    def resolving_through_the_lab(postfix: PostfixInstance) -> Sequence[str]:
        cafile = postfix.root / "nta-ca.pem"
        ca.cert_pem.write_to_path(str(cafile))
        cafile.chmod(0o644)
        postfix.postconf("-e", f"smtp_tls_CAfile = {cafile}", "smtp_tls_loglevel = 1")
        resolv = postfix.root / "resolv.conf"
        resolv.write_text(f"nameserver {RESOLVER}\noptions trust-ad\n")
        resolv.chmod(0o644)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv)]

    with dns_lab.resolver_on(RESOLVER), running_lab(
            "postwacht-nta-", cafile=sts_server.cafile, policy=nta_policy(dns_lab, sts_server),
            postfix_setup=resolving_through_the_lab) as lab:
        yield lab


def send(lab: Lab, *to: str) -> str:
    m = uuid.uuid4().hex[:12]
    message = f"From: <{SENDER}>\r\nSubject: verslag {m}\r\n\r\n{BSN_BODY}"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, list(to), message)
    return m


def maillog(lab: Lab) -> str:
    return lab.postfix.maillog.read_text(errors="replace")


def table(lab: Lab, key: str) -> str | None:
    """What Postfix reads from the nta7516 table for `key`; None when it is not found."""
    answer = subprocess.run(
        ["postmap", "-c", str(lab.postfix.config), "-q", key,
         f"socketmap:inet:127.0.0.1:{lab.daemon.ports.socketmap}:nta7516"],
        capture_output=True, text=True, check=False)
    if answer.returncode == 1 and not answer.stdout:
        return None
    assert answer.returncode == 0, answer.stderr  # 2 and up: the lookup failed
    return answer.stdout.strip()


def delivered_verified(lab: Lab, sink: Sink, recipient: str, host: str, address: str
                       ) -> tuple[str, list[Delivered]]:
    """Send BSN mail to `recipient`; its marker and what `sink` got, once it got it and
    Postfix logged the TLS to `host` at `address` as verified."""
    m = send(lab, recipient)
    delivered = poll(lambda: sink.with_marker(m), f"delivery to {host}")
    poll(lambda: f"Verified TLS connection established to {host}[{address}]:25"
         in maillog(lab), f"Postfix's verified TLS log line for {host}")
    return m, list(delivered)


def held_reason(lab: Lab, recipient: str) -> dict[str, Any]:
    entry = held_for(lab, recipient)
    [held] = [h for h in json.loads(lab.quarantine("list", "--json").stdout)
              if h["queue_id"] == entry["queue_id"]]
    return dict(held)


def test_the_nta7516_table_asks_dane_of_a_host_with_tlsa_else_its_name(nta_lab: Lab) -> None:
    assert table(nta_lab, f"[{SMTP1}]:25") == "dane-only protocols=>=TLSv1.2"
    assert table(nta_lab, f"[{SMTP2}]:25") == f"secure match={SMTP2} protocols=>=TLSv1.2"
    # anything else: the transport's own level (secure) stands
    assert table(nta_lab, "nta.pw.test") is None


def test_bsn_mail_goes_to_the_first_ntamx_host_verified_by_dane(
        nta_lab: Lab, hosts: dict[str, Sink]) -> None:
    # smtp1's certificate is self-signed: only its TLSA record, which Postfix looked up
    # and validated itself because the table said dane-only, can verify it.
    m, [delivered] = delivered_verified(nta_lab, hosts[SMTP1], "arts@nta.pw.test", SMTP1,
                                        "127.0.0.2")  # the first by preference
    assert delivered.recipients == ["arts@nta.pw.test"]
    assert b"X-Postwacht-Route" not in delivered.content  # kept inside (smtp_header_checks)
    assert hosts[SMTP2].with_marker(m) == []
    assert nta_lab.sink.with_marker(m) == []  # never the ordinary way out
    logged = nta_lab.daemon.logged(f"route=nta7516:[{SMTP1}]:25,[{SMTP2}]:25")
    assert "action=route rule=nta7516 recipients=nta.pw.test" in logged


def test_a_host_without_tlsa_gets_it_over_a_certificate_naming_it(
        nta_lab: Lab, hosts: dict[str, Sink]) -> None:
    delivered_verified(nta_lab, hosts[SMTP2], "arts@nta-secure.pw.test", SMTP2, "127.0.0.3")


def test_without_ntamx_the_domains_own_mx_receives_over_verified_tls(
        nta_lab: Lab, hosts: dict[str, Sink]) -> None:
    delivered_verified(nta_lab, hosts[OWN_MX], "arts@nta-own.pw.test", OWN_MX, "127.0.0.5")
    assert table(nta_lab, f"[{OWN_MX}]:25") == f"secure match={OWN_MX} protocols=>=TLSv1.2"


def test_a_host_whose_certificate_names_another_never_gets_it(
        nta_lab: Lab, hosts: dict[str, Sink]) -> None:
    m = send(nta_lab, "arts@nta-wrong.pw.test")
    [entry] = poll(lambda: [e for e in nta_lab.postfix.queue()
                            if any(r["address"] == "arts@nta-wrong.pw.test"
                                   and "certificate" in r.get("delay_reason", "")
                                   for r in e["recipients"])],
                   "the message to wait in the queue for a verifiable certificate")
    assert entry["queue_name"] == "deferred"
    assert hosts[SMTP3].with_marker(m) == []
    assert nta_lab.sink.with_marker(m) == []
    nta_lab.postfix.postsuper("-d", str(entry["queue_id"]))


@pytest.mark.parametrize(("domain", "says"), [
    ("nta-old.pw.test", "its NTA 7516 record does not count: expired"),
    ("nta-future.pw.test", "its NTA 7516 record does not count: not valid yet"),
    ("nta-two.pw.test", "2 v=NTA7516-1 records: none counts"),
    ("nta-bad.pw.test", "a v=NTA7516-1 record that cannot be read"),
    ("nta.pw-unsigned.test", "the record is not DNSSEC-signed, and the policy requires DNSSEC"),
])
def test_bsn_mail_to_a_record_that_does_not_count_is_held(
        nta_lab: Lab, domain: str, says: str) -> None:
    m = send(nta_lab, f"arts@{domain}")
    held = held_reason(nta_lab, f"arts@{domain}")
    assert held["rule"] == "insecure-transport"
    assert says in held["reason"]
    assert nta_lab.sink.with_marker(m) == []


def test_a_record_that_fails_validation_makes_the_sender_wait(nta_lab: Lab) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(nta_lab, "arts@nta-bogus.pw.test")
    assert refused.value.smtp_code == 451
    assert b"NTA 7516 mail service is unknown" in refused.value.smtp_error


def test_a_message_also_to_others_is_held_never_routed(
        nta_lab: Lab, hosts: dict[str, Sink]) -> None:
    m = send(nta_lab, "arts@nta.pw.test", "arts@plain.pw.test")
    held = held_reason(nta_lab, "arts@nta.pw.test")
    assert "send it to nta.pw.test in a message of its own" in held["reason"]
    assert all(sink.with_marker(m) == [] for sink in hosts.values())


def test_tls_and_explain_show_the_record_the_route_and_the_hosts(
        nta_lab: Lab, tmp_path: Path) -> None:
    policy = str(nta_lab.daemon.policy)
    shown = nta_lab.daemon.cli("tls", "--policy", policy, "nta.pw.test")
    assert shown.returncode == 0, shown.stderr
    assert (f"sensitive mail to it alone goes to nta7516:[{SMTP1}]:25,[{SMTP2}]:25;"
            in shown.stdout)
    assert f"[{SMTP1}]:25: OK dane-only protocols=>=TLSv1.2" in shown.stdout
    assert f"[{SMTP2}]:25: OK secure match={SMTP2} protocols=>=TLSv1.2" in shown.stdout
    relayed = nta_lab.daemon.cli("tls", "--policy", policy, "nta.pw.test",
                                 "--relayhost", "[smtp.relay.example]:587")
    assert ("not used: Postfix hands outside mail to the relayhost [smtp.relay.example]:587,"
            " which the policy's delivery section does not name") in relayed.stdout
    assert "goes to nta7516" not in relayed.stdout
    body = tmp_path / "body.txt"
    body.write_text(BSN_BODY)
    explained = json.loads(nta_lab.daemon.cli(
        "explain", "--policy", policy, "--from", SENDER, "--to", "arts@nta-own.pw.test",
        "--body-file", str(body), "--json").stdout)
    assert explained["action"] == "route"
    assert explained["route"] == "nta7516:[mx.nta-own.pw.test]:25"
    [recipient] = explained["recipients"]
    assert recipient["rule"] == "nta7516"
    assert recipient["nta7516"]["record"]["provider"] == "ZorgÜ"
