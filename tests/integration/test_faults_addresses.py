"""Faults in recipient addresses, with a real Postfix and the real daemon: a route to a
retired domain hidden in a quoted local part behind a blank, a comment or a bang path.

Neither Postfix here has a transport table: only the milter stands between these
addresses and the retired domain. The first treats samen-veilig.nl as its own domain, so
it unquotes such a local part and sends the mail on to bjzutrecht.nl (its `unfiltered`
listener, without the milter, shows that); the second relays samen-veilig.nl onward and
hands every address to the milter exactly as written.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Daemon,
    Lab,
    Ports,
    PostfixInstance,
    Sink,
    held_for,
    write_test_policy,
)
from tests.labs.util import free_port, poll

SENDER = "medewerker@samen-veilig.nl"
HIDDEN_ROUTES = [
    '"x-{m}@bjzutrecht.nl "@samen-veilig.nl',
    '"x-{m}@bjzutrecht . nl"@samen-veilig.nl',
    '"bjzutrecht.nl !x-{m}"@samen-veilig.nl',
    '"x-{m}@bjzutrecht.nl(c)"@samen-veilig.nl',
]
"""The four addresses of the hardening issue, with a marker in the local part."""
IDS = ["trailing-blank", "blanks-around-dot", "blank-before-bang", "comment"]
SMTP_REFUSED = 'postwacht_recipients_total{action="reject",rule="bad-address"}'
SENDMAIL_HELD = 'postwacht_recipients_total{action="quarantine",rule="bad-address"}'
NO_BACKSTOP = ["transport_maps ="]


@dataclass
class Labs:
    own: Lab
    """samen-veilig.nl is this Postfix's own domain: it unquotes local parts."""
    relaying: PostfixInstance
    """samen-veilig.nl is relayed: the local part stays as written."""
    unfiltered_port: int
    """A listener of `own` without the milter."""


@pytest.fixture(scope="module")
def labs() -> Iterator[Labs]:
    if os.geteuid() != 0 or shutil.which("postfix") is None:
        pytest.fail("integration tests need root and Debian's postfix package")
    root = Path(tempfile.mkdtemp(prefix="postwacht-addresses-", dir="/tmp"))
    root.chmod(0o755)  # Postfix must reach each instance's data directory below it
    (root / "own").mkdir()
    (root / "relaying").mkdir()
    sink = Sink()
    sink.start()
    ports = Ports()
    write_test_policy(root / "policy.yaml")
    own = PostfixInstance(root / "own", sink.port, ports)
    own.setup()
    own.postconf("-e", *NO_BACKSTOP, "mydestination = samen-veilig.nl", "local_recipient_maps =",
                 "local_transport = error:no local delivery here")
    unfiltered = free_port()
    own.postconf("-M", f"127.0.0.1:{unfiltered}/inet=127.0.0.1:{unfiltered} inet n - n - - smtpd")
    own.postconf("-P", f"127.0.0.1:{unfiltered}/inet/smtpd_milters=")
    relaying = PostfixInstance(root / "relaying", sink.port, ports)
    relaying.setup()
    relaying.postconf("-e", *NO_BACKSTOP)
    daemon = Daemon(root, root / "policy.yaml", ports)
    daemon.start()
    started: list[PostfixInstance] = []
    try:
        for postfix in (own, relaying):
            postfix.start()
            started.append(postfix)
        yield Labs(Lab(own, sink, daemon), relaying, unfiltered)
    finally:
        for postfix in started:
            postfix.stop()
        stopped = daemon.stop() if daemon.process is not None else 0
        sink.stop()
        assert stopped == 0, "postwacht serve did not stop cleanly on SIGTERM"
        assert "Traceback" not in daemon.log_text(), daemon.log_text()
        shutil.rmtree(root, ignore_errors=True)


def marker() -> str:
    return uuid.uuid4().hex[:12]


def rcpt_then_send(
    port: int, sender: str, recipients: list[str], m: str
) -> list[tuple[int, bytes]]:
    """One SMTP transaction, each RCPT written exactly as given (smtplib would re-parse the
    address); DATA if any recipient was taken. The replies to the RCPTs, in order."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.docmd(f"MAIL FROM:<{sender}>")[0] == 250
        replies = [smtp.docmd(f"RCPT TO:<{r}>") for r in recipients]
        if any(code == 250 for code, _ in replies):
            code, _ = smtp.data(f"From: <{sender}>\r\nSubject: test {m}\r\n\r\n{m}\r\n")
            assert code == 250
    return replies


def retired_at_the_sink(lab: Lab, m: str) -> list[str]:
    """Recipients at bjzutrecht.nl of the test's message that reached the outside world."""
    return [r for message in lab.sink.with_marker(m) for r in message.recipients
            if "bjzutrecht" in r.lower()]


def test_without_the_milter_postfix_sends_a_hidden_route_to_the_retired_domain(
    labs: Labs,
) -> None:
    """The premise: what the refusals below stop would otherwise reach bjzutrecht.nl."""
    m = marker()
    address = HIDDEN_ROUTES[0].format(m=m)
    [reply] = rcpt_then_send(labs.unfiltered_port, SENDER, [address], m)
    assert reply[0] == 250, reply
    poll(lambda: labs.own.sink.with_marker(m), "the unfiltered message")
    assert retired_at_the_sink(labs.own, m) == [f"x-{m}@bjzutrecht.nl"]


@pytest.mark.parametrize("template", HIDDEN_ROUTES, ids=IDS)
def test_a_hidden_route_over_smtp_is_refused_by_the_milter_and_the_rest_delivered(
    labs: Labs, template: str
) -> None:
    m = marker()
    address, ordinary = template.format(m=m), f"ok-{m}@example.org"
    daemon = labs.own.daemon
    refused_before = daemon.metric(SMTP_REFUSED)
    assert refused_before is not None
    hidden, kept = rcpt_then_send(labs.relaying.submission_port, SENDER, [address, ordinary], m)
    assert hidden[0] == 550, hidden
    assert hidden[1].startswith(b"5.1.3 bad recipient address: local part names a route")
    assert kept[0] == 250
    assert daemon.metric(SMTP_REFUSED) == refused_before + 1
    [delivered] = poll(lambda: labs.own.sink.with_marker(m), "the ordinary recipient's copy")
    assert delivered.recipients == [ordinary]
    assert retired_at_the_sink(labs.own, m) == []


@pytest.mark.parametrize("template", HIDDEN_ROUTES, ids=IDS)
def test_a_hidden_route_over_smtp_never_leaves_a_postfix_that_unquotes_it(
    labs: Labs, template: str
) -> None:
    """The milter refuses it; Postfix refuses the comment form itself (501 5.1.3), as
    after unquoting it reads `x@bjzutrecht.nl (c)`, which is no address."""
    m = marker()
    address, ordinary = template.format(m=m), f"ok-{m}@example.org"
    hidden, kept = rcpt_then_send(labs.own.postfix.submission_port, SENDER, [address, ordinary], m)
    if "(c)" in template:
        assert hidden == (501, b"5.1.3 Bad recipient address syntax")
    else:
        assert hidden[0] == 550, hidden
        assert hidden[1].startswith(b"5.1.3 bad recipient address: local part names a route")
    assert kept[0] == 250
    [delivered] = poll(lambda: labs.own.sink.with_marker(m), "the ordinary recipient's copy")
    assert delivered.recipients == [ordinary]
    assert retired_at_the_sink(labs.own, m) == []


@pytest.mark.parametrize("template", HIDDEN_ROUTES, ids=IDS)
def test_a_hidden_route_from_sendmail_is_held_with_its_message(
    labs: Labs, template: str
) -> None:
    lab, m = labs.own, marker()
    address = template.format(m=m)
    held_before = lab.daemon.metric(SENDMAIL_HELD)
    assert held_before is not None
    lab.postfix.sendmail(SENDER, [address, f"ok-{m}@example.org"], m)
    queue_id = held_for(lab, address)["queue_id"]
    listing = lab.quarantine("list", "--json")
    assert listing.returncode == 0, listing.stderr
    [record] = [h for h in json.loads(listing.stdout) if h["queue_id"] == queue_id]
    assert record["rule"] == "bad-address"
    assert "local part names a route" in record["reason"]
    assert lab.daemon.metric(SENDMAIL_HELD) == held_before + 1
    assert lab.sink.with_marker(m) == []
    assert retired_at_the_sink(lab, m) == []
