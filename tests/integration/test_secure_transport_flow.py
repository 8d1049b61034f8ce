"""Sensitive mail end to end: real Postfix, the daemon asking the DNSSEC lab, the sinks."""

from __future__ import annotations

import json
import smtplib
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from tests.integration.conftest import Lab, Sink, held_for, write_test_policy
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.util import poll

SENDER = "medewerker@samen-veilig.nl"
BSN_BODY = "Verslag van het gesprek.\r\nBSN: 123456782\r\n"


@pytest.fixture(scope="module")
def secure_sink() -> Iterator[Sink]:
    """The secure-mail provider that `otherwise: route` sends to. It offers only
    STARTTLS: the tls table makes Postfix demand TLS on the way there."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    sink = Sink(tls=context)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def use_policy(
    lab: Lab, dns_lab: DnsLab, sts_server: StsServer, secure_sink: Sink
) -> Iterator[Callable[[str], None]]:
    """Switch the running daemon to a secure-transport policy; restore it afterwards."""
    state = str(lab.daemon.state)
    original = lab.daemon.policy.read_text()

    def checksum() -> str:
        out = lab.daemon.cli("status", "--state", state, "--json").stdout
        return str(json.loads(out)["checksum"])

    def switch(otherwise: str) -> None:
        before = checksum()
        write_test_policy(
            lab.daemon.policy,
            sensitive={"default": "sensitive", "detectors": ["bsn"], "markers": [
                {"subject": r"(?i)^\[open\]", "means": "not-sensitive"}]},
            secure_transport={"otherwise": otherwise,
                              "route": f"relay:[127.0.0.1]:{secure_sink.port}",
                              "reply": "use the secure mail portal"},
            dns={"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
                 "mta_sts_port": sts_server.port},
        )
        poll(lambda: checksum() != before, "the secure-transport policy to load")

    yield switch
    before = checksum()
    lab.daemon.policy.write_text(original)
    poll(lambda: checksum() != before, "the original policy to be back")


def send(lab: Lab, to: str, subject: str = "verslag", body: str = BSN_BODY) -> tuple[str, Any]:
    """Submit one message; return its marker and the SMTP error, if any."""
    m = uuid.uuid4().hex[:12]
    message = f"From: <{SENDER}>\r\nSubject: {subject} {m}\r\n\r\n{body}"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        try:
            smtp.sendmail(SENDER, [to], message)
        except smtplib.SMTPResponseException as exc:
            return m, exc
    return m, None


def test_sensitive_mail_to_a_domain_without_verified_tls_is_held(
    lab: Lab, use_policy: Callable[[str], None]
) -> None:
    use_policy("quarantine")
    m, error = send(lab, "jeugdarts@plain.pw.test")
    assert error is None
    entry = held_for(lab, "jeugdarts@plain.pw.test")
    [held] = [h for h in json.loads(lab.quarantine("list", "--json").stdout)
              if h["queue_id"] == entry["queue_id"]]
    assert held["rule"] == "insecure-transport"
    assert "sensitive (detector bsn)" in held["reason"]
    assert "123456782" not in held["reason"]
    assert lab.sink.with_marker(m) == []


def test_sensitive_mail_over_dane_or_mta_sts_and_to_partners_goes_out(
    lab: Lab, use_policy: Callable[[str], None]
) -> None:
    use_policy("quarantine")
    for recipient in ("arts@dane.pw.test", "arts@sts.pw-unsigned.test", "team@utrecht.nl"):
        m, error = send(lab, recipient)
        assert error is None
        poll(lambda m=m: lab.sink.with_marker(m), f"delivery to {recipient}")


def test_mail_marked_not_sensitive_is_unaffected(
    lab: Lab, use_policy: Callable[[str], None]
) -> None:
    use_policy("quarantine")
    m, error = send(lab, "info@plain.pw.test", subject="[open] rooster", body="Tot morgen.\r\n")
    assert error is None
    poll(lambda: lab.sink.with_marker(m), "delivery of the not-sensitive message")


def test_refusal_tells_the_sender_how_to_send_securely(
    lab: Lab, use_policy: Callable[[str], None]
) -> None:
    use_policy("reject")
    m, error = send(lab, "jeugdarts@plain.pw.test")
    assert error is not None
    assert error.smtp_code == 550
    assert b"5.7.1" in error.smtp_error
    assert b"use the secure mail portal" in error.smtp_error
    assert lab.sink.with_marker(m) == []


def test_one_recipient_without_verified_tls_refuses_the_whole_message(
    lab: Lab, use_policy: Callable[[str], None]
) -> None:
    use_policy("reject")
    m = uuid.uuid4().hex[:12]
    message = f"From: <{SENDER}>\r\nSubject: verslag {m}\r\n\r\n{BSN_BODY}"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp, \
            pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(SENDER, ["arts@dane.pw.test", "jeugdarts@plain.pw.test"], message)
    assert refused.value.smtp_code == 550
    assert lab.sink.with_marker(m) == []


def test_route_sends_the_message_to_the_secure_provider_only(
    lab: Lab, use_policy: Callable[[str], None], secure_sink: Sink
) -> None:
    use_policy("route")
    m, error = send(lab, "jeugdarts@plain.pw.test")
    assert error is None
    [routed] = poll(lambda: secure_sink.with_marker(m), "delivery to the secure provider")
    assert routed.recipients == ["jeugdarts@plain.pw.test"]
    assert b"X-Postwacht" not in routed.content  # smtp_header_checks keep it inside
    assert lab.sink.with_marker(m) == []


def test_a_bogus_domain_is_tempfailed_not_sent(
    lab: Lab, use_policy: Callable[[str], None]
) -> None:
    use_policy("quarantine")
    m, error = send(lab, "x@bogus.pw.test")
    assert error is not None
    assert error.smtp_code == 451
    assert lab.sink.with_marker(m) == []


def test_tls_table_answers_as_postfix_asks(lab: Lab, use_policy: Callable[[str], None]) -> None:
    use_policy("quarantine")

    def tls(key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postmap", "-c", str(lab.postfix.config), "-q", key,
             f"socketmap:inet:127.0.0.1:{lab.daemon.ports.socketmap}:tls"],
            capture_output=True, text=True, timeout=30, check=False)

    assert tls("dane.pw.test").stdout.strip() == "dane-only protocols=>=TLSv1.2"
    assert tls("sts.pw-unsigned.test").stdout.strip() == (
        "secure match=mx.sts.pw-unsigned.test protocols=>=TLSv1.2")
    assert tls("utrecht.nl").stdout.strip() == "dane-only protocols=>=TLSv1.2"
    assert tls("plain.pw.test").returncode == 1  # not found: Postfix's default
    assert tls("[127.0.0.1]:25").returncode == 1
    bogus = tls("bogus.pw.test")
    assert bogus.returncode != 0
    assert "SERVFAIL or bogus" in bogus.stderr
