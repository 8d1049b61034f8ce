"""Faults in the records, with a real Postfix and the real daemon: a local user on the
milter port forging records and log lines, a records file deleted or damaged while the
daemon runs, a Latin-1 sender from sendmail(1), and review commands fed bad input."""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from miltertest import constants as C  # noqa: N812
from postwacht.records.sqlite import DB_NAME

from tests.integration.conftest import (
    POSTWACHT,
    Lab,
    held_for,
    running_lab,
)
from tests.integration.test_milter_protocol import Session

SENDER = "medewerker@samen-veilig.nl"
HOLD = [C.SMFIR_ADDHEADER, C.SMFIR_QUARANTINE, C.SMFIR_ACCEPT]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """Started the way the README starts it by hand (as root, umask 022); no DNS lab:
    nothing here needs the secure-transport rule."""
    with running_lab("postwacht-faults-", umask=0o022) as started:
        yield started


def marker() -> str:
    return uuid.uuid4().hex[:12]


def hold_retired(lab: Lab) -> str:
    """A message from sendmail(1) to a retired domain, held by Postfix: its queue id."""
    m = marker()
    lab.postfix.sendmail(SENDER, [f"r-{m}@bjzutrecht.nl"], m)
    return str(held_for(lab, f"r-{m}@bjzutrecht.nl")["queue_id"])


def attacker(lab: Lab, sender: str = f"<{SENDER}>") -> Session:
    """A local process on the milter port, claiming to be smtpd with a client."""
    session = Session(lab.daemon.milter_port)
    session.connect(port=40999)
    session.mail(sender)
    return session


def listed(lab: Lab) -> dict[str, dict[str, object]]:
    result = lab.quarantine("list", "--json")
    assert result.returncode == 0, result.stderr
    return {h["queue_id"]: h for h in json.loads(result.stdout)}


def test_a_forged_record_under_a_held_queue_id_does_not_lift_the_retired_hold(
    lab: Lab,
) -> None:
    queue_id = hold_retired(lab)
    forger = attacker(lab)
    assert forger.rcpt("<x@samen-veiIig.nl>")[0] == C.SMFIR_CONTINUE
    assert [r[0] for r in forger.eom(queue_id)] == HOLD  # a second record, not a new one

    mine = [h for h in json.loads(lab.quarantine("list", "--json").stdout)
            if h["queue_id"] == queue_id]
    assert sorted(h["rule"] for h in mine) == ["lookalike", "retired"]
    assert all("2 records claim queue id" in h["note"] for h in mine)
    ambiguous = lab.quarantine("release", queue_id, "--reason", "checked")
    assert ambiguous.returncode == 1
    assert "2 records claim queue id" in ambiguous.stderr
    [real] = [h["record"] for h in mine if h["rule"] == "retired"]
    [forged] = [h["record"] for h in mine if h["rule"] == "lookalike"]
    refused = lab.quarantine("release", f"#{real}", "--override", "--reason", "checked")
    assert refused.returncode == 1
    assert "retired domain bjzutrecht.nl" in refused.stderr
    # The forged record asks for an ordinary release: the release helper finds that the
    # held message does not carry the forged record's key, and does nothing.
    lifted = lab.quarantine("release", f"#{forged}", "--reason", "looks fine")
    assert lifted.returncode == 1
    assert "is not the one this record is about" in lifted.stderr
    assert any(e["queue_id"] == queue_id for e in lab.postfix.held())
    assert "client:  smtp from 127.0.0.1" in lab.quarantine("show", f"#{forged}").stdout
    assert "client:  sendmail(1) on the MTA host" in lab.quarantine("show", f"#{real}").stdout
    lab.postfix.postsuper("-d", queue_id, "hold")


def test_a_queue_id_with_a_line_break_is_refused_and_forges_no_log_line(lab: Lab) -> None:
    counted = 'postwacht_errors_total{kind="bad-queue-id"}'
    before = lab.daemon.metric(counted)
    assert before is not None
    forged = "2030-01-01 00:00:00,000 INFO postwacht.milter: id=FORGED action=accept"
    session = attacker(lab)
    assert session.rcpt("<x@samen-veiIig.nl>")[0] == C.SMFIR_CONTINUE
    [reply] = session.eom("ABC123\n" + forged)
    assert reply[0] == C.SMFIR_REPLYCODE
    assert reply[1]["smtpcode"] == "451"
    log = lab.daemon.logged("queue id 'ABC123\\n2030-01-01")
    assert not any(line.startswith(forged) for line in log.splitlines())
    assert lab.daemon.metric(counted) == before + 1
    assert "FORGED" not in json.dumps(listed(lab))


def test_planted_report_rows_and_record_text_are_escaped_for_the_terminal(lab: Lab) -> None:
    planted = "<\x1b]0;owned\x07\x1b[2Jboss@samen-veilig.nl>"
    session = attacker(lab, sender=planted)
    assert session.rcpt("<old@bjzutrecht.nl>")[0] == C.SMFIR_REPLYCODE  # refused, counted
    assert session.rcpt("<x@samen-veiIig.nl>")[0] == C.SMFIR_CONTINUE
    assert [r[0] for r in session.eom("ABC124")] == HOLD

    report = lab.daemon.cli("report", "retired", "--state", str(lab.daemon.state))
    listing = lab.quarantine("list")
    shown = lab.quarantine("show", "ABC124")  # a record only: postcat finds nothing
    for out in (report.stdout, listing.stdout, shown.stdout + shown.stderr):
        assert "\x1b" not in out
        assert "\x07" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2Jboss@samen-veilig.nl via smtp from 127.0.0.1" in (
        report.stdout)
    assert "from \\x1b]0;owned" in listing.stdout


def test_a_latin1_sender_from_sendmail_is_decided_and_recorded(lab: Lab) -> None:
    m = marker()
    recipient = f"r-{m}@bjzutrecht.nl"
    message = f"From: x\nSubject: {m}\n\n{m}\n".encode()
    subprocess.run(["sendmail", "-C", str(lab.postfix.config), "-f",
                    b"caf\xe9@samen-veilig.nl", recipient],
                   input=message, check=True, timeout=30)
    queue_id = str(held_for(lab, recipient)["queue_id"])
    mine = listed(lab)[queue_id]
    assert mine["rule"] == "retired"
    shown = lab.quarantine("show", queue_id).stdout
    assert "sender:  caf\\xe9@samen-veilig.nl" in shown
    assert not [e for e in lab.postfix.queue() if e["queue_name"] == "maildrop"]
    assert "Traceback" not in lab.daemon.log_text()
    lab.postfix.postsuper("-d", queue_id, "hold")


def test_records_are_private_on_disk_after_a_manual_start(lab: Lab) -> None:
    state = lab.daemon.state
    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    files = [state / (DB_NAME + s) for s in ("", "-wal", "-shm")]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_a_bad_actor_is_refused_and_nothing_is_released(lab: Lab) -> None:
    queue_id = hold_retired(lab)
    for actor in ("\x1b[31mroot", "po\n2030-01-01 admin release", "x" * 65):
        result = lab.quarantine("release", queue_id, "--force", "--reason", "x",
                                "--actor", actor)
        assert result.returncode == 2
        assert "an actor is a login name or an address" in result.stderr
        assert "\x1b" not in result.stderr
    assert any(e["queue_id"] == queue_id for e in lab.postfix.held())
    lab.postfix.postsuper("-d", queue_id, "hold")


def test_a_queue_id_like_an_option_never_reaches_postfix_commands(
    lab: Lab, tmp_path: Path,
) -> None:
    calls = tmp_path / "calls"
    for command in ("postcat", "postsuper", "postqueue"):
        shim = tmp_path / command
        shim.write_text(f'#!/bin/sh\necho "{command} $*" >> {calls}\n'
                        f'exec {shutil.which(command)} "$@"\n')
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def review(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTWACHT, "quarantine", "--state", str(lab.daemon.state), *args], env=env,
            capture_output=True, text=True, timeout=60, check=False)

    for args in (("show", "--", "-x"), ("show", "--", "-b"), ("delete", "ALL", "--reason", "x"),
                 ("release", "--force", "--reason", "x", "--", "-"), ("show", "ABC\n-x")):
        result = review(*args)
        assert result.returncode == 1, args
        assert "nor a Postfix queue id" in result.stderr
    assert not calls.exists()

    queue_id = hold_retired(lab)
    shown = review("show", queue_id, "--message", "--postfix-config", str(lab.postfix.config))
    assert shown.returncode == 0, shown.stderr
    assert f"postcat -c {lab.postfix.config} -e -h -q -- {queue_id}" in calls.read_text()
    lab.postfix.postsuper("-d", queue_id, "hold")


def _lose_the_store(lab: Lab, how: str) -> None:
    path = lab.daemon.state / DB_NAME
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink()
    else:
        with path.open("r+b") as f:
            f.write(os.urandom(path.stat().st_size))


def _restart_on_a_fresh_store(lab: Lab) -> None:
    assert lab.daemon.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        Path(f"{lab.daemon.state / DB_NAME}{suffix}").unlink(missing_ok=True)
    lab.daemon.start()


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
def test_a_lost_store_tempfails_the_next_hold_and_a_message_held_before_stays_held(
    lab: Lab, how: str,
) -> None:
    queue_id = hold_retired(lab)
    assert lab.daemon.metric("postwacht_records_ok", absent=None) == 1
    _lose_the_store(lab, how)
    m = marker()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        lab.postfix.submit(SENDER, [f"x-{m}@samen-veiIig.nl"], m)
    assert refused.value.smtp_code == 451
    assert b"could not be recorded" in refused.value.smtp_error
    assert lab.daemon.metric("postwacht_records_ok", absent=None) == 0
    lab.daemon.logged("records store lost")
    assert not [e for e in lab.postfix.queue() if m in json.dumps(e)]

    _restart_on_a_fresh_store(lab)
    assert lab.daemon.metric("postwacht_records_ok", absent=None) == 1
    # The message held before the loss has no record now: review cannot act on it, and
    # it stays held (never released unrecorded) for the postmaster.
    refused_release = lab.quarantine("release", queue_id, "--reason", "checked")
    assert refused_release.returncode == 1
    assert f"no held message {queue_id}" in refused_release.stderr
    assert any(e["queue_id"] == queue_id for e in lab.postfix.held())
    lab.postfix.postsuper("-d", queue_id, "hold")
