"""A private Postfix on loopback for the benchmarks: its own directories, smtpd listeners
of its own, everything relayed to `smtp-sink`, and the processes around it.

Needs root (Postfix's master runs as root) and Debian's postfix package, which ships
smtp-sink and smtp-source. Nothing here depends on pytest; the integration tests have a
lab of their own (tests/integration/conftest.py) that this one follows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

DEADLINE = 60.0
T = TypeVar("T")


def poll(condition: Callable[[], T], what: str, timeout: float = DEADLINE,
         interval: float = 0.05) -> T:
    """The condition's first truthy value; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        pause.wait(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:PORT, without connecting to it (a connection
    to smtpd would start a session, and one to a milter a conversation)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
            return True
    return False


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces and ')'
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class Process:
    """A command started in the background, its output in `log`."""

    def __init__(self, args: Sequence[str], log: Path, env: Mapping[str, str] | None = None
                 ) -> None:
        self.args = list(args)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready: Callable[[], bool], what: str) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=log, env=self.env)
        process = self.process
        poll(lambda: process.poll() is not None or ready(), what)
        if process.poll() is not None:
            raise RuntimeError(f"{what}: the process ended ({process.returncode}):\n"
                               f"{self.log_text()}")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting; `stop` waits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def smtp_sink(root: Path, port: int) -> Process:
    """smtp-sink: accepts every message and throws it away (it drops root for postfix)."""
    return Process(["smtp-sink", "-u", "postfix", f"127.0.0.1:{port}", "1000"],
                   root / "smtp-sink.log")


@dataclass
class LogCounts:
    """What the Postfix log says happened since a mark."""

    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    tempfailed: int = 0  # refused with 4xx by smtpd or a milter
    rejected: int = 0  # refused with 5xx
    warnings: int = 0

    def add(self, line: str) -> None:
        if " status=sent " in line:
            self.sent += 1
        elif " status=deferred " in line:
            self.deferred += 1
        elif " status=bounced " in line:
            self.bounced += 1
        if " reject: " in line or " milter-reject: " in line:
            if re.search(r": 4\d\d[ -]", line):
                self.tempfailed += 1
            else:
                self.rejected += 1
        if " warning: " in line or " fatal: " in line or " error: " in line:
            self.warnings += 1


class LogTail:
    """Reads the lines Postfix has added to its log since the tail was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.counts = LogCounts()
        self.notable: list[str] = []
        self._partial = b""

    def read(self) -> LogCounts:
        if self.path.exists():
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
            self.offset += len(data)
            *lines, self._partial = (self._partial + data).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                before = (self.counts.warnings, self.counts.tempfailed, self.counts.rejected)
                self.counts.add(line)
                if before != (self.counts.warnings, self.counts.tempfailed,
                              self.counts.rejected) and len(self.notable) < 20:
                    self.notable.append(line)
        return self.counts


class Postfix:
    """A private Postfix instance: one smtpd listener per port in `services`, each with
    its own `smtpd_milters` (empty for none), everything relayed to the sink."""

    def __init__(self, root: Path, sink_port: int, services: Mapping[int, str]) -> None:
        self.root = root
        self.sink_port = sink_port
        self.services = dict(services)

    @property
    def config(self) -> Path:
        return self.root / "conf"

    @property
    def maillog(self) -> Path:
        return self.root / "log" / "maillog"

    def postconf(self, *args: str) -> None:
        subprocess.run(["postconf", "-c", str(self.config), *args], check=True)

    def setup(self) -> None:
        for sub in ("conf", "queue", "data", "log"):
            (self.root / sub).mkdir(mode=0o755)
        self.root.chmod(0o755)
        shutil.chown(self.root / "data", user="postfix")
        shutil.copy("/etc/postfix/master.cf", self.config / "master.cf")
        r = self.root
        (self.config / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
myhostname = mta.postwacht.test
mydomain = postwacht.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
default_transport = smtp:[127.0.0.1]:{self.sink_port}
maillog_file = {r}/log/maillog
maillog_file_prefixes = {r}/log
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
milter_default_action = tempfail
enable_long_queue_ids = yes
""")
        self.postconf("-F", "*/*/chroot = n")
        self.postconf("-MX", "smtp/inet")
        for port, milters in self.services.items():
            service = f"127.0.0.1:{port}"
            self.postconf("-M", f"{service}/inet={service} inet n - n - - smtpd")
            if milters:
                self.postconf("-P", f"{service}/inet/smtpd_milters={milters}")

    def start(self) -> None:
        result = subprocess.run(["postfix", "-c", str(self.config), "start"],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.maillog.read_text() if self.maillog.exists() else "(no log)"
            raise RuntimeError(f"postfix did not start: {result.stderr}\n{log}")
        poll(lambda: all(listening(port) for port in self.services), "postfix's listeners")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"],
                       capture_output=True, check=False)

    def queue(self) -> list[dict[str, Any]]:
        out = subprocess.run(["postqueue", "-c", str(self.config), "-j"],
                             capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def tail(self) -> LogTail:
        return LogTail(self.maillog)
