"""Sending notices: sendmail(1) as a program is run (here a script that keeps what it is
given, in place of Postfix's), and the notifier's thread over a real SQLite records
store: the milter never waits, a full queue drops, one digest per period across daemons."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postwacht.app import NoticeRecords, held_of
from postwacht.config.compiler import load
from postwacht.core.decide import RecipientVerdict
from postwacht.core.policy import Policy
from postwacht.core.roles import Role
from postwacht.core.vocabulary import Action, Rule
from postwacht.notices.compose import Outgoing
from postwacht.notices.notifier import Notifier
from postwacht.notices.sendmail import Sendmail, SendmailError
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import AuditAction, Hold, QuarantineRecord
from postwacht.telemetry import ErrorKind, NoTelemetry

from tests.conftest import EXAMPLE_POLICY
from tests.labs.util import poll

LOOKALIKE = RecipientVerdict("x@samen-veiIig.nl", ("samen-veiiig.nl",), Action.QUARANTINE,
                             Rule.LOOKALIKE, "looks like ours", "samen-veilig.nl")


class Mailbox:
    """A sendmail(1) stand-in: a script that writes its arguments and input to files."""

    def __init__(self, root: Path, status: int = 0) -> None:
        self.root = root
        root.mkdir()
        self.command = root / "sendmail"
        self.command.write_text(f"""#!/bin/sh
n=$(mktemp -p {root} mail.XXXXXX)
printf '%s\\n' "$@" > "$n.args"
cat > "$n.eml"
echo "said on stderr" >&2
exit {status}
""")
        self.command.chmod(0o755)

    def sent(self) -> list[tuple[list[str], email.message.EmailMessage]]:
        found = []
        for args in sorted(self.root.glob("*.args")):
            message = email.message_from_bytes(args.with_suffix(".eml").read_bytes(),
                                               policy=email.policy.default)
            assert isinstance(message, email.message.EmailMessage)
            found.append((args.read_text().splitlines(), message))
        return found

    def to(self, recipient: str) -> list[email.message.EmailMessage]:
        return [m for args, m in self.sent() if args[-1] == recipient]


def policy_with(write_policy: Callable[[str], Path], digest: str = "immediately") -> Policy:
    return load(write_policy(EXAMPLE_POLICY.read_text() + f"""
notices:
  from: postwacht@samen-veilig.nl
  review_url: https://review.samen-veilig.nl/
  digest: {digest}
"""))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRecords]:
    records = SqliteRecords(tmp_path / "state")
    yield records
    records.close()


def hold(store: SqliteRecords, sender: str = "jan@samen-veilig.nl") -> QuarantineRecord:
    return store.record_quarantine(Hold(store.mta, "ABCDEF12", uuid.uuid4().hex, sender,
                                        (LOOKALIKE,), Rule.LOOKALIKE, "looks like ours", "c"))


def test_sendmail_gets_the_envelope_after_its_options(tmp_path: Path) -> None:
    box = Mailbox(tmp_path / "box")
    Sendmail(str(box.command), "/etc/postfix-lab").send(
        Outgoing("postwacht@samen-veilig.nl", "-jan@samen-veilig.nl",
                 b"Subject: x\n\nbody\n"))
    [(args, message)] = box.sent()
    assert args == ["-C", "/etc/postfix-lab", "-i", "-f", "postwacht@samen-veilig.nl", "--",
                    "-jan@samen-veilig.nl"]
    assert message.get_content() == "body\n"


def test_a_sendmail_that_fails_is_an_error_naming_its_status_and_words(tmp_path: Path) -> None:
    box = Mailbox(tmp_path / "box", status=75)
    with pytest.raises(SendmailError, match="exited with status 75: said on stderr"):
        Sendmail(str(box.command)).send(Outgoing("a@b.example", "c@b.example", b"\n"))
    with pytest.raises(SendmailError, match="cannot run /nonexistent/sendmail"):
        Sendmail("/nonexistent/sendmail").send(Outgoing("a@b.example", "c@b.example", b"\n"))


def test_a_sendmail_that_hangs_is_given_up_on(tmp_path: Path) -> None:
    hangs = tmp_path / "hangs"
    hangs.write_text("#!/bin/sh\nexec tail -f /dev/null\n")
    hangs.chmod(0o755)
    with pytest.raises(SendmailError, match=r"took longer than 0\.3 s"):
        Sendmail(str(hangs), timeout=0.3).send(Outgoing("a@b.example", "c@b.example", b"\n"))


def test_a_sendmail_that_hangs_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    """postdrop, started by sendmail, retries a maildrop it cannot write for ever."""
    child = tmp_path / "child.pid"
    hangs = tmp_path / "hangs"
    hangs.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {child}\nwait\n")
    hangs.chmod(0o755)
    with pytest.raises(SendmailError, match="took longer than"):
        Sendmail(str(hangs), timeout=0.5).send(Outgoing("a@b.example", "c@b.example", b"\n"))
    pid = int(child.read_text())
    poll(lambda: stopped(pid), "the child stopped")


def stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_a_held_messages_sender_is_told_and_the_notice_audited(
        tmp_path: Path, write_policy: Callable[[str], Path], store: SqliteRecords) -> None:
    policy = policy_with(write_policy, digest="off")
    box = Mailbox(tmp_path / "box")
    notifier = Notifier(lambda: policy, NoticeRecords(store), Sendmail(str(box.command)),
                        tick=0.05)
    record = hold(store)
    notifier.start()
    try:
        assert notifier.held(held_of(record))
        [notice] = poll(lambda: box.to("jan@samen-veilig.nl"), "the sender notice")
        entries = poll(lambda: store.audit_search(action=AuditAction.SENDER_NOTIFIED),
                       "the audit entry")
    finally:
        notifier.stop()
    assert f"https://review.samen-veilig.nl/held/{record.record_id}" in notice.get_content()
    assert [(e.actor, e.record_id, e.detail) for e in entries] == [
        ("postwacht", record.record_id, "to samen-veilig.nl")]


def test_a_full_queue_drops_the_notice_at_once(
        tmp_path: Path, write_policy: Callable[[str], Path], store: SqliteRecords) -> None:
    policy = policy_with(write_policy)
    box = Mailbox(tmp_path / "box")
    counted = Counted()
    notifier = Notifier(lambda: policy, NoticeRecords(store), Sendmail(str(box.command)),
                        queue_size=1, telemetry=counted)  # not started: nobody takes
    record = held_of(hold(store))
    assert notifier.held(record)
    assert not notifier.held(record)
    assert notifier.dropped == 1
    assert counted.errors == [ErrorKind.NOTICE]  # operations see who was not told


class Counted(NoTelemetry):
    def __init__(self) -> None:
        self.errors: list[ErrorKind] = []

    def error(self, kind: ErrorKind) -> None:
        self.errors.append(kind)


def test_a_notice_that_cannot_be_made_is_counted_and_the_next_one_still_goes(
        tmp_path: Path, write_policy: Callable[[str], Path], store: SqliteRecords) -> None:
    policy = policy_with(write_policy, digest="off")
    box = Mailbox(tmp_path / "box")
    counted = Counted()
    notifier = Notifier(lambda: policy, NoticeRecords(store), Sendmail(str(box.command)),
                        tick=0.05, telemetry=counted)
    good = held_of(hold(store))
    notifier.start()
    try:
        notifier.held(None)  # type: ignore[arg-type]  # a notice nothing can be made of
        notifier.held(good)
        poll(lambda: box.to("jan@samen-veilig.nl"), "the next sender notice")
    finally:
        notifier.stop()
    assert counted.errors == [ErrorKind.NOTICE]


def test_without_notices_in_the_policy_nothing_is_queued(
        tmp_path: Path, store: SqliteRecords) -> None:
    policy = load(EXAMPLE_POLICY)
    notifier = Notifier(lambda: policy, NoticeRecords(store),
                        Sendmail(str(tmp_path / "none")), queue_size=1)
    record = held_of(hold(store))
    assert notifier.held(record)
    assert notifier.held(record)
    assert notifier.dropped == 0


def test_one_digest_per_minute_reaches_each_reviewer_in_an_owned_domain(
        tmp_path: Path, write_policy: Callable[[str], Path], store: SqliteRecords) -> None:
    """Two daemons on one store: the first claim of a period sends it, the other not."""
    policy = policy_with(write_policy)
    store.add_user("anna", Role.REVIEWER, "anna@samen-veilig.nl", "", "admin")
    store.add_user("bert", Role.VIEWER, "bert@samen-veilig.nl", "", "admin")
    store.add_user("carla", Role.ADMIN, "carla@example.org", "", "admin")
    store.add_user("dirk", Role.APPROVER, "", "", "admin")
    boxes = [Mailbox(tmp_path / "one"), Mailbox(tmp_path / "two")]
    minute = dt.datetime(2026, 3, 2, 9, 15, tzinfo=dt.UTC)
    notifiers = [Notifier(lambda: policy, NoticeRecords(store), Sendmail(str(box.command)),
                          tick=0.05, clock=lambda: minute, batch=0.1) for box in boxes]
    record = hold(store, sender="<>")  # nobody to tell: only the digest goes out
    for notifier in notifiers:
        notifier.start()
    try:
        for notifier in notifiers:
            notifier.held(held_of(record))
        poll(lambda: all(n.last_period == "digest:minute:2026-03-02T09:15"
                         for n in notifiers), "both daemons past the minute")
    finally:
        for notifier in notifiers:
            notifier.stop()
    sent = [args for box in boxes for args, _ in box.sent()]
    assert [args[-1] for args in sent] == ["anna@samen-veilig.nl"]
    [message] = [m for box in boxes for m in box.to("anna@samen-veilig.nl")]
    assert f"/held/{record.record_id}" in message.get_content()


def test_a_held_notice_of_ours_tells_nobody_and_starts_no_digest(
        tmp_path: Path, write_policy: Callable[[str], Path], store: SqliteRecords) -> None:
    """A notice held itself (its recipient's domain in doubt) must not breed another."""
    policy = policy_with(write_policy)  # digest: immediately
    store.add_user("anna", Role.REVIEWER, "anna@samen-veilig.nl", "", "admin")
    box = Mailbox(tmp_path / "box")
    counted = Counted()
    notifier = Notifier(lambda: policy, NoticeRecords(store), Sendmail(str(box.command)),
                        tick=0.01, batch=0.0, telemetry=counted)
    own = held_of(hold(store, sender="postwacht@samen-veilig.nl"))
    notifier._after_hold(own)  # what the notices thread does with it
    notifier._digest_if_due()
    assert box.sent() == []
    assert notifier.last_period == ""  # no digest was even claimed
    assert counted.errors == []
