"""The README's first hour, run as written: every block marked `first-hour`, in order,
command by command, on this machine's own Postfix (/etc/postfix, ports 25 and 587 on
loopback) and a real `make install`. A command must exit 0, or the code its `# exits N`
comment names. Where no systemd runs (CI), `systemctl` carries out the installed units'
own lines (tests/labs/systemctl.py); nothing else stands in for anything.

It changes the machine as a postmaster would, so outside CI it runs only where nothing
it touches is there yet (no main.cf, no Postwacht, the ports free). At the end it puts
back main.cf, master.cf and a policy that was there, removes what it installed (the
program, the user, a state directory or config directory it made) and leaves Postfix
running or stopped as it found it. The Debian packages it installs stay.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.test_install import (
    COMMAND,
    CONFIG,
    PREFIX,
    STATE,
    SYSTEM_PATH,
    TABLES,
    USER,
    account,
    exists,
    make,
)

README = ROOT / "README.md"
POSTFIX = Path("/etc/postfix")
PORTS = (25, 587, 8894, 8895, 9464)
BLOCK = re.compile(r"^(?P<indent>[ ]*)```sh first-hour\n(?P<body>.*?)^(?P=indent)```",
                   re.MULTILINE | re.DOTALL)
EXITS = re.compile(r"#\s*exits (\d+)\b")
COMMAND_TIMEOUT = 900.0  # make install builds pymilter


@dataclass(frozen=True)
class Step:
    command: str
    exits: int


def steps(readme: str) -> list[Step]:
    """The first-hour commands in the order the README gives them."""
    found = []
    for block in BLOCK.finditer(readme):
        indent = len(block["indent"])
        lines = [line[indent:] for line in block["body"].splitlines()]
        text = "\n".join(lines).replace("\\\n", " ")
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            expected = EXITS.search(line)
            found.append(Step(line.strip(), int(expected[1]) if expected else 0))
    return found


def test_the_readme_has_a_first_hour_that_reaches_an_enforcing_filter() -> None:
    commands = [s.command for s in steps(README.read_text())]
    assert any(c.startswith("make install") for c in commands)
    assert [s.exits for s in steps(README.read_text()) if s.command.startswith(
        "postwacht doctor")] == [1, 0, 0]
    assert sum(c.startswith("swaks") for c in commands) == 2


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Machine:
    """What the first hour touches, as it was before, to put back afterwards."""

    saved: Path
    postfix_running: bool
    config: bool
    state: bool
    tables: dict[Path, bool]
    shim: Path


def postfix_running() -> bool:
    try:
        return subprocess.run(["postfix", "status"], capture_output=True, check=False,
                              timeout=60).returncode == 0
    except OSError:  # no Postfix on this machine yet
        return False


@pytest.fixture
def fresh_machine() -> Iterator[Machine]:
    if os.geteuid() != 0:
        pytest.fail("the first hour needs root (make install, Postfix on port 25)")
    busy = [f"a listener on 127.0.0.1:{p}" for p in PORTS if listening(p)]
    found = [str(p) for p in (POSTFIX / "main.cf", PREFIX, COMMAND, CONFIG / "policy.yaml")
             if exists(p)]
    found += [f"the {USER} user"] if account(USER) else []
    if (found or busy) and not os.environ.get("CI"):
        pytest.skip(f"found {', '.join(found + busy)}: the first hour sets up this "
                    "machine's own Postfix and Postwacht, so it runs only where neither is "
                    "(or in CI)")
    if busy:  # in CI: something else serves these ports, and the first hour would stop it
        pytest.fail(f"{', '.join(busy)}: the first hour needs ports {PORTS} free")
    if exists(PREFIX) or account(USER):
        assert make("uninstall").returncode == 0
    saved = Path(tempfile.mkdtemp(prefix="postwacht-first-hour-"))
    for name in ("main.cf", "master.cf"):
        if (POSTFIX / name).exists():
            shutil.copy2(POSTFIX / name, saved / name)
    policy = CONFIG / "policy.yaml"
    if exists(policy):
        shutil.copy2(policy, saved / "policy.yaml")
    shim = saved / "bin"
    shim.mkdir()
    (shim / "systemctl").write_text(
        f"#!/bin/sh\nexec python3 {ROOT / 'tests' / 'labs' / 'systemctl.py'} \"$@\"\n")
    (shim / "systemctl").chmod(0o755)
    (saved / "units").mkdir()
    machine = Machine(saved, postfix_running(),
                      exists(CONFIG), exists(STATE), {t: exists(t) for t in TABLES}, shim)
    try:
        yield machine
    finally:
        put_back(machine)


def shell_env(machine: Machine) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    systemd = Path("/run/systemd/system").is_dir()
    env["PATH"] = SYSTEM_PATH if systemd else f"{machine.shim}:{SYSTEM_PATH}"
    env["SYSTEMCTL_STATE"] = str(machine.saved / "units")
    return env


def put_back(machine: Machine) -> None:
    """Every step is tried, whatever the one before did; the first failure is raised at
    the end. The files come back first: they matter most."""
    env = shell_env(machine)
    failed: list[str] = []

    def attempt(what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - said at the end, after the rest is done
            failed.append(f"{what}: {exc!r}")

    def files() -> None:
        backups = sorted(POSTFIX.glob("*.before-postwacht-*"))
        for name in ("main.cf", "master.cf"):
            if (machine.saved / name).exists():
                shutil.copy2(machine.saved / name, POSTFIX / name)
            elif name == "main.cf":
                (POSTFIX / name).unlink(missing_ok=True)
            elif earliest := [b for b in backups if b.name.startswith(f"{name}.")][:1]:
                # Postfix came with the first hour: as it was before doctor changed it
                shutil.copy2(earliest[0], POSTFIX / name)
        for backup in backups:
            backup.unlink()

    # Postfix stops while its main.cf is still there (without one, `postfix stop` cannot
    # run); then the files come back, then Postfix runs again if it ran before.
    attempt("stop the units", lambda: subprocess.run(
        ["systemctl", "stop", "postwacht", "postwacht-release"], env=env,
        capture_output=True, check=False, timeout=300))
    if postfix_running():
        attempt("stop Postfix", lambda: subprocess.run(
            ["postfix", "stop"], capture_output=True, check=True, timeout=120))
    attempt("restore main.cf and master.cf", files)
    if machine.postfix_running:
        attempt("start Postfix again", lambda: subprocess.run(
            ["postfix", "start"], capture_output=True, check=True, timeout=120))
    elif postfix_running():
        failed.append("Postfix still runs after the test")
    uninstalled: list[subprocess.CompletedProcess[str]] = []
    attempt("make uninstall", lambda: uninstalled.append(make("uninstall")))
    if (machine.saved / "policy.yaml").exists():
        attempt("restore the policy", lambda: shutil.copy2(
            machine.saved / "policy.yaml", CONFIG / "policy.yaml"))
    elif not machine.config:
        attempt("remove /etc/postwacht", lambda: shutil.rmtree(CONFIG, ignore_errors=True))
    if not machine.state:
        attempt("remove the records", lambda: shutil.rmtree(STATE, ignore_errors=True))
    for table, was_there in machine.tables.items():
        if not was_there:
            attempt(f"remove {table}", lambda table=table: table.unlink(missing_ok=True))
    logs = "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                   for log in (machine.saved / "units").glob("*.log"))
    shutil.rmtree(machine.saved, ignore_errors=True)
    assert not failed, "\n".join(failed) + logs
    [done] = uninstalled
    assert done.returncode == 0, done.stdout + done.stderr + logs


def test_the_first_hour_runs_as_written(fresh_machine: Machine) -> None:
    env = shell_env(fresh_machine)
    said = []
    for step in steps(README.read_text()):
        result = subprocess.run(["bash", "-c", step.command], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                                check=False)
        said.append(f"$ {step.command}\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
        assert result.returncode == step.exits, (
            f"{step.command!r} exited {result.returncode}, not {step.exits}\n"
            + "\n".join(said))
    everything = "\n".join(said)
    # both refusals gave the sender the address to use instead ...
    assert everything.count("550 5.7.1") >= 2, everything
    assert "dossier@samen-veilig.nl" in everything
    # ... and the report lists both attempts, over submission and over port 25
    report = said[-1]
    assert re.search(r"^\s+2\s+bjzutrecht\.nl\s+from medewerker@samen-veilig\.nl",
                     report, re.MULTILINE), everything
