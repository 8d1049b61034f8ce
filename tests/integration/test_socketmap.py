"""The socketmap tables as Postfix asks them: postmap -q, raw netstrings, and qmgr."""

from __future__ import annotations

import socket
import subprocess
import uuid

from postwacht.adapters.netstring import encode, read_netstring

from tests.integration.conftest import ALIAS, Lab, poll


def postmap(lab: Lab, table: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["postmap", "-c", str(lab.postfix.config), "-q", key,
         f"socketmap:inet:127.0.0.1:{lab.daemon.ports.socketmap}:{table}"],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_transport_table_bounces_retired_and_passes_the_rest(lab: Lab) -> None:
    retired = postmap(lab, "transport", "worker@mail.bjzutrecht.nl")
    assert retired.returncode == 0, retired.stderr
    assert retired.stdout.startswith("error:5.7.1 bjzutrecht.nl was given up")
    assert postmap(lab, "transport", "ok@example.org").returncode == 1  # not found
    assert postmap(lab, "transport", "x@samen-veilig.nl").returncode == 1


def test_malformed_and_unknown_requests_get_perm_and_the_connection_survives(lab: Lab) -> None:
    with socket.create_connection(("127.0.0.1", lab.daemon.ports.socketmap), timeout=10) as s:
        s.sendall(b"5:hello;")
        s.sendall(encode("nosuch x") + encode("transport *"))
        s.sendall(encode("transport worker@bjzutrecht.nl"))
        replies = s.makefile("rb")
        answers = [read_netstring(replies) for _ in range(4)]
    assert answers[0] == b"PERM request does not end with ','"
    assert answers[1] == b"PERM unknown table 'nosuch'"
    assert answers[2] == b"NOTFOUND "
    assert answers[3] is not None
    assert answers[3].startswith(b"OK error:5.7.1 bjzutrecht.nl was given up")


def test_alias_expanded_to_a_retired_address_bounces_and_never_leaves(lab: Lab) -> None:
    m = uuid.uuid4().hex[:12]
    refused = lab.postfix.submit("medewerker@samen-veilig.nl", [ALIAS], m)
    assert refused == {}
    delivered = poll(lambda: [d for d in lab.sink.with_marker(m)
                              if "team@example.org" in d.recipients], "the alias's other target")
    assert all("worker@bjzutrecht.nl" not in d.recipients for d in lab.sink.messages)
    bounce = poll(lambda: [d for d in lab.sink.received("medewerker@samen-veilig.nl")
                           if b"worker@bjzutrecht.nl" in d.content and m.encode() in d.content],
                  "the bounce to the sender")
    assert b"5.7.1" in bounce[0].content
    assert delivered
