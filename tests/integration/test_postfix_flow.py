"""End to end: mail through a real Postfix with the filter attached, out to a real sink."""

from __future__ import annotations

import json
import smtplib
import uuid

import pytest
from postwacht.config.compiler import load

from tests.integration.conftest import Lab, held_for, poll, port_open, write_test_policy

SENDER = "medewerker@samen-veilig.nl"


def marker() -> str:
    return uuid.uuid4().hex[:12]


def test_retired_recipient_is_rejected_at_rcpt_while_the_other_is_delivered(lab: Lab) -> None:
    m = marker()
    refused = lab.postfix.submit(SENDER, [f"dossier-{m}@bjzutrecht.nl", f"ok-{m}@example.org"], m)
    code, text = refused[f"dossier-{m}@bjzutrecht.nl"]
    assert code == 550
    assert text.startswith(b"5.7.1 ")
    assert f"send to dossier-{m}@samen-veilig.nl instead".encode() in text
    assert list(refused) == [f"dossier-{m}@bjzutrecht.nl"]
    [delivered] = poll(lambda: lab.sink.with_marker(m), "delivery to the sink")
    assert delivered.recipients == [f"ok-{m}@example.org"]


def test_lookalike_recipient_is_held_and_listed_for_review(lab: Lab) -> None:
    m = marker()
    recipient = f"x-{m}@samen-veiIig.nl"
    assert lab.postfix.submit(SENDER, [recipient, f"ok-{m}@example.org"], m) == {}
    entry = held_for(lab, recipient)
    listing = lab.quarantine("list", "--json")
    assert listing.returncode == 0, listing.stderr
    [mine] = [h for h in json.loads(listing.stdout) if h["queue_id"] == entry["queue_id"]]
    assert mine["rule"] == "lookalike"
    assert "looks like our domain samen-veilig.nl" in mine["reason"]
    assert (mine["status"], mine["mta"]) == ("held", lab.mta)
    shown = lab.quarantine("show", str(entry["queue_id"]), "--message", "--postfix-config",
                           str(lab.postfix.config))
    assert "rule:    lookalike" in shown.stdout
    assert "X-Postwacht-Quarantine: rule=lookalike" in shown.stdout
    assert m not in shown.stdout.split("Subject")[-1].split("\n", 1)[-1]  # no body by default
    assert lab.sink.with_marker(m) == []
    with lab.records() as store:
        viewed = [e for e in store.audit_entries() if e.action == "viewed"]
        # Review, which may not read the policy file, sees what this MTA runs.
        [report] = poll(lambda: store.published("policy"), "the daemon's policy report")
        assert (report.mta, json.loads(report.body)["checksum"]) == (
            lab.mta, load(lab.daemon.policy).checksum)
    assert [(e.queue_id, e.detail) for e in viewed][-1:] == [
        (entry["queue_id"], "headers (postcat)")]  # reading a held message is audited


def test_ordinary_outbound_mail_is_delivered(lab: Lab) -> None:
    m = marker()
    assert lab.postfix.submit(SENDER, [f"a-{m}@example.org", f"b-{m}@samen-veilig.nl"], m) == {}
    [delivered] = poll(lambda: lab.sink.with_marker(m), "delivery to the sink")
    assert sorted(delivered.recipients) == [f"a-{m}@example.org", f"b-{m}@samen-veilig.nl"]


def test_mail_from_a_sender_that_is_not_internal_passes_the_milter_untouched(lab: Lab) -> None:
    m = marker()
    refused = lab.postfix.submit("someone@example.net", [f"x-{m}@samen-veiIig.nl"], m,
                                 port=lab.postfix.inbound_port)
    assert refused == {}
    [delivered] = poll(lambda: lab.sink.with_marker(m), "delivery to the sink")
    assert b"X-Postwacht" not in delivered.content


def test_the_transport_backstop_stops_retired_mail_whoever_sends_it(lab: Lab) -> None:
    m = marker()
    refused = lab.postfix.submit("someone@example.net", [f"old-{m}@bjzutrecht.nl"], m,
                                 port=lab.postfix.inbound_port)
    code, text = refused[f"old-{m}@bjzutrecht.nl"]
    assert code == 550
    assert b"bjzutrecht.nl was given up" in text


def test_sendmail_to_a_retired_address_is_held_and_never_reaches_the_sink(lab: Lab) -> None:
    m = marker()
    recipient = f"dossier-{m}@bjzutrecht.nl"
    lab.postfix.sendmail(SENDER, [recipient, f"ok-{m}@example.org"], m)
    entry = held_for(lab, recipient)
    listing = json.loads(lab.quarantine("list", "--json").stdout)
    [mine] = [h for h in listing if h["queue_id"] == entry["queue_id"]]
    assert mine["rule"] == "retired"
    assert lab.sink.with_marker(m) == []


def test_release_delivers_and_delete_removes_and_both_are_audited(lab: Lab) -> None:
    keep, drop = marker(), marker()
    lab.postfix.submit(SENDER, [f"k-{keep}@samen-vei1ig.nl"], keep)
    lab.postfix.submit(SENDER, [f"d-{drop}@samen-vei1ig.nl"], drop)
    kept = held_for(lab, f"k-{keep}@samen-vei1ig.nl")["queue_id"]
    dropped = held_for(lab, f"d-{drop}@samen-vei1ig.nl")["queue_id"]

    released = lab.quarantine("release", str(kept), "--reason", "checked with sender",
                              "--actor", "privacy-officer")
    assert released.returncode == 0, released.stderr
    poll(lambda: lab.sink.with_marker(keep), "the released message at the sink")

    deleted = lab.quarantine("delete", str(dropped), "--reason", "typo", "--actor", "po")
    assert deleted.returncode == 0, deleted.stderr
    assert all(e["queue_id"] != dropped for e in lab.postfix.queue())
    assert lab.sink.with_marker(drop) == []

    audit = lab.quarantine("audit").stdout
    assert f"privacy-officer released {kept} on {lab.mta} 'checked with sender'" in audit
    assert f"po deleted {dropped} on {lab.mta} 'typo'" in audit
    [delivered] = lab.sink.with_marker(keep)
    assert b"X-Postwacht" not in delivered.content


def test_mail_for_a_retired_domain_is_never_released(lab: Lab) -> None:
    m = marker()
    recipient = f"r-{m}@bjzutrecht.nl"
    lab.postfix.sendmail(SENDER, [recipient], m)
    queue_id = str(held_for(lab, recipient)["queue_id"])
    for force in ([], ["--force"]):
        refused = lab.quarantine("release", queue_id, *force, "--reason", "bought back")
        assert refused.returncode == 1
        assert "retired domain bjzutrecht.nl" in refused.stderr
        assert "would bounce it anyway" in refused.stderr
    assert "released" not in refused.stdout
    assert any(e["queue_id"] == queue_id for e in lab.postfix.held())
    deleted = lab.quarantine("delete", queue_id, "--reason", "old address")
    assert deleted.returncode == 0, deleted.stderr


def test_a_message_removed_behind_postwachts_back_is_listed_as_gone_until_dismissed(
    lab: Lab,
) -> None:
    m = marker()
    lab.postfix.submit(SENDER, [f"gone-{m}@samen-vei1ig.nl"], m)
    gone = str(held_for(lab, f"gone-{m}@samen-vei1ig.nl")["queue_id"])
    lab.postfix.postsuper("-d", gone, "hold")

    def listed() -> dict[str, object] | None:
        return next((h for h in json.loads(lab.quarantine("list", "--json").stdout)
                     if h["queue_id"] == gone and h["status"] == "gone"), None)

    entry = poll(listed, "the record closed as gone")
    assert "left the hold queue outside Postwacht" in str(entry["note"])
    refused = lab.quarantine("release", gone, "--reason", "x")
    assert refused.returncode == 1
    assert "gone, not held" in refused.stderr
    dismissed = lab.quarantine("dismiss", gone, "--reason", "the postmaster deleted it")
    assert dismissed.returncode == 0, dismissed.stderr
    assert listed() is None


def test_review_of_an_unknown_queue_id_fails_clearly(lab: Lab) -> None:
    result = lab.quarantine("delete", "ABCDEF123", "--reason", "x")
    assert result.returncode == 1
    assert "no held message ABCDEF123" in result.stderr


def test_with_the_filter_stopped_postfix_tempfails_and_nothing_leaves(lab: Lab) -> None:
    m = marker()
    assert lab.daemon.stop() == 0
    try:
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            lab.postfix.submit(SENDER, [f"x-{m}@example.org"], m)
        assert refused.value.smtp_code in (421, 451)
    finally:
        lab.daemon.start()
    assert all(m not in json.dumps(e) for e in lab.postfix.queue())
    assert lab.sink.with_marker(m) == []
    poll(lambda: port_open(lab.daemon.milter_port), "the milter to be back")


def test_broken_policy_keeps_the_old_one_and_a_fixed_one_is_picked_up(lab: Lab) -> None:
    policy = lab.daemon.policy
    original = policy.read_text()
    state = str(lab.daemon.state)
    before = json.loads(lab.daemon.cli("status", "--state", state, "--json").stdout)
    invalid = 'postwacht_policy_reloads_total{result="invalid"}'
    invalid_before = lab.daemon.metric(invalid)
    try:
        policy.write_text(original.replace("organisation:", "organisaton:"))
        poll(lambda: "policy reload rejected" in lab.daemon.log_text(), "the reload to fail")
        reload = lab.daemon.cli("reload", "--state", state)
        assert reload.returncode == 1
        assert "unknown key 'organisaton' (did you mean 'organisation'?)" in reload.stderr
        assert lab.daemon.metric(invalid) >= invalid_before + 2  # the watcher's and ours
        m = marker()
        refused = lab.postfix.submit(SENDER, [f"still-{m}@bjzutrecht.nl"], m)
        assert refused[f"still-{m}@bjzutrecht.nl"][0] == 550

        write_test_policy(policy, retired_domains=[
            {"domain": "bjzutrecht.nl", "successor": "samen-veilig.nl"},
            {"domain": "oud-team.nl", "since": "2020-01-01"},
        ])

        def reloaded() -> bool:
            out = lab.daemon.cli("status", "--state", state, "--json").stdout
            return bool(json.loads(out)["checksum"] != before["checksum"])

        poll(reloaded, "the fixed policy to be loaded")
        m = marker()
        refused = lab.postfix.submit(SENDER, [f"x-{m}@oud-team.nl"], m)
        assert refused[f"x-{m}@oud-team.nl"][0] == 550
    finally:
        policy.write_text(original)
        poll(lambda: json.loads(lab.daemon.cli("status", "--state", state, "--json").stdout)
             ["checksum"] == before["checksum"], "the original policy to be back")
