"""A real Postfix on loopback, a real SMTP sink as the outside world, the daemon and its
release helper.

Postfix is configured from `deploy/postfix/` (the lines a postmaster adds), on top of
a private instance: its own config, queue, data and log directories, chroot off, smtpd
listeners on free loopback ports, and every outgoing message relayed to the sink. Needs
root (Postfix's master runs as root) and Debian's postfix package (`make test` installs
it). Each lab names its MTA, so that two labs sharing one PostgreSQL records store are
two MTAs of one organisation.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from postwacht.records.locate import open_records
from postwacht.records.store import RecordStore

from tests.conftest import EXAMPLE_POLICY, ROOT
from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer
from tests.labs.rdap import RdapServer
from tests.labs.util import DEADLINE, free_port, poll, port_open

DEPLOY = ROOT / "deploy" / "postfix"
POSTWACHT = str(Path(sys.executable).with_name("postwacht"))
ALIAS = "oldteam@samen-veilig.nl"
"""A virtual alias that expands to a retired address and an ordinary one."""


@dataclass
class Delivered:
    sender: str
    recipients: list[str]
    content: bytes


class Sink:
    """The outside world: an SMTP server that keeps what it receives."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[Delivered] = []
        self._controller = Controller(self, hostname=host, port=self.port,
                                      tls_context=tls, require_starttls=tls is not None)

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("defer-"):
            return "451 4.3.0 try again later"  # leaves the message in Postfix's queue
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            Delivered(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def received(self, recipient: str) -> list[Delivered]:
        return [m for m in self.messages if recipient in m.recipients]

    def with_marker(self, marker: str) -> list[Delivered]:
        return [m for m in self.messages if marker.encode() in m.content]


@dataclass(frozen=True)
class Ports:
    """The daemon's listeners for one test run (the deploy files say 8894 and 8895)."""

    milter: int = field(default_factory=free_port)
    socketmap: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)


def deploy_main_cf(ports: Ports) -> list[str]:
    """The `name = value` settings of deploy/postfix/main.cf, pointed at `ports`."""
    settings = []
    for line in (DEPLOY / "main.cf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            settings.append(
                line.replace("inet:127.0.0.1:8894", f"inet:127.0.0.1:{ports.milter}")
                .replace("inet:127.0.0.1:8895", f"inet:127.0.0.1:{ports.socketmap}")
                .replace("/etc/postfix/postwacht_header_checks", str(DEPLOY / "header_checks"))
                .replace("/etc/postfix/postwacht_smtp_header_checks",
                         str(DEPLOY / "smtp_header_checks"))
            )
    return settings


def deploy_master_services() -> dict[str, tuple[str, list[str]]]:
    """deploy/postfix/master.cf's services: name -> (the service line, its `-o` options)."""
    services: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in (DEPLOY / "master.cf").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if not line[0].isspace():
            name = line.split()[0]
            services[name] = (line, [])
        else:
            option = re.fullmatch(r"\s+-o\s+(\S+)", line)
            assert option is not None, f"deploy/postfix/master.cf: {line!r} is not -o name=value"
            services[name][1].append(option[1])
    return services


def deploy_master_options() -> list[str]:
    """The `-o name=value` options deploy/postfix/master.cf adds to submission services."""
    return deploy_master_services()["submission"][1]


def deploy_nta7516_service(ports: Ports) -> str:
    """deploy/postfix/master.cf's nta7516 transport, as one `postconf -M` entry, pointed
    at `ports`."""
    line, options = deploy_master_services()["nta7516"]
    entry = " ".join([line, *(f"-o {o}" for o in options)])
    return entry.replace("inet:127.0.0.1:8895", f"inet:127.0.0.1:{ports.socketmap}")


@dataclass
class PostfixInstance:
    root: Path
    sink_port: int
    ports: Ports
    submission_port: int = field(default_factory=free_port)
    inbound_port: int = field(default_factory=free_port)
    deploy: bool = True
    """False: none of deploy/postfix's lines, as on a Postfix the filter is new to."""

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
milter_command_timeout = 10s
virtual_alias_maps = inline:{{ {{ {ALIAS} = worker@bjzutrecht.nl, team@example.org }} }}
""")
        if self.deploy:
            self.postconf("-e", *deploy_main_cf(self.ports))
        self.postconf("-F", "*/*/chroot = n")
        self.postconf("-MX", "smtp/inet")
        for port in (self.submission_port, self.inbound_port):
            self.postconf("-M", f"127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd")
        for option in deploy_master_options() if self.deploy else []:
            self.postconf("-P", f"127.0.0.1:{self.submission_port}/inet/{option}")
        if self.deploy:
            self.postconf("-M", f"nta7516/unix={deploy_nta7516_service(self.ports)}")

    def start(self, wrap: Sequence[str] = ()) -> None:
        """Start Postfix, its command run through `wrap` when given (a namespace)."""
        result = subprocess.run([*wrap, "postfix", "-c", str(self.config), "start"],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.maillog.read_text() if self.maillog.exists() else "(no log)"
            pytest.fail(f"postfix did not start: {result.stderr}\n{log}")
        poll(lambda: port_open(self.submission_port) and port_open(self.inbound_port),
             "postfix smtpd listeners")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"],
                       capture_output=True, check=False)

    def queue(self) -> list[dict[str, Any]]:
        out = subprocess.run(["postqueue", "-c", str(self.config), "-j"],
                             capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def held(self) -> list[dict[str, Any]]:
        return [e for e in self.queue() if e["queue_name"] == "hold"]

    def postsuper(self, *args: str) -> None:
        subprocess.run(["postsuper", "-c", str(self.config), *args], check=True,
                       capture_output=True)

    def submit(
        self, sender: str, recipients: list[str], marker: str, port: int | None = None
    ) -> dict[str, tuple[int, bytes]]:
        """Send over SMTP; return the refused recipients (as smtplib reports them)."""
        message = f"From: <{sender}>\r\nSubject: test {marker}\r\n\r\n{marker}\r\n"
        with smtplib.SMTP("127.0.0.1", port or self.submission_port, timeout=30) as smtp:
            try:
                refused = smtp.sendmail(sender, recipients, message)
            except smtplib.SMTPRecipientsRefused as exc:
                return dict(exc.recipients)
        return dict(refused)

    def sendmail(self, sender: str, recipients: list[str], marker: str) -> None:
        message = f"From: <{sender}>\nSubject: test {marker}\n\n{marker}\n"
        subprocess.run(["sendmail", "-C", str(self.config), "-f", sender, *recipients],
                       input=message, text=True, check=True, timeout=30)


class Process:
    """A postwacht command as a separate process, its output in `log`."""

    log: Path
    process: subprocess.Popen[bytes] | None = None

    def spawn(self, args: list[str], ready: Callable[[], bool], what: str,
              env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> None:
        """Start `postwacht ARGS` (under `prefix`, a command that runs it); wait until
        `ready` holds, or fail with the log if the process ends first."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*prefix, POSTWACHT, *args], stdout=log,
                                            stderr=log, env=env)
        poll(lambda: self.process is not None and (self.process.poll() is not None
                                                    or ready()), what)
        assert self.process.poll() is None, self.log_text()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=DEADLINE)
        self.process = None
        return code

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def logged(self, text: str) -> str:
        """The log once it holds `text`: the daemon writes its log from a queue, so a
        line may land a moment after the reply that it explains."""
        return str(poll(lambda: text in (log := self.log_text()) and log,
                        f"{text!r} in the log"))


class Daemon(Process):
    """`postwacht serve` as a separate process, the way it runs in production, as MTA
    `mta`. With `postfix_config` it follows that Postfix's hold queue every half second;
    without one there is no Postfix to follow, and it looks only once an hour."""

    def __init__(self, root: Path, policy: Path, ports: Ports | None = None,
                 cafile: Path | None = None, *, mta: str = "lab",
                 postfix_config: Path | None = None, records: str | None = None) -> None:
        self.root = root
        self.env = dict(os.environ)
        if cafile is not None:
            self.env["SSL_CERT_FILE"] = str(cafile)  # trust the MTA-STS lab's test CA
        self.policy = policy
        self.ports = ports or Ports()
        self.milter_port = self.ports.milter
        self.metrics_port = self.ports.metrics
        self.state = root / "state"
        self.log = root / "postwacht.log"
        self.mta = mta
        self.postfix_config = postfix_config
        self.records = records
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def records_options(self) -> list[str]:
        """Where the records are, as every command that reads them is told."""
        return ["--state", str(self.state), *(["--records", self.records] if self.records
                                              else [])]

    def start(self) -> None:
        follow = (["--postfix-config", str(self.postfix_config), "--sync-interval", "0.5"]
                  if self.postfix_config else ["--sync-interval", "3600"])
        self.spawn(["serve", "--policy", str(self.policy),
                    "--milter", f"inet:{self.milter_port}@127.0.0.1",
                    "--metrics", f"127.0.0.1:{self.metrics_port}",
                    "--socketmap", f"127.0.0.1:{self.ports.socketmap}",
                    *self.records_options, "--check-interval", "0.2", "--mta", self.mta,
                    "--requests-interval", "0.2", *follow],
                   lambda: port_open(self.milter_port), "the milter to listen", self.env)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([POSTWACHT, *args], capture_output=True, text=True,
                              timeout=60, check=False)

    def metric(self, name: str, absent: float | None = 0.0) -> float | None:
        """The value of one sample (`name{labels}` as exposed); `absent` when missing
        (0 suits counters that were never incremented)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return absent


class ReleaseHelper(Process):
    """`postwacht release-helper` as a separate process (root, as in production), on the
    socket where the daemon looks for it by default (STATE/release.sock)."""

    def __init__(self, root: Path, daemon: Daemon, postfix: PostfixInstance) -> None:
        self.daemon = daemon
        self.postfix = postfix
        self.socket = daemon.state / "release.sock"
        self.log = root / "release-helper.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.spawn(["release-helper", "--socket", str(self.socket), "--mta", self.daemon.mta,
                    *self.daemon.records_options, "--postfix-config", str(self.postfix.config),
                    "--socket-group", "root"],  # the daemon runs as root here
                   self.socket.is_socket, "the release helper to listen")


def write_test_policy(path: Path, **changes: Any) -> None:
    """The example policy, with loopback not counted as internal (so inbound can be
    tested), without the secure-transport rule (the Postfix lab has no DNS; tests of that
    rule add it back with the DNS lab's resolver), and any top-level `changes`."""
    policy = yaml.safe_load(EXAMPLE_POLICY.read_text())
    policy["outbound"] = {"authenticated": True, "networks": ["10.0.0.0/8"],
                          "daemon_names": ["ORIGINATING"]}
    for key in ("sensitive", "secure_transport", "dns"):
        policy.pop(key)
    policy.update(changes)
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


@dataclass
class Lab:
    postfix: PostfixInstance
    sink: Sink
    daemon: Daemon
    helper: ReleaseHelper | None = None

    @property
    def mta(self) -> str:
        return self.daemon.mta

    def quarantine(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli("quarantine", *self.daemon.records_options, *args)

    @contextlib.contextmanager
    def records(self) -> Iterator[RecordStore]:
        """The daemon's records store, opened as a review command opens it."""
        store = open_records(self.daemon.records, self.daemon.state, create=False,
                             mta=self.mta)
        try:
            yield store
        finally:
            store.close()


def held_for(lab: Lab, recipient: str) -> dict[str, object]:
    entries = poll(
        lambda: [e for e in lab.postfix.held()
                 if any(r["address"].lower() == recipient.lower() for r in e["recipients"])],
        f"a held message for {recipient}",
    )
    assert len(entries) == 1
    entry: dict[str, object] = entries[0]
    return entry



def require_root() -> None:
    if os.geteuid() != 0 or shutil.which("postfix") is None:
        pytest.fail("integration tests need root and Debian's postfix package "
                    "(run them through `make test`)")


@pytest.fixture(scope="module")
def lab(sts_server: StsServer) -> Iterator[Lab]:
    with running_lab("postwacht-lab-", cafile=sts_server.cafile) as started:
        yield started


@contextlib.contextmanager
def running_lab(prefix: str, cafile: Path | None = None, umask: int | None = None, *,
                mta: str = "lab", records: str | None = None,
                policy: dict[str, Any] | None = None,
                postfix_setup: Callable[[PostfixInstance], Sequence[str]] | None = None,
                ) -> Iterator[Lab]:
    """Postfix, a sink, the daemon as MTA `mta` and its release helper, on the test
    policy with the top-level `policy` changes; the records in PostgreSQL at `records`
    (else SQLite under the daemon's state directory). The daemon is started under `umask`
    when given (the README's manual start runs with root's 022). `postfix_setup` changes
    Postfix's configuration before it starts, and returns what to start it through."""
    require_root()
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    sink = Sink()
    sink.start()
    ports = Ports()
    policy_file = root / "policy.yaml"
    write_test_policy(policy_file, **(policy or {}))
    postfix = PostfixInstance(root, sink.port, ports)
    postfix.setup()
    daemon = Daemon(root, policy_file, ports, cafile=cafile, mta=mta,
                    postfix_config=postfix.config, records=records)
    helper = ReleaseHelper(root, daemon, postfix)
    old_umask = os.umask(umask) if umask is not None else None
    try:
        daemon.start()
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    try:
        helper.start()
        postfix.start(postfix_setup(postfix) if postfix_setup else ())
        yield Lab(postfix, sink, daemon, helper)
    finally:
        postfix.stop()
        stopped = daemon.stop() if daemon.process is not None else 0
        helper_stopped = helper.stop() if helper.process is not None else 0
        sink.stop()
        assert stopped == 0, "postwacht serve did not stop cleanly on SIGTERM"
        assert helper_stopped == 0, "the release helper did not stop cleanly on SIGTERM"
        assert "Traceback" not in daemon.log_text(), daemon.log_text()
        assert "Traceback" not in helper.log_text(), helper.log_text()
        if os.environ.get("POSTWACHT_KEEP_LAB"):
            print(f"lab kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dns_lab() -> Iterator[DnsLab]:
    lab = DnsLab(Path(tempfile.mkdtemp(prefix="postwacht-dns-")))
    lab.build()
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
        lab.cleanup()


@pytest.fixture(scope="session")
def sts_server(dns_lab: DnsLab) -> Iterator[StsServer]:
    server = StsServer(dns_lab.root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rdap_server() -> Iterator[RdapServer]:
    server = RdapServer()
    server.start()
    yield server
    server.stop()
