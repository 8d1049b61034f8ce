"""The milter protocol, driven by a real milter client: exact replies and header changes."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from miltertest import MilterConnection, constants
from postwacht.records.sqlite import DB_NAME, SqliteRecords

from tests.integration.conftest import Daemon, write_test_policy
from tests.labs.util import free_port

C = constants
FINAL = {C.SMFIR_ACCEPT, C.SMFIR_REJECT, C.SMFIR_TEMPFAIL, C.SMFIR_REPLYCODE, C.SMFIR_DISCARD}


def _daemon(**policy: Any) -> Iterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="postwacht-protocol-"))
    write_test_policy(root / "policy.yaml", **policy)
    daemon = Daemon(root, root / "policy.yaml")
    daemon.start()
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0
        assert "Traceback" not in daemon.log_text()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    yield from _daemon()


@pytest.fixture(scope="module")
def bouncing_daemon() -> Iterator[Daemon]:
    yield from _daemon(local_submissions={"on_reject": "bounce"})


class Session:
    """One MTA-side milter conversation, the way Postfix 3.7 conducts it."""

    def __init__(self, port: int) -> None:
        self.conn = MilterConnection(socket.create_connection(("127.0.0.1", port), timeout=30))
        self.actions, self.protocol = self.conn.optneg_mta()

    def _send(self, cmd: str, no_reply_flag: int, **args: Any) -> Any:
        if self.protocol & no_reply_flag:
            self.conn._send(cmd, **args)
            return None
        return self.conn.recv()

    def connect(self, port: int, daemon_name: str = "ORIGINATING") -> None:
        self.conn.send_macro(C.SMFIC_CONNECT, **{"{daemon_name}": daemon_name, "j": "mta"})
        self._send(C.SMFIC_CONNECT, C.SMFIP_NR_CONN, hostname="localhost", family="4",
                   port=port, address="127.0.0.1")

    def mail(self, sender: str, queue_id: str = "") -> None:
        self.conn.send_macro(C.SMFIC_MAIL, i=queue_id)
        self._send(C.SMFIC_MAIL, C.SMFIP_NR_MAIL, args=[sender])

    def rcpt(self, recipient: str) -> Any:
        return self.conn.send_get(C.SMFIC_RCPT, args=[recipient])

    def eom(self, queue_id: str) -> list[Any]:
        self.conn.send_macro(C.SMFIC_BODYEOB, i=queue_id)
        self.conn._send(C.SMFIC_BODYEOB)
        replies = []
        while True:
            reply = self.conn.recv()
            replies.append(reply)
            if reply[0] in FINAL:
                return replies


def outbound(daemon: Daemon, port: int) -> Session:
    """A session from an internal sender over smtpd, up to MAIL FROM."""
    session = Session(daemon.milter_port)
    session.connect(port=port)
    session.mail("<medewerker@samen-veilig.nl>")
    return session


def refusal(reply: Any) -> tuple[str, str]:
    code, fields = reply
    assert code == C.SMFIR_REPLYCODE
    return fields["smtpcode"], fields["text"].split(" ")[0]


def test_only_envelope_stages_are_negotiated_and_connect_and_mail_need_no_reply(
    daemon: Daemon,
) -> None:
    session = Session(daemon.milter_port)
    for skipped in (C.SMFIP_NOHELO, C.SMFIP_NOHDRS, C.SMFIP_NOEOH, C.SMFIP_NOBODY,
                    C.SMFIP_NODATA, C.SMFIP_NOUNKNOWN):
        assert session.protocol & skipped, hex(skipped)
    assert session.protocol & C.SMFIP_NR_CONN
    assert session.protocol & C.SMFIP_NR_MAIL
    assert not session.protocol & C.SMFIP_NORCPT
    assert session.actions & C.SMFIF_ADDHDRS
    assert session.actions & C.SMFIF_QUARANTINE


def test_smtpd_rejects_one_recipient_and_holds_a_lookalike_with_a_header(
    daemon: Daemon,
) -> None:
    session = outbound(daemon, 40123)
    reply = session.rcpt("<dossier@bjzutrecht.nl>")
    assert refusal(reply) == ("550", "5.7.1")
    assert "send to dossier@samen-veilig.nl instead" in reply[1]["text"]
    assert session.rcpt("<ok@example.org>")[0] == C.SMFIR_CONTINUE
    assert session.rcpt("<x@samen-veiIig.nl>")[0] == C.SMFIR_CONTINUE

    replies = session.eom("FEED01")
    assert [r[0] for r in replies] == [C.SMFIR_ADDHEADER, C.SMFIR_QUARANTINE, C.SMFIR_ACCEPT]
    assert replies[0][1]["name"] == "X-Postwacht-Quarantine"
    assert replies[0][1]["value"].startswith("rule=lookalike; policy=")
    store = SqliteRecords(daemon.state)
    [record] = store.records_of("FEED01")
    store.close()
    assert record.rule == "lookalike"
    assert [r.address for r in record.recipients] == ["ok@example.org", "x@samen-veiiig.nl"]


def test_ordinary_mail_is_accepted_without_changes(daemon: Daemon) -> None:
    session = outbound(daemon, 40124)
    assert session.rcpt("<a@example.org>")[0] == C.SMFIR_CONTINUE
    assert [r[0] for r in session.eom("FEED02")] == [C.SMFIR_ACCEPT]


def test_sendmail_submission_is_never_refused_at_rcpt_but_held_at_end(daemon: Daemon) -> None:
    session = Session(daemon.milter_port)
    session.connect(port=0, daemon_name="mta.postwacht.test")  # Postfix's pickup stand-in
    session.mail("<cron@samen-veilig.nl>", queue_id="FEED03")
    assert session.rcpt("<dossier@bjzutrecht.nl>")[0] == C.SMFIR_CONTINUE
    assert session.rcpt("<ok@example.org>")[0] == C.SMFIR_CONTINUE
    replies = session.eom("FEED03")
    assert [r[0] for r in replies] == [C.SMFIR_ADDHEADER, C.SMFIR_QUARANTINE, C.SMFIR_ACCEPT]
    assert replies[0][1]["value"].startswith("rule=retired;")


def test_sendmail_submission_can_be_bounced_by_policy(bouncing_daemon: Daemon) -> None:
    session = Session(bouncing_daemon.milter_port)
    session.connect(port=0, daemon_name="mta.postwacht.test")
    session.mail("<cron@samen-veilig.nl>", queue_id="FEED05")
    assert session.rcpt("<dossier@bjzutrecht.nl>")[0] == C.SMFIR_CONTINUE
    [reply] = session.eom("FEED05")
    assert refusal(reply) == ("550", "5.7.1")
    assert "bjzutrecht.nl was given up" in reply[1]["text"]


def test_unparseable_recipient_is_refused_with_the_reason(daemon: Daemon) -> None:
    session = outbound(daemon, 40126)
    reply = session.rcpt("<x@exa mple.nl>")
    assert refusal(reply) == ("550", "5.1.3")
    assert "not a valid domain name" in reply[1]["text"]


def test_a_quarantine_that_cannot_be_recorded_is_tempfailed(daemon: Daemon) -> None:
    blocker = sqlite3.connect(daemon.state / DB_NAME, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        session = outbound(daemon, 40125)
        assert session.rcpt("<x@samen-veiIig.nl>")[0] == C.SMFIR_CONTINUE
        replies = session.eom("FEED04")
    finally:
        blocker.rollback()
        blocker.close()
    assert [r[0] for r in replies] == [C.SMFIR_REPLYCODE]
    assert replies[0][1]["smtpcode"] == "451"
    assert "could not be recorded" in replies[0][1]["text"]
    daemon.logged("tempfailing instead of holding unrecorded")


def test_an_unreadable_sendmail_recipient_holds_the_message_and_counts_as_held(
    daemon: Daemon,
) -> None:
    def sample(labels: str) -> float:
        value = daemon.metric(f"postwacht_{labels}")
        assert value is not None
        return value

    held_rcpt = 'recipients_total{action="quarantine",rule="bad-address"}'
    refused_rcpt = 'recipients_total{action="reject",rule="bad-address"}'
    held_msg = 'messages_total{action="quarantine"}'
    before = [sample(held_rcpt), sample(refused_rcpt), sample(held_msg)]
    session = Session(daemon.milter_port)
    session.connect(port=0, daemon_name="mta.postwacht.test")
    session.mail("<cron@samen-veilig.nl>", queue_id="FEED06")
    assert session.rcpt("<x@exa mple.nl>")[0] == C.SMFIR_CONTINUE
    assert session.rcpt("<ok@example.org>")[0] == C.SMFIR_CONTINUE
    replies = session.eom("FEED06")
    assert [r[0] for r in replies] == [C.SMFIR_ADDHEADER, C.SMFIR_QUARANTINE, C.SMFIR_ACCEPT]
    assert replies[0][1]["value"].startswith("rule=bad-address;")
    after = [sample(held_rcpt), sample(refused_rcpt), sample(held_msg)]
    # The recipient is held with its message, not refused; the hold is a held message.
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 0, 1]


def test_a_connection_opened_before_a_reload_treats_unseen_content_as_sensitive() -> None:
    root = Path(tempfile.mkdtemp(prefix="postwacht-protocol-"))
    policy = root / "policy.yaml"
    write_test_policy(policy)  # no content rules: the connection skips headers and body
    daemon = Daemon(root, policy)
    daemon.start()
    try:
        old = Session(daemon.milter_port)
        assert old.protocol & C.SMFIP_NOBODY
        write_test_policy(
            policy, sensitive={"default": "not-sensitive", "detectors": ["bsn"]},
            secure_transport={"otherwise": "quarantine"},
            dns={"resolvers": [f"127.0.0.1:{free_port()}"], "timeout": 0.3},
        )
        reloaded = daemon.cli("reload", "--state", str(daemon.state))
        assert reloaded.returncode == 0, reloaded.stderr
        assert not Session(daemon.milter_port).protocol & C.SMFIP_NOBODY  # new connections

        old.connect(port=40127)
        old.mail("<medewerker@samen-veilig.nl>")
        assert old.rcpt("<a@example.org>")[0] == C.SMFIR_CONTINUE
        [reply] = old.eom("FEED07")
        # Not sensitive by default, but the body this policy scans never came: it counts
        # as sensitive, needs verified TLS, and the dead resolver cannot vouch for it.
        assert refusal(reply) == ("451", "4.7.1")
        assert "content not seen on this connection" in reply[1]["text"]
    finally:
        assert daemon.stop() == 0
        shutil.rmtree(root, ignore_errors=True)


def test_a_recipient_postfix_refused_itself_is_reported_and_never_decided_again(
    daemon: Daemon,
) -> None:
    """With P_RCPT_REJ Postfix also tells of recipients smtpd refused (port 25 refuses a
    retired domain through the transport table): {rcpt_mailer} is "error" for those, and
    for a recipient accepted to the error transport too, which the filter must refuse."""
    assert Session(daemon.milter_port).protocol & C.SMFIP_RCPT_REJ
    session = Session(daemon.milter_port)
    session.connect(port=40126)
    session.mail("<rejtest@samen-veilig.nl>")
    session.conn.send_macro(C.SMFIC_RCPT, **{
        "{rcpt_mailer}": "error", "{rcpt_host}": "5.7.1",
        "{rcpt_addr}": "Recipient address rejected: gone"})
    assert session.rcpt("<refused@bjzutrecht.nl>")[0] == C.SMFIR_CONTINUE
    daemon.logged("recipients=bjzutrecht.nl refused_by=postfix")
    session.conn.send_macro(C.SMFIC_RCPT, **{
        "{rcpt_mailer}": "error", "{rcpt_host}": "5.7.1 gone",
        "{rcpt_addr}": "kept@bjzutrecht.nl"})
    assert refusal(session.rcpt("<kept@bjzutrecht.nl>")) == ("550", "5.7.1")
    report = daemon.cli("report", "retired", "--state", str(daemon.state)).stdout
    [line] = [line for line in report.splitlines() if "rejtest@" in line]
    assert line.split()[:2] == ["2", "bjzutrecht.nl"]
