"""Operations: metrics after real mail through Postfix, and the retired-address report."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid

from tests.integration.conftest import Lab, held_for
from tests.labs.util import poll

SENDER = "facturen-robot@samen-veilig.nl"


def scrape(lab: Lab) -> str:
    url = f"http://127.0.0.1:{lab.daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_metrics_move_with_real_mail_and_never_carry_an_address(lab: Lab) -> None:
    d = lab.daemon
    names = {
        "retired": 'postwacht_recipients_total{action="reject",rule="retired"}',
        "lookalike": 'postwacht_recipients_total{action="quarantine",rule="lookalike"}',
        "held": 'postwacht_messages_total{action="quarantine"}',
        "accepted": 'postwacht_messages_total{action="accept"}',
        "attempts": 'postwacht_retired_attempts_total{domain="bjzutrecht.nl"}',
        "rcpt_calls": 'postwacht_milter_callback_seconds_count{stage="rcpt"}',
        "transport": 'postwacht_socketmap_lookups_total{answer="OK",table="transport"}',
    }
    before = {k: d.metric(v) for k, v in names.items()}
    m = uuid.uuid4().hex[:12]
    lab.postfix.submit(SENDER, [f"klant-{m}@bjzutrecht.nl", f"ok-{m}@example.org"], m)
    lab.postfix.submit(SENDER, [f"x-{m}@samen-veiIig.nl"], m)
    held_for(lab, f"x-{m}@samen-veiIig.nl")
    poll(lambda: lab.sink.with_marker(m), "the ordinary message at the sink")
    after = {k: d.metric(v) for k, v in names.items()}
    assert after["retired"] == before["retired"] + 1
    assert after["lookalike"] == before["lookalike"] + 1
    assert after["held"] == before["held"] + 1
    assert after["accepted"] >= before["accepted"] + 1
    assert after["attempts"] == before["attempts"] + 1
    assert after["rcpt_calls"] >= before["rcpt_calls"] + 3
    assert after["transport"] >= before["transport"] + 1  # smtpd asked the backstop too
    assert d.metric("postwacht_quarantine_messages") >= 1
    assert d.metric("postwacht_quarantine_oldest_age_seconds") >= 0
    assert d.metric('postwacht_policy_info{checksum="' + lab_checksum(lab)[:12] + '"}') == 1
    text = scrape(lab)
    assert m not in text  # no address, local part or subject in any label
    assert "@" not in "".join(line for line in text.splitlines() if not line.startswith("#"))


def lab_checksum(lab: Lab) -> str:
    out = lab.daemon.cli("status", "--state", str(lab.daemon.state), "--json").stdout
    return str(json.loads(out)["checksum"])


def test_retired_report_names_who_still_mails_retired_domains(lab: Lab) -> None:
    m = uuid.uuid4().hex[:12]
    for _ in range(3):
        lab.postfix.submit("cron-dossiers@samen-veilig.nl", [f"a-{m}@bjzutrecht.nl"], m)
    lab.postfix.sendmail("backup-script@samen-veilig.nl", [f"b-{m}@mail.bjzutrecht.nl"], m)
    held_for(lab, f"b-{m}@mail.bjzutrecht.nl")
    report = lab.daemon.cli("report", "retired", "--state", str(lab.daemon.state), "--json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    [cron] = [r for r in rows if r["sender"] == "cron-dossiers@samen-veilig.nl"]
    assert (cron["domain"], cron["attempts"]) == ("bjzutrecht.nl", 3)
    assert cron["client"].startswith("smtp from 127.0.0.1")
    [script] = [r for r in rows if r["sender"] == "backup-script@samen-veilig.nl"]
    port = lab.daemon.milter_port
    assert script["client"] == f"sendmail(1) on the MTA host via inet:{port}@127.0.0.1"
    assert rows.index(cron) < rows.index(script)  # most frequent first
    assert all(m not in json.dumps(r) for r in rows)  # no local parts, no content
    text = lab.daemon.cli("report", "retired", "--state", str(lab.daemon.state)).stdout
    assert "3  bjzutrecht.nl  from cron-dossiers@samen-veilig.nl via smtp from 127.0.0.1" in text


def test_each_message_is_one_decision_line_by_queue_id_and_never_its_content(
        lab: Lab) -> None:
    m = uuid.uuid4().hex[:12]
    seen = len(lab.daemon.log_text().splitlines())
    lab.postfix.submit(SENDER, [f"ok-{m}@example.org"], m)  # subject and body carry m
    poll(lambda: lab.sink.with_marker(m), "the message at the sink")
    [queue_id] = poll(lambda: set(re.findall(
        rf"postfix/smtp\[\d+\]: (\w+): to=<ok-{m}@example\.org>",
        lab.postfix.maillog.read_text(errors="replace"))), "the delivery in Postfix's log")
    lines = poll(lambda: [line for line in lab.daemon.log_text().splitlines()[seen:]
                          if f"id={queue_id} " in line and "stage=eom" in line],
                 "the message's decision line")
    assert len(lines) == 1
    assert "action=accept" in lines[0]
    assert "recipients=example.org" in lines[0]  # the domain, not the address
    assert m not in lab.daemon.log_text()  # no local part, subject or body, anywhere
