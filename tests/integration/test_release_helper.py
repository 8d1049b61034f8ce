"""The release helper, as root, on a real Postfix: it carries out what the records store
says is pending for its MTA, on the message the record is about, and nothing else.

Messages are held the way the milter holds them (on hold, with an X-Postwacht-Quarantine
header that carries the record's key, and for a routed hold the FILTER of the secure
route and an X-Postwacht-Route header) by Postfix's own HOLD and FILTER actions, so that
each test chooses its record: one on another MTA, one whose key the message does not
carry. The helper runs as its own process on the records in SQLite, as in production,
with no more privilege than its systemd unit gives it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import re
import secrets
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from postwacht.adapters.milterd import quarantine_header
from postwacht.adapters.netstring import encode, read_netstring
from postwacht.adapters.releasehelper import (
    HelperResult,
    ReleaseHelperClient,
    ReleaseHelperError,
)
from postwacht.core.decide import RecipientVerdict
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.locate import open_records
from postwacht.records.queue import quarantine_key
from postwacht.records.store import (
    MIGRATED_KEY,
    Hold,
    QuarantineRecord,
    RecordStore,
    ReleaseMode,
    Review,
)

from tests.conftest import ROOT
from tests.integration.conftest import (
    POSTWACHT,
    Delivered,
    Ports,
    PostfixInstance,
    Sink,
    require_root,
)
from tests.labs.util import DEADLINE, poll

MTA = "mta-a"
SENDER = "sender@postwacht.test"
SOCKET_GROUP = "postfix"
"""A group that exists wherever Postfix is installed (production uses the daemon's)."""


class DeferOnceSink(Sink):
    """The outside world, answering 451 to the first RCPT of an address in `defer_once`
    and taking it the next time."""

    def __init__(self) -> None:
        super().__init__()
        self.defer_once: set[str] = set()
        self.deferred: list[str] = []

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.defer_once:
            self.defer_once.discard(address)
            self.deferred.append(address)
            return "451 4.3.0 try again later"
        return await super().handle_RCPT(server, session, envelope, address, options)

    def bounces(self, marker: str) -> list[Delivered]:
        """Delivery reports to the sender about the message with `marker`."""
        return [m for m in self.received(SENDER) if marker.encode() in m.content]


@dataclass
class HelperLab:
    root: Path
    postfix: PostfixInstance
    sink: DeferOnceSink
    route_sink: Sink
    store: RecordStore
    socket: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    client: ReleaseHelperClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = ReleaseHelperClient(self.socket, timeout=DEADLINE)

    @property
    def route(self) -> str:
        return f"relay:[127.0.0.1]:{self.route_sink.port}"

    def hold(self, local: str, *, rule: Rule = Rule.LOOKALIKE, routed: bool = False,
             header_key: str | None = None, forged_key_first: bool = False,
             migrated: bool = False) -> QuarantineRecord:
        """Send a message to `held-LOCAL@example.org` (or `held-route-...`), held as the
        milter holds it, and record it; the header carries `header_key` if given, else
        the record's own key (and with `forged_key_first` the record's key is in a header
        before it, as a sender could write one; `migrated`: held by a Postwacht from before
        keys, its record carried over by the schema migration)."""
        prefix = "held-route-" if routed else "held-"
        recipient = f"{prefix}{local}@example.org"
        verdict = RecipientVerdict(recipient, ("example.org",), Action.QUARANTINE, rule,
                                   f"test hold ({rule})")
        key = f"{MIGRATED_KEY}{secrets.randbelow(10**6)}" if migrated else secrets.token_hex(16)
        hold = Hold(MTA, "", key, SENDER, (verdict,), rule,
                    f"test hold ({rule})", "0123456789abcdef", client="127.0.0.1",
                    route=self.route if routed else None)
        shown = dataclasses.replace(hold, key=header_key or hold.key)
        headers = [f"From: <{SENDER}>", f"Subject: test {local}",
                   "X-Postwacht-Quarantine: " + (f"rule={rule}; policy=0123456789ab"
                                                 if migrated else quarantine_header(shown))]
        if forged_key_first:
            headers.insert(1, f"X-Postwacht-Quarantine: {quarantine_header(hold)}")
        if routed:
            headers.append(f"X-Postwacht-Route: {self.route}")
        message = "\r\n".join([*headers, "", f"marker {local}", ""])
        with smtplib.SMTP("127.0.0.1", self.postfix.inbound_port, timeout=30) as smtp:
            smtp.sendmail(SENDER, [recipient], message)
        queue_id = self.held_id(recipient)
        return self.store.record_quarantine(dataclasses.replace(hold, queue_id=queue_id))

    def held_id(self, recipient: str) -> str:
        entries = poll(lambda: [e for e in self.postfix.held()
                                if e["recipients"][0]["address"] == recipient],
                       f"a held message for {recipient}")
        assert len(entries) == 1
        return str(entries[0]["queue_id"])

    def still_held(self, queue_id: str) -> bool:
        return any(e["queue_id"] == queue_id for e in self.postfix.held())

    def request(self, record: QuarantineRecord, action: Review,
                mode: ReleaseMode = ReleaseMode.PLAIN) -> int:
        return self.store.request(record.record_id, action, mode, "privacy-officer",
                                  f"test {action}").request_id

    def ask(self, record: QuarantineRecord, action: Review,
            mode: ReleaseMode = ReleaseMode.PLAIN) -> HelperResult:
        return self.client.carry_out(self.request(record, action, mode))

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def as_the_unit_runs_it() -> list[str]:
    """setpriv with the systemd unit's CapabilityBoundingSet and NoNewPrivileges, so the
    tests show that Postfix's commands work within them."""
    unit = (ROOT / "deploy" / "systemd" / "postwacht-release.service").read_text()
    found = re.search(r"^CapabilityBoundingSet=(.+)$", unit, flags=re.MULTILINE)
    assert found is not None
    keep = ",".join("+" + c.removeprefix("CAP_").lower() for c in found.group(1).split())
    assert re.search(r"^NoNewPrivileges=yes$", unit, flags=re.MULTILINE)
    return ["setpriv", "--no-new-privs", "--inh-caps", "-all", "--bounding-set",
            f"-all,{keep}"]


@pytest.fixture(scope="module")
def helper_lab() -> Iterator[HelperLab]:
    require_root()
    root = Path(tempfile.mkdtemp(prefix="postwacht-helper-", dir="/tmp"))
    sink, route_sink = DeferOnceSink(), Sink()
    sink.start()
    route_sink.start()
    postfix = PostfixInstance(root, sink.port, Ports())
    postfix.setup()
    (root / "route").write_text(f"/^held-route-/ FILTER relay:[127.0.0.1]:{route_sink.port}\n")
    (root / "hold").write_text("/^held-/ HOLD\n")
    # No milter here: the held messages are made as the milter makes them (above).
    postfix.postconf(
        "-e", "smtpd_milters =", "non_smtpd_milters =", "transport_maps =",
        "smtp_tls_policy_maps =", "smtp_dns_support_level =",
        f"smtpd_recipient_restrictions = check_recipient_access regexp:{root}/route, "
        f"check_recipient_access regexp:{root}/hold, permit_mynetworks, reject")
    state = root / "state"
    store = open_records(None, state, create=True, mta=MTA)
    lab = HelperLab(root, postfix, sink, route_sink, store, state / "release.sock",
                    root / "release-helper.log")
    postfix.start()
    try:
        with lab.log.open("ab") as log:
            lab.process = subprocess.Popen(
                [*as_the_unit_runs_it(), POSTWACHT, "release-helper",
                 "--socket", str(lab.socket), "--mta", MTA, "--state", str(state),
                 "--postfix-config", str(postfix.config),
                 "--socket-group", SOCKET_GROUP, "--idle-timeout", "3",
                 "--max-connections", "4"],
                stdout=log, stderr=log)
        poll(lambda: lab.process is not None and (lab.process.poll() is not None
                                                  or lab.socket.is_socket()),
             "the release helper to listen")
        assert lab.process.poll() is None, lab.log_text()
        yield lab
    finally:
        postfix.stop()
        stopped = 0
        if lab.process is not None:
            lab.process.send_signal(signal.SIGTERM)
            stopped = lab.process.wait(timeout=DEADLINE)
        store.close()
        sink.stop()
        route_sink.stop()
        assert stopped == 0, "the release helper did not stop cleanly on SIGTERM"
        assert "Traceback" not in lab.log_text(), lab.log_text()
        assert not lab.socket.exists(), "the release helper left its socket behind"
        if os.environ.get("POSTWACHT_KEEP_LAB"):
            print(f"lab kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def marker() -> str:
    return secrets.token_hex(4)


def test_a_pending_release_is_delivered_without_the_quarantine_header(
    helper_lab: HelperLab
) -> None:
    m = marker()
    record = helper_lab.hold(f"release-{m}")
    result = helper_lab.ask(record, Review.RELEASE)
    assert result.ok, result.detail
    assert result.queue_id is None
    assert f"released {record.queue_id}" in result.detail
    assert not helper_lab.still_held(record.queue_id)
    delivered = poll(lambda: helper_lab.sink.received(f"held-release-{m}@example.org"),
                     "the released message at the sink")
    assert f"marker release-{m}".encode() in delivered[0].content
    assert b"X-Postwacht-Quarantine" not in delivered[0].content


def test_asking_twice_acts_once_and_answers_the_same(helper_lab: HelperLab) -> None:
    m = marker()
    record = helper_lab.hold(f"twice-{m}")
    request_id = helper_lab.request(record, Review.RELEASE)
    first = helper_lab.client.carry_out(request_id)
    again = helper_lab.client.carry_out(request_id)
    assert first.ok, first.detail
    assert again == first
    poll(lambda: helper_lab.sink.received(f"held-twice-{m}@example.org"), "the delivery")
    assert len(helper_lab.sink.received(f"held-twice-{m}@example.org")) == 1


def test_a_pending_delete_removes_the_message(helper_lab: HelperLab) -> None:
    record = helper_lab.hold(f"delete-{marker()}")
    result = helper_lab.ask(record, Review.DELETE)
    assert result.ok, result.detail
    assert result.detail == f"deleted {record.queue_id} from the hold queue (postsuper -d)"
    assert all(e["queue_id"] != record.queue_id for e in helper_lab.postfix.queue())


def test_expiry_with_return_sends_the_message_back_to_its_sender(
    helper_lab: HelperLab
) -> None:
    m = marker()
    record = helper_lab.hold(f"expire-{m}")
    result = helper_lab.ask(record, Review.EXPIRE, ReleaseMode.RETURN)
    assert result.ok, result.detail
    assert "returned to the sender" in result.detail
    bounce = poll(lambda: helper_lab.sink.bounces(f"marker expire-{m}"),
                  "the expired message returned to its sender")
    assert b"administratively expired" in bounce[0].content
    assert not helper_lab.sink.received(f"held-expire-{m}@example.org")


def test_a_request_for_a_message_held_on_another_mta_is_refused(
    helper_lab: HelperLab
) -> None:
    here = helper_lab.hold(f"elsewhere-{marker()}")
    there = helper_lab.store.record_quarantine(Hold(
        "mta-b", here.queue_id, secrets.token_hex(16), here.sender, here.recipients, here.rule,
        here.reason, here.policy))
    result = helper_lab.ask(there, Review.RELEASE)
    assert not result.ok
    assert result.detail == (f"message {here.queue_id} is held on MTA 'mta-b', not on this "
                             f"one ('{MTA}'): nothing done")
    assert helper_lab.still_held(here.queue_id)


def test_a_request_that_is_not_pending_is_refused(helper_lab: HelperLab) -> None:
    record = helper_lab.hold(f"finished-{marker()}")
    request_id = helper_lab.request(record, Review.DELETE)
    helper_lab.store.finish_request(request_id, False, "the test finished it first")
    result = helper_lab.client.carry_out(request_id)
    assert not result.ok
    assert result.detail == (f"request {request_id} is finished already (failed): nothing "
                             "done again")
    assert helper_lab.still_held(record.queue_id)


def test_a_hold_from_before_keys_is_carried_out_for_its_migrated_record(
    helper_lab: HelperLab,
) -> None:
    record = helper_lab.hold(f"migrated-{marker()}", migrated=True)
    result = helper_lab.ask(record, Review.DELETE)
    assert result.ok, result.detail
    assert not helper_lab.still_held(record.queue_id)


def test_a_record_whose_key_the_held_message_lacks_is_refused(helper_lab: HelperLab) -> None:
    """A reused queue id: the record is about an earlier message under the same id."""
    record = helper_lab.hold(f"reused-{marker()}", header_key=secrets.token_hex(16))
    result = helper_lab.ask(record, Review.DELETE)
    assert not result.ok
    assert "is not the one this record is about" in result.detail
    assert "the queue id was reused" in result.detail
    assert helper_lab.still_held(record.queue_id)


def test_an_unknown_request_is_refused(helper_lab: HelperLab) -> None:
    result = helper_lab.client.carry_out(999_999)
    assert not result.ok
    assert "there is no review request 999999" in result.detail


def test_insecure_transport_mail_leaves_through_its_route_and_not_in_the_clear(
    helper_lab: HelperLab
) -> None:
    m = marker()
    record = helper_lab.hold(m, rule=Rule.INSECURE_TRANSPORT, routed=True)
    plain = helper_lab.request(record, Review.RELEASE)
    refused = helper_lab.client.carry_out(plain)
    assert not refused.ok
    assert "an ordinary release would send it in the clear" in refused.detail
    assert helper_lab.still_held(record.queue_id)
    helper_lab.store.finish_request(plain, refused.ok, refused.detail)  # as the daemon does

    result = helper_lab.ask(record, Review.RELEASE, ReleaseMode.ROUTE)
    assert result.ok, result.detail
    assert f"through the secure route {helper_lab.route}" in result.detail
    routed = poll(lambda: helper_lab.route_sink.received(f"held-route-{m}@example.org"),
                  "the routed message at the secure route")
    assert b"X-Postwacht-Quarantine" not in routed[0].content
    assert b"X-Postwacht-Route" not in routed[0].content  # the relay transport drops it too
    assert not helper_lab.sink.received(f"held-route-{m}@example.org")


def test_a_routed_release_of_a_message_without_its_route_is_refused(
    helper_lab: HelperLab
) -> None:
    record = helper_lab.hold(f"unrouted-{marker()}", rule=Rule.INSECURE_TRANSPORT)
    result = helper_lab.ask(record, Review.RELEASE, ReleaseMode.ROUTE)
    assert not result.ok
    assert "has no secure route" in result.detail
    assert helper_lab.still_held(record.queue_id)


@contextlib.contextmanager
def short_queue_lifetime(postfix: PostfixInstance, seconds: int) -> Iterator[None]:
    lifetimes = ("maximal_queue_lifetime", "bounce_queue_lifetime")
    postfix.postconf("-e", *(f"{name} = {seconds}s" for name in lifetimes))
    subprocess.run(["postfix", "-c", str(postfix.config), "reload"], check=True,
                   capture_output=True)
    try:
        yield
    finally:
        postfix.postconf("-X", *lifetimes)
        subprocess.run(["postfix", "-c", str(postfix.config), "reload"], check=True,
                       capture_output=True)


def test_an_old_hold_is_requeued_and_survives_a_first_temporary_failure(
    helper_lab: HelperLab
) -> None:
    """A hold older than the whole queue lifetime: released with -H (the control), the
    first 451 bounces it as expired; released by the helper (postsuper -r), it gets a new
    queue id and a fresh lifetime, is deferred and then delivered."""
    m = marker()
    lab = helper_lab
    with short_queue_lifetime(lab.postfix, 10):
        old = lab.hold(f"old-{m}")
        control = lab.hold(f"control-{m}")
        lab.sink.defer_once |= {f"held-old-{m}@example.org", f"held-control-{m}@example.org"}
        arrival = min(e["arrival_time"] for e in lab.postfix.held()
                      if e["queue_id"] in (old.queue_id, control.queue_id))
        poll(lambda: time.time() - arrival > 11, "the holds to outlive the queue lifetime",
             timeout=DEADLINE)

        lab.postfix.postsuper("-H", control.queue_id, "hold")
        subprocess.run(["postqueue", "-c", str(lab.postfix.config), "-i", control.queue_id],
                       check=True)
        poll(lambda: lab.sink.bounces(f"marker control-{m}"),
             "the control message bounced as expired on its first temporary failure")

        result = lab.ask(old, Review.RELEASE)
        assert result.ok, result.detail
        assert result.queue_id, result.detail
        assert result.queue_id != old.queue_id
        assert f"released {old.queue_id} as {result.queue_id}" in result.detail
        assert "postsuper -r" in result.detail
        poll(lambda: f"held-old-{m}@example.org" in lab.sink.deferred,
             "the first, temporary, failure")
        waiting = poll(lambda: [e for e in lab.postfix.queue()
                                if e["queue_id"] == result.queue_id
                                and e["queue_name"] == "deferred"],
                       "the requeued message to wait in the deferred queue")
        assert waiting[0]["recipients"][0]["address"] == f"held-old-{m}@example.org"
        subprocess.run(["postqueue", "-c", str(lab.postfix.config), "-i", result.queue_id],
                       check=True)
        delivered = poll(lambda: lab.sink.received(f"held-old-{m}@example.org"),
                         "the old hold delivered on its second attempt")
        assert f"marker old-{m}".encode() in delivered[0].content
        assert b"X-Postwacht-Quarantine" not in delivered[0].content
        assert not lab.sink.bounces(f"marker old-{m}")


def test_the_socket_is_for_root_and_the_daemons_group_only(helper_lab: HelperLab) -> None:
    st = helper_lab.socket.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0
    assert st.st_gid == grp.getgrnam(SOCKET_GROUP).gr_gid
    assert not [p for p in helper_lab.socket.parent.iterdir() if p.name.startswith(".release-")]


def raw_exchange(path: Path, payload: bytes) -> bytes | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DEADLINE)
        sock.connect(str(path))
        sock.sendall(payload)
        with sock.makefile("rb") as stream:
            return read_netstring(stream)


@pytest.mark.parametrize("payload", [
    encode('{"request": "1"}'), encode("release 1"), encode('{"request": -1}'),
    encode("[1]"), b"12:{request: 1},",
])
def test_a_malformed_request_is_answered_and_nothing_happens(
    helper_lab: HelperLab, payload: bytes
) -> None:
    answer = raw_exchange(helper_lab.socket, payload)
    assert answer is not None
    assert b'"ok": false' in answer
    assert b"malformed request" in answer


def test_a_silent_connection_is_let_go(helper_lab: HelperLab) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DEADLINE)
        sock.connect(str(helper_lab.socket))
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert 2 < time.monotonic() - started < DEADLINE  # --idle-timeout 3


def test_beyond_its_connections_the_helper_closes_a_new_one_unanswered(
    helper_lab: HelperLab
) -> None:
    with contextlib.ExitStack() as idle:
        for _ in range(4):  # --max-connections 4
            sock = idle.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.connect(str(helper_lab.socket))
        with pytest.raises(ReleaseHelperError, match="closed the connection without an "
                                                     "answer"):
            helper_lab.client.carry_out(1)
    record = helper_lab.hold(f"after-flood-{marker()}")
    request_id = helper_lab.request(record, Review.DELETE)
    assert poll(lambda: _answered(helper_lab.client, request_id),
                "the helper to answer once the idle connections are gone").ok


def _answered(client: ReleaseHelperClient, request_id: int) -> HelperResult | None:
    try:
        return client.carry_out(request_id)
    except ReleaseHelperError:
        return None


def test_an_unreachable_helper_is_an_error_naming_its_socket(tmp_path: Path) -> None:
    path = tmp_path / "release.sock"
    with pytest.raises(ReleaseHelperError, match=f"release helper at {path}: cannot be "
                                                 "reached"):
        ReleaseHelperClient(path, timeout=5).carry_out(1)


def test_the_key_is_the_last_quarantine_headers_even_when_folded() -> None:
    """The last one is the milter's; one a sender wrote comes before it."""
    ours = ("X-Postwacht-Quarantine: rule=lookalike;\n\tpolicy=0123456789ab;\n"
            "  key=abc123\n")
    forged = "x-postwacht-quarantine: key=def456\n"
    assert quarantine_key(f"Received: from x\n\tby y\n{forged}Subject: key=no\n{ours}") \
        == "abc123"
    assert quarantine_key(f"Subject: s\n{ours}{forged}") == "def456"
    assert quarantine_key("Subject: key=abc123\n") is None
    assert quarantine_key("X-Postwacht-Quarantine: rule=retired\n") == ""  # before keys


def test_a_forged_quarantine_header_before_the_milters_does_not_count(
    helper_lab: HelperLab
) -> None:
    """A sender who learnt an old record's key (from a returned message, say) and writes
    it into a new message's header gains nothing: only the last header counts."""
    record = helper_lab.hold(f"forged-{marker()}", header_key=secrets.token_hex(16),
                             forged_key_first=True)
    result = helper_lab.ask(record, Review.DELETE)
    assert not result.ok
    assert "is not the one this record is about" in result.detail
    assert helper_lab.still_held(record.queue_id)


def test_a_release_that_needs_a_second_person_waits_for_another_persons_approval(
    helper_lab: HelperLab
) -> None:
    m = marker()
    record = helper_lab.hold(m, rule=Rule.INSECURE_TRANSPORT)
    # Written straight into the store without the approval it needs (as anyone who can
    # write the store could): the helper judges from the record, not from the request.
    bare = helper_lab.request(record, Review.RELEASE, ReleaseMode.OVERRIDE)
    refused = helper_lab.client.carry_out(bare)
    assert not refused.ok
    assert "needs a second person (it overrides the insecure-transport hold)" in refused.detail
    assert helper_lab.still_held(record.queue_id)
    helper_lab.store.finish_request(bare, refused.ok, refused.detail)  # as the daemon does

    asked = helper_lab.store.request(
        record.record_id, Review.RELEASE, ReleaseMode.OVERRIDE, "privacy-officer",
        "the partner confirmed by phone", needs_approval="it overrides the hold")
    helper_lab.store.approve(asked.request_id, "second-officer", "agreed")
    result = helper_lab.client.carry_out(asked.request_id)
    assert result.ok, result.detail
    poll(lambda: helper_lab.sink.received(f"held-{m}@example.org"), "the released message")
