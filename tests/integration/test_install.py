"""`make install` and `make uninstall` on this machine, for real, as a postmaster runs
them: the program under /opt/postwacht, the command on the PATH, the postwacht user, a
policy in monitor mode, the systemd units in place, verified and enabled, and an
uninstall that takes all that away but the policy and the records.

It needs root and a machine without an installed Postwacht: outside CI it skips where it
finds one (or a policy) rather than replace and then remove it. What it made, it removes
at the end; /etc/postwacht and /var/lib/postwacht too, unless they were there before.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PREFIX = Path("/opt/postwacht")
VENV = PREFIX / ".venv"
COMMAND = Path("/usr/local/bin/postwacht")
CONFIG = Path("/etc/postwacht")
POLICY = CONFIG / "policy.yaml"
STATE = Path("/var/lib/postwacht")
UNITDIR = Path("/etc/systemd/system")
UNITS = ("postwacht.service", "postwacht-release.service", "postwacht-web.service")
ENABLED = ("postwacht.service", "postwacht-release.service")
TABLES = {
    Path("/etc/postfix/postwacht_header_checks"): ROOT / "deploy" / "postfix" / "header_checks",
    Path("/etc/postfix/postwacht_smtp_header_checks"):
        ROOT / "deploy" / "postfix" / "smtp_header_checks",
}
USER = "postwacht"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAKE_TIMEOUT = 600.0  # building pymilter without pip's wheel cache takes a while


@dataclass(frozen=True)
class Before:
    """What was on the machine before the test, so that it leaves the same."""

    config: bool
    state: bool
    tables: dict[Path, bool]


def exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def root_shell() -> dict[str, str]:
    """A root shell's environment, not the test run's (its virtual environment, a make
    that runs it)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    env["PATH"] = SYSTEM_PATH
    return env


def make(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, env=root_shell(),
                          capture_output=True, text=True, timeout=MAKE_TIMEOUT, check=False)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """A command from the system's PATH, in / (which the service user can read)."""
    return subprocess.run(command, cwd="/", env=root_shell(), capture_output=True, text=True,
                          timeout=60, check=False)


def named_by_main_cf() -> set[Path]:
    """The tables the machine's main.cf names (uninstall keeps those)."""
    shown = run("postconf", "-h", "milter_header_checks", "smtp_header_checks").stdout
    return {Path(word.strip().split(":", 1)[-1]) for word in shown.replace(",", "\n").split()}


@pytest.fixture
def bare_machine() -> Iterator[Before]:
    """A machine without Postwacht, and as it was again after the test. Outside CI the
    test skips where it finds an installation or a policy; in CI, where only a run that
    was killed leaves one, it uninstalls first and puts the policy back at the end."""
    if os.geteuid() != 0:
        pytest.fail("make install needs root (it adds a user and writes to /etc and /opt)")
    found = [str(p) for p in (PREFIX, COMMAND, POLICY) if exists(p)]
    found += [f"the {USER} user"] if account(USER) else []
    found += [f"the {USER} group"] if group(USER) else []
    if found and not os.environ.get("CI"):
        pytest.skip(f"found Postwacht here ({', '.join(found)}): this test installs "
                    "and uninstalls it for real, so it runs only where nothing is (or in CI)")
    if found:
        assert make("uninstall").returncode == 0
    aside = POLICY.with_name("policy.yaml.before-test")
    if exists(POLICY):
        POLICY.rename(aside)
    before = Before(exists(CONFIG), exists(STATE), {t: exists(t) for t in TABLES})
    try:
        yield before
    finally:
        uninstalled = make("uninstall")
        if not before.config:
            shutil.rmtree(CONFIG, ignore_errors=True)
        if not before.state:
            shutil.rmtree(STATE, ignore_errors=True)
        for table, was_there in before.tables.items():
            if not was_there:
                table.unlink(missing_ok=True)
        if exists(aside):
            aside.replace(POLICY)
        assert uninstalled.returncode == 0, uninstalled.stdout + uninstalled.stderr


def owner_and_mode(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def assert_the_command_on_the_path_checks_the_policy_as_the_service_user() -> None:
    assert shutil.which("postwacht", path=SYSTEM_PATH) == str(COMMAND)
    assert COMMAND.resolve() == (VENV / "bin" / "postwacht").resolve()
    checked = run("runuser", "-u", USER, "--", "postwacht", "check", str(POLICY))
    # monitor mode is valid (exit 0); check warns of it, loudest for the retired domain
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{POLICY}: valid: " in checked.stdout
    assert ("warning: bjzutrecht.nl is a retired domain in monitor mode: mail to it LEAVES"
            in checked.stdout)
    assert "warning: only monitored, not enforced: " in checked.stdout


def assert_the_package_is_installed_without_the_source_tree_or_test_tools() -> None:
    probe = ("import importlib.util, postwacht; print(postwacht.__file__); "
             "print(importlib.util.find_spec('pytest') is None)")
    shown = run(str(VENV / "bin" / "python"), "-c", probe)
    assert shown.returncode == 0, shown.stderr
    where, no_pytest = shown.stdout.split()
    assert Path(where).is_relative_to(VENV)  # a copy, not a link to the source tree
    assert no_pytest == "True"


def assert_the_new_policy_is_the_example_in_monitor_mode() -> None:
    assert owner_and_mode(CONFIG) == ("root", USER, 0o750)
    assert owner_and_mode(POLICY) == ("root", USER, 0o640)
    text = POLICY.read_text()
    assert yaml.safe_load(text)["mode"] == "monitor"
    example = (ROOT / "policies" / "example.yaml").read_text()
    assert "\n# mode: monitor " in example
    assert text.replace("\nmode: monitor   ", "\n# mode: monitor ") == example
    explained = run("postwacht", "explain", "--json", "--policy", str(POLICY),
                    "--from", "medewerker@samen-veilig.nl", "--to", "dossier@bjzutrecht.nl")
    assert explained.returncode == 0, explained.stderr
    verdict = json.loads(explained.stdout)
    assert verdict["action"] == "accept"
    assert verdict["recipients"][0]["mode"] == "monitor"


def assert_the_service_user_owns_the_state_directory() -> None:
    user = account(USER)
    assert user is not None
    assert (user.pw_dir, user.pw_shell) == (str(STATE), "/usr/sbin/nologin")
    assert user.pw_uid < 1000  # a system user
    postwacht_group = group(USER)
    assert postwacht_group is not None
    assert user.pw_gid == postwacht_group.gr_gid
    assert owner_and_mode(STATE) == (USER, USER, 0o750)


def assert_the_units_verify_and_the_daemon_and_helper_are_enabled() -> None:
    for unit in UNITS:
        installed = UNITDIR / unit
        # the kit's units name the installed paths already: installed as they are
        assert installed.read_text() == (ROOT / "deploy" / "systemd" / unit).read_text()
        assert f"ExecStart={VENV}/bin/postwacht " in installed.read_text()
        verify = run("systemd-analyze", "verify", str(installed))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert verify.stderr.strip() == "", verify.stderr
    for unit in UNITS:
        wanted = UNITDIR / "multi-user.target.wants" / unit
        if unit in ENABLED:
            assert wanted.is_symlink(), unit
            assert wanted.resolve() == UNITDIR / unit
        else:
            assert not exists(wanted), unit  # the web review is enabled by choice


def assert_postfix_tables_are_the_kits(before: Before) -> None:
    for table, kit in TABLES.items():
        if not before.tables[table] and table.parent.is_dir():
            assert table.read_text() == kit.read_text()
            assert owner_and_mode(table) == ("root", "root", 0o644)


def assert_nothing_but_the_policy_and_records_is_left(before: Before, policy: str) -> None:
    for unit in UNITS:
        assert not exists(UNITDIR / unit), unit
        assert not list(UNITDIR.glob(f"*.wants/{unit}")), unit
    assert not exists(COMMAND)
    assert not exists(PREFIX)
    assert account(USER) is None
    assert group(USER) is None
    assert POLICY.read_text() == policy
    assert STATE.is_dir()
    named = named_by_main_cf()
    for table, was_there in before.tables.items():
        if not was_there and table not in named:
            assert not exists(table), table


def test_install_sets_up_a_monitoring_service_and_uninstall_keeps_only_policy_and_records(
    bare_machine: Before,
) -> None:
    installed = make("install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "MONITOR mode" in installed.stdout
    assert "the line 'mode: monitor'" in installed.stdout
    assert "systemctl start postwacht postwacht-release" in installed.stdout
    assert "postwacht doctor" in installed.stdout
    assert_the_command_on_the_path_checks_the_policy_as_the_service_user()
    assert_the_package_is_installed_without_the_source_tree_or_test_tools()
    assert_the_new_policy_is_the_example_in_monitor_mode()
    assert_the_service_user_owns_the_state_directory()
    assert_the_units_verify_and_the_daemon_and_helper_are_enabled()
    assert_postfix_tables_are_the_kits(bare_machine)

    # the postmaster enforces the policy as the install said; a second install keeps it
    enforced = "".join(line for line in POLICY.read_text().splitlines(keepends=True)
                       if not line.startswith("mode: monitor"))
    POLICY.write_text(enforced)
    again = make("install")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"policy {POLICY}: exists, kept as it is" in again.stdout
    assert "MONITOR mode" not in again.stdout
    assert POLICY.read_text() == enforced
    assert owner_and_mode(POLICY) == ("root", USER, 0o640)
    assert_the_units_verify_and_the_daemon_and_helper_are_enabled()

    removed = make("uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"kept {CONFIG}: the policy\nkept {STATE}: the records\n" in removed.stdout
    assert_nothing_but_the_policy_and_records_is_left(bare_machine, enforced)
