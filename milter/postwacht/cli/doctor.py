"""`postwacht doctor`: does Postfix hand every message to the filter, and do they agree?

Reads the Postfix configuration (`postconf`, `postconf -M`, `postconf -P`) and the policy,
asks the running filter whether it answers, and says, line by line with the fix, what is
missing or contradicts the filter (`core.postfixconf` judges; this module runs the
commands). Exit 0 when nothing must be fixed, 1 otherwise. `--apply` saves main.cf and
master.cf, makes the changes `postconf` can make, and reloads a running Postfix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import grp
import pwd
import shlex
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postwacht import defaults
from postwacht.adapters.netstring import NetstringError, encode, read_netstring
from postwacht.cli.common import ExitCode, load_policy
from postwacht.core.postfixconf import (
    Endpoints,
    Finding,
    Service,
    diagnose,
    parse_main,
    parse_master,
    split_list,
)

POLICY = "/etc/postwacht/policy.yaml"
MILTER = "inet:127.0.0.1:8894"
SOCKETMAP = "inet:127.0.0.1:8895"
USER = "postwacht"
DEBIAN_MAIN_CF = Path("/usr/share/postfix/main.cf.debian")
"""Debian's starting main.cf; its "No configuration" choice leaves none at all."""
TIMEOUT = 10.0
WAIT = 10.0
"""Seconds a filter that does not listen yet may take to answer (it may be starting)."""
MAX_WAIT = 300.0


def add_parsers(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor", help="check that Postfix hands every message to the filter",
        description="Check Postfix's configuration against the filter and its policy, and "
                    "say what to change. Exit 0: all is well; 1: something must be fixed.")
    doctor.add_argument("--postfix-config", default=defaults.POSTFIX_CONFIG, metavar="DIR",
                        help="Postfix's configuration directory "
                             f"(default {defaults.POSTFIX_CONFIG})")
    doctor.add_argument("--policy", default=POLICY, metavar="POLICY",
                        help=f"the policy the filter runs (default {POLICY})")
    doctor.add_argument("--milter", default=MILTER, metavar="SOCKET",
                        help=f"the filter's milter socket as Postfix names it (default {MILTER})")
    doctor.add_argument("--socketmap", default=SOCKETMAP, metavar="SOCKET",
                        help=f"the filter's socketmap as Postfix names it (default {SOCKETMAP})")
    doctor.add_argument("--submission", action="append", default=[], metavar="SERVICE",
                        help="a master.cf service (name or name/type) that mail clients "
                             "submit through, beside submission and submissions; repeat "
                             "for more")
    doctor.add_argument("--user", default=USER,
                        help=f"the user the filter runs as (default {USER})")
    doctor.add_argument("--wait", type=_seconds, default=WAIT, metavar="SECONDS",
                        help="how long a filter that does not listen yet (just started) "
                             f"may take to answer (default {WAIT:g})")
    doctor.add_argument("--apply", action="store_true",
                        help="save main.cf and master.cf, make the changes postconf can make, "
                             "and reload Postfix if it runs")
    doctor.set_defaults(run=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    config = Path(args.postfix_config).absolute()  # main.cf gets absolute table paths
    endpoints = Endpoints(args.milter, args.socketmap, str(config))
    print(f"postwacht doctor: Postfix configuration {config}, policy {args.policy}")
    try:
        if args.apply and not (config / "main.cf").exists() and DEBIAN_MAIN_CF.exists():
            shutil.copyfile(DEBIAN_MAIN_CF, config / "main.cf")
            print(f"made {config / 'main.cf'} from {DEBIAN_MAIN_CF}")
        findings = _findings(args, config, endpoints, args.wait)
        if args.apply and any(f.postconf for f in findings):
            _apply(config, findings)
            findings = _findings(args, config, endpoints, 0.0)  # it was waited for
    except OSError as exc:  # --apply without the right to write there, say
        print(f"postwacht doctor: {exc}")
        return ExitCode.FAILED
    return _report(findings, config)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= MAX_WAIT:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to "
                                         f"{MAX_WAIT:g}")
    return value


def _findings(args: argparse.Namespace, config: Path, endpoints: Endpoints,
              wait: float) -> list[Finding]:
    found = _service_user(args.user, Path(args.policy))
    policy = load_policy(args.policy)
    if policy is None:
        found.append(Finding("policy", f"{args.policy} cannot be used (see above)",
                             "mend it: postwacht check shows every problem"))
    else:
        found += [Finding("policy", warning, "see README, \"Rolling out: monitor first\"",
                          must=False) for warning in policy.warnings()]
    main, services, trouble = _postfix(config)
    if trouble is not None:
        return [*found, trouble]
    if policy is not None:
        found += diagnose(main, services, policy, endpoints, frozenset(args.submission))
    found += _missing_files(main)
    queue = Path(main.get("queue_directory", "/var/spool/postfix"))
    found += _answers(endpoints, queue, wait)
    return found


def _postconf() -> str | None:
    """postconf, also where a user's PATH leaves out /usr/sbin."""
    return shutil.which("postconf") or shutil.which("postconf", path="/usr/sbin:/sbin")


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    """A Postfix command; a hang or a missing program is an answer, not a traceback."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))


def _postfix(config: Path) -> tuple[dict[str, str], list[Service], Finding | None]:
    postconf = _postconf()
    if postconf is None:
        return {}, [], Finding("postfix", "postconf is not installed",
                               "install Postfix (apt install postfix)")
    if not (config / "main.cf").exists():
        fix = (f"cp {DEBIAN_MAIN_CF} {config / 'main.cf'}, or doctor --apply"
               if DEBIAN_MAIN_CF.exists() else "write one: postconf(5) lists its settings")
        return {}, [], Finding(f"{config / 'main.cf'}", "does not exist: Postfix has no "
                               "configuration (Debian's \"No configuration\" choice)", fix)
    outputs = []
    # Judged on the values as Postfix uses them ($smtpd_milters expanded, -x).
    for flags in (("-x",), ("-M",), ("-P", "-x")):
        result = _run([postconf, "-c", str(config), *flags])
        if result.returncode != 0:
            return {}, [], Finding(f"postconf -c {config} {' '.join(flags)}".strip(),
                                   result.stderr.strip() or f"exit {result.returncode}",
                                   "mend the file it names")
        outputs.append(result.stdout)
    return parse_main(outputs[0]), parse_master(outputs[1], outputs[2]), None


def _missing_files(main: dict[str, str]) -> list[Finding]:
    """Our header-check files that main.cf names but that are not there: Postfix would
    defer every delivery that asks them."""
    found = []
    for name in ("milter_header_checks", "smtp_header_checks"):
        for item in split_list(main.get(name, "")):
            kind, _, path = item.partition(":")
            if kind in ("regexp", "pcre") and "postwacht" in path and not Path(path).exists():
                found.append(Finding(f"main.cf: {name}", f"names {path}, which does not exist",
                                     "make install puts it there (from deploy/postfix)"))
    return found


def _service_user(user: str, policy: Path) -> list[Finding]:
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return [Finding(f"user {user}", "does not exist: the filter's service runs as it",
                        "make install creates it (or --user names the one you use)")]
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    blocked = _unreadable(policy, account.pw_uid, groups)
    if blocked is None:
        return []
    return [Finding(f"{policy}", f"user {user} cannot read it ({blocked})",
                    f"chgrp {user} {policy} && chmod g+r {policy} (and let the group "
                    "through its directories)")]


def _unreadable(path: Path, uid: int, groups: set[int]) -> str | None:
    """Why `uid` with `groups` cannot read `path` (a directory on the way, or the file),
    None when it can. Root can read everything; access control lists are not read."""
    if uid == 0:
        return None
    steps = []
    # The directories on the way as written, and those of the file a link leads to.
    for chain in (path.absolute(), path.resolve()):
        steps += [(p, 0o1, "search") for p in reversed(chain.parents)]
    steps.append((path.resolve(), 0o4, "read"))
    for step, bit, what in steps:
        try:
            st = step.stat()
        except OSError as exc:
            return f"{step}: {exc.strerror}"
        if st.st_uid == uid:
            allowed = st.st_mode & (bit << 6)
        elif st.st_gid in groups:
            allowed = st.st_mode & (bit << 3)
        else:
            allowed = st.st_mode & bit
        if not allowed:
            return f"no {what} permission on {step}"
    return None


def _answers(endpoints: Endpoints, queue: Path, wait: float) -> list[Finding]:
    """Whether the milter and the socketmap answer. A filter that nobody listens for yet
    (refused, or no socket) gets up to `wait` seconds: `systemctl start` returns before
    the filter listens, and the README runs doctor right after it."""
    found = []
    checks: list[tuple[str, Callable[[Endpoints, Path], str | None]]] = [
        (f"milter {endpoints.milter}", _milter_answers),
        (f"socketmap {endpoints.socketmap}", _socketmap_answers)]
    until = time.monotonic() + wait
    for where, ask in checks:
        told = False
        while True:
            try:
                trouble = ask(endpoints, queue)
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                trouble = str(exc)
                if time.monotonic() < until:
                    if not told:
                        print(f"waiting up to {wait:g} s for the {where} to answer")
                        told = True
                    time.sleep(0.2)  # a person waits here, no test
                    continue
            except (OSError, NetstringError) as exc:
                trouble = str(exc)
            break
        if trouble is not None:
            found.append(Finding(where, f"does not answer ({trouble})",
                                 "start the filter: systemctl start postwacht"))
    return found


def _milter_answers(endpoints: Endpoints, queue: Path) -> str | None:
    with _connect(endpoints.milter, queue) as sock:
        # A milter's first words: option negotiation, version 6, every action and step.
        sock.sendall(struct.pack("!IcIII", 13, b"O", 6, 0x1FF, 0x1FFFFF))
        answer = b""
        while len(answer) < 5:
            more = sock.recv(5 - len(answer))
            if not more:
                break
            answer += more
    return None if answer[4:5] == b"O" else "no option negotiation in its answer"


def _socketmap_answers(endpoints: Endpoints, queue: Path) -> str | None:
    with _connect(endpoints.socketmap, queue) as sock:
        sock.sendall(encode("transport doctor@postwacht.invalid"))
        answer = read_netstring(sock.makefile("rb"))
    return None if answer is not None else "closed without an answer"


def _connect(spec: str, queue: Path) -> socket.socket:
    """A socket connected to `spec` in Postfix's notation: `inet:HOST:PORT`, or
    `unix:PATH` (relative to Postfix's queue directory, as Postfix reads it)."""
    kind, _, where = spec.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX)
        address: Any = str(queue / where)
    elif kind in ("inet", "inet6"):
        host, _, port = where.rpartition(":")
        sock = socket.socket(socket.AF_INET6 if kind == "inet6" else socket.AF_INET)
        address = (host.strip("[]"), int(port)) if port.isdigit() else None
        if address is None:
            sock.close()
            raise OSError(f"{spec!r} names no port")
    else:
        raise OSError(f"{spec!r} is not inet:HOST:PORT or unix:PATH")
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def _apply(config: Path, findings: list[Finding]) -> None:
    """Save main.cf and master.cf, then make the changes that are safe now: none that
    makes Postfix wait on a filter that does not answer, or names a file that is not
    there (either would stop mail). Reload Postfix only when every change was made."""
    answers = not any(f.where.startswith(("milter ", "socketmap ")) for f in findings)
    for name in ("main.cf", "master.cf"):
        if (config / name).exists():
            saved = _backup(config / name)
            print(f"saved {config / name} as {saved}")
    failed = False
    for finding in findings:
        if not finding.postconf:
            continue
        if finding.needs_filter and not answers:
            print(f"not changed {finding.where}: the filter does not answer yet, and Postfix "
                  "would then hold back all mail; start it and run --apply again")
            continue
        if finding.needs_file and not Path(finding.needs_file).exists():
            print(f"not changed {finding.where}: {finding.needs_file} is not there, and "
                  "Postfix would defer mail that asks it; make install puts it there")
            continue
        command = [_postconf() or "postconf", "-c", str(config), *finding.postconf]
        result = _run(command)
        if result.returncode != 0:
            failed = True
            print(f"failed: {shlex.join(command)}: {result.stderr.strip()}")
        else:
            print(f"changed {finding.where}: {shlex.join(command[3:])}")
    if failed:
        print("Postfix not reloaded, as a change failed; the changes made are in the files "
              "all the same and take effect as Postfix's processes restart: mend the failed "
              "one, or put the saved files (above) back")
        return
    if _run(["postfix", "-c", str(config), "status"]).returncode == 0:
        reload = _run(["postfix", "-c", str(config), "reload"])
        print("reloaded Postfix" if reload.returncode == 0 else
              f"postfix reload failed: {reload.stderr.strip()}")
    else:
        print("Postfix is not running: the changes apply when it starts")


def _backup(path: Path) -> Path:
    """A copy of `path` beside it under a name no earlier copy has."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for number in range(1000):
        saved = path.with_name(f"{path.name}.before-postwacht-{stamp}"
                               + (f".{number}" if number else ""))
        try:
            with saved.open("xb") as out:
                out.write(path.read_bytes())
        except FileExistsError:
            continue
        shutil.copystat(path, saved)
        return saved
    raise OSError(f"no free name to save {path} beside it")


def _report(findings: list[Finding], config: Path) -> int:
    must = [f for f in findings if f.must]
    for finding in [*must, *(f for f in findings if not f.must)]:
        print(f"{'FIX ' if finding.must else 'NOTE'} {finding.where}: {finding.problem}")
        print(f"     {'fix' if finding.must else 'what to do'}: {finding.fix}")
        if finding.postconf:
            print(f"     run: {shlex.join(['postconf', '-c', str(config), *finding.postconf])}")
    notes = len(findings) - len(must)
    if not must:
        print("all is well" + (f" ({notes} note{'s' if notes != 1 else ''})" if notes else ""))
        return ExitCode.OK
    can = sum(1 for f in must if f.postconf)
    print(f"{len(must)} to fix"
          + (f", {can} of them by `postwacht doctor --apply`" if can else ""))
    return ExitCode.FAILED

