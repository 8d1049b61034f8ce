"""Faults through the policy file, against the running daemon and a real Postfix.

Whatever lands at the policy path (a crafted YAML file, a pipe, a device, a pattern that
backtracks), the running policy stays, the watcher goes on, and mail is decided.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import POSTWACHT, Lab, held_for, write_test_policy
from tests.labs.dns import DnsLab
from tests.labs.util import DEADLINE, free_port, poll

SENDER = "medewerker@samen-veilig.nl"


def checksum(lab: Lab) -> str:
    out = lab.daemon.cli("status", "--state", str(lab.daemon.state), "--json").stdout
    return str(json.loads(out)["checksum"])


def reload(lab: Lab) -> subprocess.CompletedProcess[str]:
    return lab.daemon.cli("reload", "--state", str(lab.daemon.state))


def rss_kib(lab: Lab) -> int:
    assert lab.daemon.process is not None
    status = Path(f"/proc/{lab.daemon.process.pid}/status").read_text()
    [line] = [x for x in status.splitlines() if x.startswith("VmRSS:")]
    return int(line.split()[1])


@pytest.fixture
def policy_path(lab: Lab) -> Iterator[Path]:
    """The daemon's policy path; whatever a test puts there, the original comes back."""
    path = lab.daemon.policy
    original = path.read_text()
    before = checksum(lab)
    yield path
    path.unlink(missing_ok=True)
    path.write_text(original)
    poll(lambda: reload(lab).returncode == 0 and checksum(lab) == before,
         "the original policy to be back")


def watcher_moves_on(lab: Lab) -> None:
    """The watcher keeps looking: its last-check time moves past the current one."""
    seen = lab.daemon.metric("postwacht_policy_last_check_timestamp_seconds", absent=None)
    assert seen is not None
    poll(lambda: (lab.daemon.metric("postwacht_policy_last_check_timestamp_seconds") or 0)
         > seen, "the policy watcher to look at the file again")


def test_a_deeply_nested_policy_stops_the_start_with_a_reason(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write_test_policy(policy)
    policy.write_text(policy.read_text() + "x: " + "[" * 30_000 + "\n")
    result = subprocess.run(
        [POSTWACHT, "serve", "--policy", str(policy), "--state", str(tmp_path / "state"),
         "--milter", f"inet:{free_port()}@127.0.0.1", "--metrics", "", "--socketmap", ""],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr  # was -11: libyaml overflowed its stack
    assert "nests deeper than 64 levels" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_policy_on_the_running_daemon_is_refused_and_mail_goes_on(
    lab: Lab, policy_path: Path
) -> None:
    before = checksum(lab)
    write_test_policy(policy_path, dns={"timeout": float("nan")},
                      retired_domains=[{"domain": "bjzutrecht.nl",
                                        "reply": "{domain:>99999999}"}])
    result = reload(lab)
    assert result.returncode == 1
    assert "dns.timeout: '.nan' is not a finite number" in result.stderr
    assert "placeholder {domain} takes no format or conversion" in result.stderr
    assert checksum(lab) == before
    refused = lab.postfix.submit(SENDER, ["someone@bjzutrecht.nl"], uuid.uuid4().hex)
    assert refused["someone@bjzutrecht.nl"][0] == 550


def test_a_named_pipe_at_the_policy_path_does_not_wedge_reloads(
    lab: Lab, policy_path: Path
) -> None:
    before = checksum(lab)
    policy_path.unlink()
    os.mkfifo(policy_path)
    result = reload(lab)  # used to hang behind the watcher, blocked opening the pipe
    assert result.returncode == 1
    assert "not a regular file (it is a named pipe)" in result.stderr
    watcher_moves_on(lab)
    policy_path.unlink()
    write_test_policy(policy_path, organisation="Na de pijp")
    poll(lambda: checksum(lab) != before, "the watcher to load a valid policy after the pipe")


def test_a_policy_linked_to_dev_zero_is_refused_without_growing(
    lab: Lab, policy_path: Path
) -> None:
    before_rss = rss_kib(lab)
    policy_path.unlink()
    policy_path.symlink_to("/dev/zero")
    result = reload(lab)
    assert result.returncode == 1
    assert "not a regular file (it is a character device)" in result.stderr
    watcher_moves_on(lab)
    watcher_moves_on(lab)
    assert rss_kib(lab) - before_rss < 50 * 1024  # read whole, it grew ~1 GB a second


@pytest.fixture
def backtracking_marker(lab: Lab, dns_lab: DnsLab, policy_path: Path) -> None:
    before = checksum(lab)
    write_test_policy(
        policy_path,
        sensitive={"default": "sensitive",
                   "markers": [{"subject": "^(a+)+$", "means": "not-sensitive"}]},
        secure_transport={"otherwise": "quarantine"},
        dns={"resolvers": [f"127.0.0.1:{dns_lab.port}"], "timeout": 3},
    )
    poll(lambda: checksum(lab) != before, "the policy with the marker to load")


@pytest.mark.usefixtures("backtracking_marker")
def test_a_crafted_subject_against_a_backtracking_marker_is_decided_at_once(lab: Lab) -> None:
    m = uuid.uuid4().hex[:12]
    # With a backtracking engine this Subject takes about 2**60 steps; Postfix gives up
    # on the milter after milter_command_timeout and tempfails the message.
    message = f"From: <{SENDER}>\r\nSubject: {'a' * 60}!\r\nX-Test: {m}\r\n\r\nverslag\r\n"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=60) as smtp:
        smtp.sendmail(SENDER, ["jeugdarts@plain.pw.test"], message)
    entry = held_for(lab, "jeugdarts@plain.pw.test")
    lab.postfix.postsuper("-d", str(entry["queue_id"]), "hold")



def test_silent_control_clients_are_dropped_and_do_not_block_reload(lab: Lab) -> None:
    path = str(lab.daemon.state / "control.sock")
    silent = []
    for _ in range(50):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        silent.append(sock)
    try:
        assert reload(lab).returncode == 0
        silent[0].settimeout(DEADLINE)
        assert silent[0].recv(1) == b"", "the daemon kept a silent control client"
    finally:
        for sock in silent:
            sock.close()
