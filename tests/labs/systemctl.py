"""`systemctl start|restart|stop|reload UNIT...` where systemd does not run (CI has no
init system): each unit's own lines, read from its installed file, carried out as
systemd would for these units: `ExecStartPre`, then `ExecStart` (a `simple` service in
the background, as its `User` with its `SupplementaryGroups` and `UMask`; a `forking`
one waited for), `ExecStop`, `ExecReload`. Other verbs (enable, daemon-reload,
is-active) go to the real systemctl, which does them without a running systemd. Enough
for the README's first hour, whose commands must run as written.

Usage: python3 systemctl.py VERB UNIT...   (state in $SYSTEMCTL_STATE, a directory)
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

UNIT_DIRS = (Path("/etc/systemd/system"), Path("/lib/systemd/system"))
ALIASES = {"postfix": "postfix@-"}
"""Debian's postfix.service only pulls in the default instance postfix@-.service."""
STOP_WAIT = 100.0
REAL = "/usr/bin/systemctl"


def unit_file(name: str) -> tuple[Path, str]:
    name = ALIASES.get(name.removesuffix(".service"), name.removesuffix(".service"))
    instance = ""
    if "@" in name:
        name, _, instance = name.partition("@")
        name += "@"
    for directory in UNIT_DIRS:
        path = directory / f"{name}.service"
        if path.exists():
            return path, instance
    sys.exit(f"systemctl (shim): unit {name}.service not found")


def settings(path: Path, instance: str) -> dict[str, list[str]]:
    """The [Service] section's settings, continuation lines joined, %i filled in."""
    found: dict[str, list[str]] = {}
    section = ""
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(specifiers(value.strip(), instance))
    return found


def specifiers(value: str, instance: str) -> str:
    """systemd's %i (the instance), %H (the host name) and %% in a setting."""
    names = {"i": instance, "H": socket.gethostname(), "%": "%"}
    return re.sub(r"%(.)", lambda m: names.get(m[1], m[0]), value)


def command(value: str) -> tuple[list[str], bool]:
    """An Exec line as argv, and whether its failure is ignored (`-` prefix)."""
    ignore = value.startswith("-")
    return value.lstrip("-@+!").split(), ignore


def run_as(unit: dict[str, list[str]]) -> dict[str, object]:
    """Popen arguments that drop to the unit's user, groups and umask."""
    user = unit.get("User", ["root"])[-1]
    groups = [g for value in unit.get("SupplementaryGroups", []) for g in value.split()]
    umask = int(unit.get("UMask", ["0022"])[-1], 8)
    account = pwd.getpwnam(user)

    def drop() -> None:
        os.umask(umask)
        if account.pw_uid != 0:
            os.setgroups([account.pw_gid, *(_gid(g) for g in groups)])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": account.pw_dir, "USER": user, "LANG": "C.UTF-8"}
    return {"preexec_fn": drop, "env": env, "cwd": "/"}


def _gid(name: str) -> int:
    return grp.getgrnam(name).gr_gid


def start(name: str, state: Path) -> None:
    path, instance = unit_file(name)
    unit = settings(path, instance)
    for value in unit.get("ExecStartPre", []):
        argv, ignore = command(value)
        as_unit = {} if value.lstrip("-@!").startswith("+") else run_as(unit)
        if subprocess.run(argv, check=False, **as_unit).returncode != 0 and not ignore:  # type: ignore[call-overload]
            sys.exit(f"systemctl (shim): {name}: ExecStartPre {value} failed")
    [value] = unit["ExecStart"][-1:]
    argv, _ = command(value)
    if unit.get("Type", ["simple"])[-1] == "forking":
        if subprocess.run(argv, check=False).returncode != 0:
            sys.exit(f"systemctl (shim): {name}: {value} failed")
        return
    log = (state / f"{name}.log").open("ab")
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               start_new_session=True, **run_as(unit))  # type: ignore[call-overload]
    (state / f"{name}.pid").write_text(str(process.pid))


def stop(name: str, state: Path) -> None:
    path, instance = unit_file(name)
    unit = settings(path, instance)
    for value in unit.get("ExecStop", []):
        subprocess.run(command(value)[0], check=False)
    pidfile = state / f"{name}.pid"
    if not pidfile.exists():
        return
    try:
        process = os.pidfd_open(int(pidfile.read_text()))  # the process, not a reused pid
    except ProcessLookupError:
        process = None
    if process is not None:
        with os.fdopen(process) as handle, contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(handle.fileno(), signal.SIGTERM)
            # The descriptor turns readable when the process has ended: no polling.
            ended, _, _ = select.select([handle], [], [], STOP_WAIT)
            if not ended:  # systemd's TimeoutStopSec ends in SIGKILL too
                signal.pidfd_send_signal(handle.fileno(), signal.SIGKILL)
    pidfile.unlink()


def reload(name: str, state: Path) -> None:
    path, instance = unit_file(name)
    for value in settings(path, instance).get("ExecReload", []):
        subprocess.run(command(value)[0], check=True)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: systemctl (shim) start|restart|stop|reload UNIT...")
    verb, units = argv[0], argv[1:]
    if verb not in ("start", "restart", "stop", "reload"):
        # enable, disable, daemon-reload, is-active...: systemctl does those itself
        # without a running systemd (links in /etc, or "offline" answers).
        os.execv(REAL, [REAL, *argv])
    state = Path(os.environ["SYSTEMCTL_STATE"])
    for name in units:
        if verb == "start":
            start(name, state)
        elif verb == "restart":
            stop(name, state)
            start(name, state)
        elif verb == "stop":
            stop(name, state)
        elif verb == "reload":
            reload(name, state)


if __name__ == "__main__":
    main(sys.argv[1:])
