"""`postwacht doctor` against a real Postfix that the filter is new to: it names what is
missing, `--apply` mends it, and then the filter really sees the mail."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    DEPLOY,
    POSTWACHT,
    Daemon,
    Lab,
    Ports,
    PostfixInstance,
    Sink,
    require_root,
    write_test_policy,
)

SENDER = "medewerker@samen-veilig.nl"
DEBIAN_MAIN_CF = Path("/usr/share/postfix/main.cf.debian")


@pytest.fixture(scope="module")
def bare() -> Iterator[Lab]:
    """Postfix as a postmaster has it before the filter: none of deploy/postfix's lines
    (only the header-check files `make install` puts beside main.cf), and the filter
    running."""
    require_root()
    root = Path(tempfile.mkdtemp(prefix="postwacht-doctor-", dir="/tmp"))
    sink = Sink()
    sink.start()
    ports = Ports()
    # Loopback counts as outbound, so the plain smtpd listener is "port 25 from an
    # outbound network".
    write_test_policy(root / "policy.yaml", outbound={
        "authenticated": True, "networks": ["127.0.0.0/8"], "daemon_names": ["ORIGINATING"]})
    postfix = PostfixInstance(root, sink.port, ports, deploy=False)
    postfix.setup()
    for name in ("header_checks", "smtp_header_checks"):
        shutil.copy(DEPLOY / name, postfix.config / f"postwacht_{name}")
    daemon = Daemon(root, root / "policy.yaml", ports, postfix_config=postfix.config)
    daemon.start()
    try:
        postfix.start()
        yield Lab(postfix, sink, daemon)
    finally:
        postfix.stop()
        daemon.stop()
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)


def doctor(lab: Lab, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTWACHT, "doctor", "--postfix-config", str(lab.postfix.config),
         "--policy", str(lab.daemon.policy), "--user", "root",
         "--milter", f"inet:127.0.0.1:{lab.daemon.ports.milter}",
         "--socketmap", f"inet:127.0.0.1:{lab.daemon.ports.socketmap}",
         "--submission", f"127.0.0.1:{lab.postfix.submission_port}/inet", *extra],
        capture_output=True, text=True, timeout=120, check=False)


def test_doctor_names_what_is_missing_applies_it_and_then_the_filter_refuses(bare: Lab) -> None:
    first = doctor(bare)
    assert first.returncode == 1, first.stdout + first.stderr
    fixes = [line for line in first.stdout.splitlines() if line.startswith("FIX ")]
    for setting in ("smtpd_milters", "non_smtpd_milters", "transport_maps",
                    "smtp_header_checks", "enable_long_queue_ids"):
        assert any(f"main.cf: {setting}: " in line for line in fixes), first.stdout
    submission = f"master.cf: 127.0.0.1:{bare.postfix.submission_port}/inet: "
    assert sum(submission in line for line in fixes) == 1, first.stdout  # the marker
    assert "run: postconf -c " in first.stdout

    applied = doctor(bare, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "reloaded Postfix" in applied.stdout
    assert "all is well" in applied.stdout
    saved = list(bare.postfix.config.glob("main.cf.before-postwacht-*"))
    assert len(saved) == 1
    assert "smtpd_milters" not in saved[0].read_text()

    again = doctor(bare)
    assert again.returncode == 0, again.stdout
    assert "FIX " not in again.stdout

    m = uuid.uuid4().hex[:12]
    refused = bare.postfix.submit(SENDER, [f"dossier-{m}@bjzutrecht.nl"], m)
    assert [code for code, _ in refused.values()] == [550]
    # Port 25: smtpd refuses through the transport table before any milter decides; the
    # filter is told of the refused recipient and reports it all the same.
    other = "planning@samen-veilig.nl"
    refused = bare.postfix.submit(other, [f"dossier-{m}@bjzutrecht.nl"], m,
                                  port=bare.postfix.inbound_port)
    assert [code for code, _ in refused.values()] == [550]
    said = next(iter(refused.values()))[1]
    assert b"Recipient address rejected" in said
    assert b"samen-veilig.nl" in said  # the filter's reason, through the transport table
    report = bare.daemon.cli("report", "retired", "--state", str(bare.daemon.state))
    assert SENDER in report.stdout
    assert other in report.stdout
    assert bare.daemon.logged("refused_by=postfix")


def test_a_filter_that_does_not_answer_is_named(bare: Lab, tmp_path: Path) -> None:
    result = subprocess.run(
        [POSTWACHT, "doctor", "--postfix-config", str(bare.postfix.config),
         "--policy", str(bare.daemon.policy), "--user", "root",
         "--milter", "inet:127.0.0.1:1", "--socketmap", f"unix:{tmp_path}/none.sock",
         "--wait", "0.5"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    # a filter just started gets a moment; one that never listens is named after it
    assert "waiting up to 0.5 s for the milter inet:127.0.0.1:1 to answer" in result.stdout
    assert "FIX  milter inet:127.0.0.1:1: does not answer" in result.stdout
    assert f"FIX  socketmap unix:{tmp_path}/none.sock: does not answer" in result.stdout


def test_a_policy_the_service_user_cannot_read_is_named(bare: Lab) -> None:
    place = Path(tempfile.mkdtemp(prefix="postwacht-doctor-policy-", dir="/tmp"))
    try:
        place.chmod(0o755)
        policy = place / "policy.yaml"
        shutil.copy(bare.daemon.policy, policy)
        policy.chmod(0o600)
        args = [POSTWACHT, "doctor", "--postfix-config", str(bare.postfix.config),
                "--policy", str(policy), "--user", "nobody"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 1
        assert f"FIX  {policy}: user nobody cannot read it (no read permission on {policy})" \
            in result.stdout
        place.chmod(0o700)
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert f"user nobody cannot read it (no search permission on {place})" in result.stdout
    finally:
        shutil.rmtree(place)


@pytest.mark.skipif(not DEBIAN_MAIN_CF.exists(), reason="Debian's main.cf.debian is missing")
def test_a_postfix_without_main_cf_is_told_where_one_comes_from(tmp_path: Path) -> None:
    require_root()
    config = tmp_path / "postfix"
    config.mkdir()
    shutil.copy("/etc/postfix/master.cf", config / "master.cf")
    args = [POSTWACHT, "doctor", "--postfix-config", str(config), "--user", "root",
            "--policy", str(Path(__file__).resolve().parents[2] / "policies" / "example.yaml")]
    told = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert told.returncode == 1
    assert f"FIX  {config / 'main.cf'}: does not exist" in told.stdout
    assert "NOTE policy: all external mail is sensitive by default" in told.stdout
    assert f"cp {DEBIAN_MAIN_CF} {config / 'main.cf'}" in told.stdout

    made = subprocess.run([*args, "--apply"], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "LC_ALL": "C"})
    assert f"made {config / 'main.cf'} from {DEBIAN_MAIN_CF}" in made.stdout
    text = (config / "main.cf").read_text()
    assert text.startswith(DEBIAN_MAIN_CF.read_text())
    assert "enable_long_queue_ids = yes" in text
    # Nothing answers on the default sockets here: listing the filter now would make
    # Postfix hold back all mail, so that change waits for a filter that answers.
    assert "not changed main.cf: smtpd_milters: the filter does not answer yet" in made.stdout
    assert "smtpd_milters" not in text
    assert made.returncode == 1


def test_apply_never_names_a_header_check_file_that_is_not_there(
        bare: Lab, tmp_path: Path) -> None:
    """Postfix defers every delivery that asks a missing table: that change waits."""
    config = tmp_path / "postfix"
    config.mkdir()
    shutil.copy("/etc/postfix/master.cf", config / "master.cf")
    (config / "main.cf").write_text(f"queue_directory = {tmp_path / 'queue'}\n")
    result = subprocess.run(
        [POSTWACHT, "doctor", "--postfix-config", str(config), "--user", "root",
         "--policy", str(bare.daemon.policy), "--apply",
         "--milter", f"inet:127.0.0.1:{bare.daemon.ports.milter}",
         "--socketmap", f"inet:127.0.0.1:{bare.daemon.ports.socketmap}"],
        capture_output=True, text=True, timeout=120, check=False)
    assert (f"not changed main.cf: smtp_header_checks: {config}/postwacht_smtp_header_checks "
            "is not there") in result.stdout
    text = (config / "main.cf").read_text()
    assert "smtp_header_checks" not in text
    assert "smtpd_milters = { inet:127.0.0.1:" in text  # the filter answers: listed
    assert result.returncode == 1


def test_apply_adds_the_nta7516_transport_a_policy_that_accepts_it_needs(
        bare: Lab, tmp_path: Path) -> None:
    """With real postconf: the transport goes into master.cf as doctor wants it, and then
    doctor has nothing more to say of it."""
    config = tmp_path / "postfix"
    config.mkdir()
    shutil.copy("/etc/postfix/master.cf", config / "master.cf")
    (config / "main.cf").write_text(f"queue_directory = {tmp_path / 'queue'}\n")
    policy = tmp_path / "policy.yaml"
    write_test_policy(policy, sensitive={"default": "not-sensitive", "detectors": ["bsn"]},
                      secure_transport={"accept": ["dane", "nta7516"], "min_tls": "1.3"})
    args = [POSTWACHT, "doctor", "--postfix-config", str(config), "--user", "root",
            "--policy", str(policy), "--milter", f"inet:127.0.0.1:{bare.daemon.ports.milter}",
            "--socketmap", f"inet:127.0.0.1:{bare.daemon.ports.socketmap}"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert "master.cf: nta7516/unix: is missing" in first.stdout, first.stdout
    applied = subprocess.run([*args, "--apply"], capture_output=True, text=True, timeout=120,
                             check=False)  # exits 1: the header-check files are not there
    assert "changed master.cf: nta7516/unix: -M 'nta7516/unix=nta7516 unix" in applied.stdout
    entry = subprocess.run(["postconf", "-c", str(config), "-M", "nta7516/unix"],
                           capture_output=True, text=True, check=True).stdout
    assert entry.split()[:8] == ["nta7516", "unix", "-", "-", "n", "-", "-", "smtp"]
    params = subprocess.run(["postconf", "-c", str(config), "-P"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert "nta7516/unix/smtp_tls_security_level = secure" in params
    assert "nta7516/unix/smtp_tls_mandatory_protocols = >=TLSv1.3" in params
    assert (f"nta7516/unix/smtp_tls_policy_maps = socketmap:inet:127.0.0.1:"
            f"{bare.daemon.ports.socketmap}:nta7516") in params
    again = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert "master.cf: nta7516/unix" not in again.stdout, again.stdout
