"""What a release may do, end to end: a real Postfix, the daemon asking the DNSSEC lab,
the release helper, and the review command a reviewer runs.

Sensitive mail held because its recipient's domain offers no verified TLS
(`plain.pw.test`) is never released in the clear by an ordinary release: the reviewer
sends it through the policy's secure route (a second sink that speaks only STARTTLS, as
a secure-mail provider does) or confirms an override, which the audit trail keeps as
one. Mail to a retired domain is not released at all (Postfix's transport table would
bounce it). The quarantine header reaches no sink. The records are the embedded SQLite
store: the rules for a release are the same whatever the backend.
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from postwacht.records.store import AuditAction, AuditEntry, QuarantineRecord, Status

from tests.integration.conftest import (
    Delivered,
    Lab,
    Sink,
    held_for,
    running_lab,
    write_test_policy,
)
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.util import poll

SENDER = "medewerker@samen-veilig.nl"
BSN_BODY = "Verslag van het gesprek.\r\nBSN: 123456782\r\n"
INSECURE_DOMAIN = "plain.pw.test"
"""Signed, with an MX but no TLSA record and no MTA-STS: no verified TLS."""
INTERNAL = (b"X-Postwacht-Quarantine", b"X-Postwacht-Route")
PolicyChanges = Callable[[bool], dict[str, Any]]
"""The top-level policy changes for the secure-transport rule, with a route or without."""


@pytest.fixture(scope="module")
def secure_sink() -> Iterator[Sink]:
    """The secure-mail provider of the policy's route; STARTTLS only (the tls table makes
    Postfix demand TLS on the way there)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    sink = Sink(tls=context)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def policy_with(dns_lab: DnsLab, sts_server: StsServer, secure_sink: Sink) -> PolicyChanges:
    """The top-level policy changes for the secure-transport rule, with or without the
    secure route."""

    def changes(route: bool) -> dict[str, Any]:
        secure: dict[str, Any] = {"otherwise": "quarantine",
                                  "reply": "use the secure mail portal"}
        if route:
            secure["route"] = f"relay:[127.0.0.1]:{secure_sink.port}"
        return {
            "sensitive": {"default": "sensitive", "detectors": ["bsn"], "markers": [
                {"subject": r"(?i)^\[open\]", "means": "not-sensitive"}]},
            "secure_transport": secure,
            "dns": {"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
                    "mta_sts_port": sts_server.port},
        }

    return changes


@pytest.fixture(scope="module")
def lab(sts_server: StsServer, policy_with: PolicyChanges) -> Iterator[Lab]:
    with running_lab("postwacht-review-", cafile=sts_server.cafile, mta="review-lab",
                     policy=policy_with(True)) as started:
        # Four eyes knows persons by their accounts: one asks, another approves.
        for name, role in (("privacy-officer", "approver"), ("second-officer", "approver")):
            added = started.daemon.cli("users", *started.daemon.records_options, "add", name,
                                       "--role", role, "--no-password")
            assert added.returncode == 0, added.stderr
        yield started


def use_route(lab: Lab, policy_with: PolicyChanges, route: bool) -> None:
    """The running daemon's policy: the secure-transport rule with or without a route."""
    write_test_policy(lab.daemon.policy, **policy_with(route))
    result = lab.daemon.cli("reload", "--state", str(lab.daemon.state))
    assert result.returncode == 0, result.stderr


def review(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """`postwacht quarantine ... ARGS` on the lab's records, as a reviewer runs it."""
    return lab.daemon.cli("quarantine", *lab.daemon.records_options, *args)


def hold_sensitive(lab: Lab) -> tuple[str, str, str]:
    """Sensitive mail to a domain without verified TLS, held: marker, recipient, queue id."""
    m = uuid.uuid4().hex[:12]
    recipient = f"jeugdarts-{m}@{INSECURE_DOMAIN}"
    message = f"From: <{SENDER}>\r\nSubject: verslag {m}\r\n\r\n{BSN_BODY}"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, [recipient], message)
    return m, recipient, str(held_for(lab, recipient)["queue_id"])


def record_of(lab: Lab, queue_id: str) -> QuarantineRecord:
    with lab.records() as store:
        [record] = store.records_of(queue_id)
        return record


def audit_of(lab: Lab, record: QuarantineRecord) -> list[AuditEntry]:
    with lab.records() as store:
        return [e for e in store.audit_entries() if e.record_id == record.record_id]


def still_held(lab: Lab, queue_id: str) -> bool:
    return any(e["queue_id"] == queue_id for e in lab.postfix.held())


def without_internal_headers(delivered: Delivered) -> bool:
    return not any(header in delivered.content for header in INTERNAL)


def test_a_plain_release_of_mail_held_for_insecure_transport_is_refused(
    lab: Lab, policy_with: PolicyChanges,
) -> None:
    use_route(lab, policy_with, route=True)
    m, _, queue_id = hold_sensitive(lab)
    record = record_of(lab, queue_id)
    assert record.rule.value == "insecure-transport"
    refused = review(lab, "release", queue_id, "--reason", "the receiver asked for it",
                     "--actor", "privacy-officer")
    assert refused.returncode == 1, refused.stdout
    assert "an ordinary release would send it in the clear" in refused.stderr
    assert "--route" in refused.stderr
    assert "the only way it can leave" in refused.stderr
    overridden = review(lab, "release", queue_id, "--override", "--reason", "x",
                        "--actor", "privacy-officer")
    assert overridden.returncode == 1
    assert "release it with --route" in overridden.stderr
    assert still_held(lab, queue_id)
    assert record_of(lab, queue_id).status is Status.HELD
    assert [e.action for e in audit_of(lab, record)] == [AuditAction.HELD]
    assert lab.sink.with_marker(m) == []


def test_a_routed_release_leaves_through_the_secure_route_only(
    lab: Lab, policy_with: PolicyChanges, secure_sink: Sink,
) -> None:
    use_route(lab, policy_with, route=True)
    m, recipient, queue_id = hold_sensitive(lab)
    route = f"relay:[127.0.0.1]:{secure_sink.port}"
    assert record_of(lab, queue_id).route == route
    asked = review(lab, "release", queue_id, "--route", "--reason",
                   "through the secure provider", "--actor", "privacy-officer")
    # The detector found a BSN: even a routed release waits for a second person.
    assert asked.returncode == 4, asked.stderr
    assert "a detector found the message sensitive (bsn)" in asked.stdout
    released = review(lab, "approve", queue_id, "--reason", "the provider is the partner's",
                      "--actor", "second-officer")
    assert released.returncode == 0, released.stderr
    assert f"through the secure route {route}" in released.stdout
    [routed] = poll(lambda: secure_sink.with_marker(m), "the message at the secure provider")
    assert routed.recipients == [recipient]
    assert without_internal_headers(routed)
    assert lab.sink.with_marker(m) == []
    record = record_of(lab, queue_id)
    assert record.status is Status.RELEASED
    released_entry = audit_of(lab, record)[-1]
    assert (released_entry.action, released_entry.override) == (AuditAction.RELEASED, False)
    assert "mode route" in released_entry.detail


def test_an_override_delivers_the_ordinary_way_and_is_audited_as_one(
    lab: Lab, policy_with: PolicyChanges, secure_sink: Sink,
) -> None:
    use_route(lab, policy_with, route=False)
    m, recipient, queue_id = hold_sensitive(lab)
    assert record_of(lab, queue_id).route is None
    no_route = review(lab, "release", queue_id, "--route", "--reason", "securely",
                      "--actor", "privacy-officer")
    assert no_route.returncode == 1
    assert "has no secure route" in no_route.stderr
    assert still_held(lab, queue_id)

    asked = review(lab, "release", queue_id, "--override", "--reason",
                   "the receiver confirmed by phone", "--actor", "privacy-officer")
    assert asked.returncode == 4, asked.stderr  # four eyes: requested, not carried out
    assert "needs a second person because it overrides the insecure-transport hold" \
        in asked.stdout
    assert still_held(lab, queue_id)
    own = review(lab, "approve", queue_id, "--reason", "mine", "--actor", "privacy-officer")
    assert own.returncode == 1
    assert "nobody approves their own request" in own.stderr
    released = review(lab, "approve", queue_id, "--reason", "checked the call log",
                      "--actor", "second-officer")
    assert released.returncode == 0, released.stderr
    assert "released as an override" in released.stdout
    [delivered] = poll(lambda: lab.sink.with_marker(m), "the overridden message at the sink")
    assert delivered.recipients == [recipient]
    assert without_internal_headers(delivered)
    assert secure_sink.with_marker(m) == []

    record = record_of(lab, queue_id)
    entries = audit_of(lab, record)
    assert [(e.action, e.override, e.actor) for e in entries] == [
        (AuditAction.HELD, False, "postwacht"),
        (AuditAction.RELEASE_REQUESTED, True, "privacy-officer"),
        (AuditAction.APPROVED, True, "second-officer"),
        (AuditAction.RELEASED, True, "privacy-officer")]
    assert entries[2].reason == "checked the call log"
    assert {entries[1].reason, entries[3].reason} == {"the receiver confirmed by phone"}
    trail = review(lab, "audit")
    assert trail.returncode == 0, trail.stderr
    assert f"privacy-officer released {queue_id} on {lab.mta} (override) " \
           "'the receiver confirmed by phone'" in trail.stdout


def test_mail_to_a_retired_domain_is_not_released_even_as_an_override(lab: Lab) -> None:
    m = uuid.uuid4().hex[:12]
    recipient = f"r-{m}@bjzutrecht.nl"
    lab.postfix.sendmail(SENDER, [recipient], m)  # sendmail(1): held, not refused at RCPT
    queue_id = str(held_for(lab, recipient)["queue_id"])
    for extra in ((), ("--override",)):
        refused = review(lab, "release", queue_id, *extra, "--reason", "the domain is ours",
                         "--actor", "privacy-officer")
        assert refused.returncode == 1, refused.stdout
        assert "retired domain bjzutrecht.nl" in refused.stderr
        assert "would bounce it" in refused.stderr
        assert "released" not in refused.stdout
    assert still_held(lab, queue_id)
    assert record_of(lab, queue_id).status is Status.HELD
    assert lab.sink.with_marker(m) == []


def test_a_release_without_a_reason_is_a_usage_error(lab: Lab) -> None:
    m = uuid.uuid4().hex[:12]
    recipient = f"x-{m}@samen-veiIig.nl"
    message = f"From: <{SENDER}>\r\nSubject: [open] {m}\r\n\r\nTot morgen.\r\n"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, [recipient], message)
    queue_id = str(held_for(lab, recipient)["queue_id"])
    result = review(lab, "release", queue_id, "--actor", "privacy-officer")
    assert result.returncode == 2
    assert "--reason" in result.stderr
    assert still_held(lab, queue_id)
    assert record_of(lab, queue_id).status is Status.HELD
