"""Monitor mode end to end: a real Postfix, the daemon, the DNSSEC lab and the sink.

With `mode: monitor`, every rule decides as it would, says so in the log line of the
message and in `postwacht_monitored_total`, and the mail reaches the sink unchanged. The
same policy with `mode: enforce`, loaded by the daemon's file watch, acts on the very
next message: how a postmaster moves from a week of watching to enforcing.
"""

from __future__ import annotations

import json
import smtplib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Lab, held_for, running_lab, write_test_policy
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.util import poll

SENDER = "medewerker@samen-veilig.nl"
BSN_BODY = "Verslag van het gesprek.\r\nBSN: 123456782\r\n"
PLAIN_BODY = "Tot morgen.\r\n"


def rules(dns_lab: DnsLab, sts_server: StsServer, mode: str) -> dict[str, Any]:
    """Every rule on, in one mode: retired (reject), look-alike (quarantine), address
    literals (reject), insecure transport (quarantine), first recipients, and more than
    three outside addresses in To/Cc (reject)."""
    return {
        "mode": mode,
        "sensitive": {"default": "not-sensitive", "detectors": ["bsn"]},
        "secure_transport": {"otherwise": "quarantine"},
        "dns": {"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3,
                "mta_sts_port": sts_server.port},
        "address_literals": "reject",
        "notices": {"from": "postwacht@samen-veilig.nl",
                    "review_url": "https://review.samen-veilig.nl/"},
        "misaddressing": {"first_recipient": {},
                          "exposed_recipients": {"max_outside": 3, "action": "reject"}},
    }


@pytest.fixture(scope="module")
def monitor_lab(dns_lab: DnsLab, sts_server: StsServer) -> Iterator[Lab]:
    with running_lab("postwacht-monitor-", cafile=sts_server.cafile,
                     policy=rules(dns_lab, sts_server, "monitor")) as lab:
        yield lab


def send(lab: Lab, to: list[str], body: str, shown: list[str] | None = None
         ) -> tuple[str, smtplib.SMTPException | None]:
    """Submit one message to `to`, showing `shown` in its To header (default: `to`)."""
    m = uuid.uuid4().hex[:12]
    message = (f"From: <{SENDER}>\r\nTo: {', '.join(shown if shown is not None else to)}\r\n"
               f"Subject: verslag {m}\r\n\r\n{m}\r\n{body}")
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        try:
            smtp.sendmail(SENDER, to, message)
        except smtplib.SMTPException as exc:
            return m, exc
    return m, None


def monitored(lab: Lab, action: str, rule: str) -> float:
    value = lab.daemon.metric(f'postwacht_monitored_total{{action="{action}",rule="{rule}"}}')
    assert value is not None
    return value


CASES = [
    # (recipients, body, what monitor mode says would have happened)
    (["x-{m}@bjzutrecht.nl"], PLAIN_BODY, [("reject", "retired")]),
    (["x-{m}@samen-veiIig.nl"], PLAIN_BODY, [("quarantine", "lookalike")]),
    (["x-{m}@[192.0.2.1]"], PLAIN_BODY, [("reject", "address-literal")]),
    (["x-{m}@plain.pw.test"], BSN_BODY, [("quarantine", "insecure-transport"),
                                         ("quarantine", "first-recipient")]),
    (["x-{m}@dane.pw.test"], BSN_BODY, [("quarantine", "first-recipient")]),
    ([f"x{i}-{{m}}@dane.pw.test" for i in range(4)], BSN_BODY,
     [("reject", "exposed-recipients")]),
]


@pytest.mark.parametrize(("to", "body", "would"), CASES,
                         ids=["retired", "lookalike", "address-literal", "insecure-transport",
                              "first-recipient", "exposed-recipients"])
def test_in_monitor_mode_the_mail_reaches_the_sink_and_the_log_and_metrics_say_why(
        monitor_lab: Lab, to: list[str], body: str, would: list[tuple[str, str]]) -> None:
    lab, tag = monitor_lab, uuid.uuid4().hex[:8]
    recipients = [t.replace("{m}", tag) for t in to]
    before = {w: monitored(lab, *w) for w in would}
    seen = len(lab.daemon.log_text().splitlines())
    marker, error = send(lab, recipients, body)
    assert error is None, error
    poll(lambda: sum(len(d.recipients) for d in lab.sink.with_marker(marker))
         == len(recipients), "the message at the sink, for every recipient")
    assert lab.postfix.held() == []
    poll(lambda: [line for line in lab.daemon.log_text().splitlines()[seen:]
                  if "stage=eom action=accept" in line
                  and all(f"{rule}:{action}" in line for action, rule in would)],
         "the message's log line naming what monitor mode saw")
    for (action, rule), count in before.items():
        poll(lambda a=action, r=rule, c=count: monitored(lab, a, r) >= c + 1,  # type: ignore[misc]
             f"postwacht_monitored_total for {rule}")


def test_the_report_says_which_retired_domain_attempts_left(monitor_lab: Lab) -> None:
    lab, tag = monitor_lab, uuid.uuid4().hex[:8]
    sender_client = f"x-{tag}@bjzutrecht.nl"
    marker, error = send(lab, [sender_client], PLAIN_BODY)
    assert error is None
    poll(lambda: lab.sink.with_marker(marker), "the monitored message at the sink")
    report = lab.daemon.cli("report", "retired", *lab.daemon.records_options, "--json")
    assert report.returncode == 0, report.stderr
    [row] = [r for r in json.loads(report.stdout) if r["domain"] == "bjzutrecht.nl"]
    assert row["monitored"] == row["attempts"] >= 1
    text = lab.daemon.cli("report", "retired", *lab.daemon.records_options).stdout
    assert "LEFT (monitor mode)" in text


def test_check_warns_that_a_monitored_retired_domain_lets_mail_leave(monitor_lab: Lab) -> None:
    result = monitor_lab.daemon.cli("check", str(monitor_lab.daemon.policy))
    assert result.returncode == 0, result.stderr
    assert "warning: bjzutrecht.nl is a retired domain in monitor mode" in result.stdout
    assert "only monitored, not enforced: rule lookalike" in result.stdout


def test_switching_to_enforce_by_reload_applies_at_once(
        dns_lab: DnsLab, sts_server: StsServer) -> None:
    with running_lab("postwacht-enforce-", cafile=sts_server.cafile,
                     policy=rules(dns_lab, sts_server, "monitor")) as lab:
        tag = uuid.uuid4().hex[:8]
        marker, error = send(lab, [f"a-{tag}@bjzutrecht.nl"], PLAIN_BODY)
        assert error is None
        poll(lambda: lab.sink.with_marker(marker), "monitored mail at the sink")
        state = str(lab.daemon.state)

        def checksum() -> str:
            return str(json.loads(lab.daemon.cli("status", "--state", state, "--json")
                                  .stdout)["checksum"])

        before = checksum()
        write_test_policy(lab.daemon.policy, **rules(dns_lab, sts_server, "enforce"))
        poll(lambda: checksum() != before, "the enforcing policy to load")

        _, error = send(lab, [f"b-{tag}@bjzutrecht.nl"], PLAIN_BODY)
        assert isinstance(error, smtplib.SMTPRecipientsRefused)
        [(code, text)] = error.recipients.values()
        assert code == 550
        assert b"samen-veilig.nl" in text
        _, error = send(lab, [f"c-{tag}@[192.0.2.1]"], PLAIN_BODY)
        assert isinstance(error, smtplib.SMTPRecipientsRefused)
        exposed = [f"x{i}-{tag}@dane.pw.test" for i in range(4)]
        _, error = send(lab, exposed, BSN_BODY)
        assert isinstance(error, smtplib.SMTPDataError), error
        assert error.smtp_code == 550
        assert b"Bcc" in error.smtp_error
        for to in (f"d-{tag}@samen-veiIig.nl", f"e-{tag}@plain.pw.test",
                   f"f-{tag}@dane.pw.test"):
            _, error = send(lab, [to], BSN_BODY)
            assert error is None, error
            held_for(lab, to)
        with lab.records() as store:
            held = {r.rule.value for r in store.quarantine_records()}
        assert held == {"lookalike", "insecure-transport", "first-recipient"}
