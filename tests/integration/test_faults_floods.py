"""Floods and local users, with a real Postfix and the real daemon: half-sent and idle
socketmap connections, more socketmap clients than it serves at once, a burst of
connects, idle milter connections past the open-files limit, and the milter and the
socketmap on UNIX sockets that only Postfix's group can use."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import re
import resource
import selectors
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postwacht.adapters.netstring import encode, read_netstring

from tests.integration.conftest import (
    ALIAS,
    Daemon,
    Lab,
    Ports,
    PostfixInstance,
    Sink,
    write_test_policy,
)
from tests.labs.util import DEADLINE, poll, port_open

SENDER = "medewerker@samen-veilig.nl"
IDLE_TIMEOUT = 3.0
"""The socketmap's idle timeout here (30 s in production), so the tests run in seconds."""
MILTER_TIMEOUT = 20
"""Long enough that the idle milter connections of a test outlive it."""
FILE_LIMIT = 1024
"""The default soft limit on open files that the daemon is started with."""
MAX_CONNECTIONS = 256
"""The daemon's default socketmap connection limit."""


class FloodDaemon(Daemon):
    """The daemon with extra `serve` options, started under a soft limit of 1,024 open files
    (the default that let 1,100 idle milter connections stop all mail)."""

    def __init__(self, root: Path, policy: Path, ports: Ports, *options: str,
                 milter: str | None = None, socketmap: str | None = None) -> None:
        super().__init__(root, policy, ports)
        self.options = options
        self.milter = milter or f"inet:{ports.milter}@127.0.0.1"
        self.socketmap = socketmap or f"127.0.0.1:{ports.socketmap}"

    def start(self) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.spawn(["serve", "--policy", str(self.policy), "--milter", self.milter,
                    "--metrics", f"127.0.0.1:{self.metrics_port}", "--socketmap", self.socketmap,
                    "--state", str(self.state), "--check-interval", "0.2", *self.options],
                   lambda: "serving milter" in self.log_text(), "the daemon to serve",
                   self.env, prefix=("prlimit", f"--nofile={FILE_LIMIT}:{hard}", "--"))

    def socket_fds(self) -> int:
        assert self.process is not None
        fds = Path(f"/proc/{self.process.pid}/fd")
        return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def _start_lab(root: Path, daemon_for: Callable[[Path, Ports], FloodDaemon],
               main_cf: Callable[[PostfixInstance], None] | None = None) -> Lab:
    sink = Sink()
    sink.start()
    ports = Ports()
    write_test_policy(root / "policy.yaml")
    postfix = PostfixInstance(root, sink.port, ports)
    postfix.setup()
    if main_cf is not None:
        main_cf(postfix)
    daemon = daemon_for(root, ports)
    daemon.start()
    postfix.start()
    return Lab(postfix, sink, daemon)


def _stop_lab(lab: Lab, root: Path) -> None:
    lab.postfix.stop()
    stopped = lab.daemon.stop() if lab.daemon.process is not None else 0
    lab.sink.stop()
    assert stopped == 0, "postwacht serve did not stop cleanly on SIGTERM"
    assert "Traceback" not in lab.daemon.log_text(), lab.daemon.log_text()
    if os.environ.get("POSTWACHT_KEEP_LAB"):
        print(f"lab kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def _require_root() -> None:
    if os.geteuid() != 0 or shutil.which("postfix") is None:
        pytest.fail("integration tests need root and Debian's postfix package")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """Postfix and the daemon on loopback TCP, the daemon with a 3 s socketmap idle
    timeout and the default connection limit and backlogs."""
    _require_root()
    root = Path(tempfile.mkdtemp(prefix="postwacht-floods-", dir="/tmp"))
    lab = _start_lab(root, lambda root, ports: FloodDaemon(
        root, root / "policy.yaml", ports,
        "--socketmap-idle-timeout", str(IDLE_TIMEOUT), "--milter-timeout", str(MILTER_TIMEOUT)))
    try:
        yield lab
    finally:
        _stop_lab(lab, root)


@pytest.fixture(autouse=True)
def many_files() -> Iterator[None]:
    """This test process opens more than 1,024 sockets itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other side has closed `sock` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def lookup(port: int, request: str) -> bytes | None:
    with connect(port) as sock:
        sock.sendall(encode(request))
        return read_netstring(sock.makefile("rb"))


def postmap(lab: Lab, key: str) -> subprocess.CompletedProcess[str]:
    """A lookup by Postfix's own socketmap client (which retries once on a closed
    connection, as trivial-rewrite and smtp do)."""
    return subprocess.run(
        ["postmap", "-c", str(lab.postfix.config), "-q", key,
         f"socketmap:inet:127.0.0.1:{lab.daemon.ports.socketmap}:transport"],
        capture_output=True, text=True, timeout=30, check=False)


def test_idle_and_half_sent_socketmap_connections_are_dropped_after_the_idle_timeout(
    lab: Lab,
) -> None:
    port = lab.daemon.ports.socketmap
    silent = [connect(port) for _ in range(100)]
    half_sent = [connect(port) for _ in range(100)]
    for sock in half_sent:
        sock.sendall(b"40:transport worker@bj")
    trickle = connect(port)
    trickle.sendall(b"99999:")
    opened = time.monotonic()
    assert lookup(port, "transport *") == b"NOTFOUND "  # the idle ones do not stop a lookup

    def all_dropped() -> bool:
        trickle.send(b"x")  # a byte every 50 ms does not keep a connection alive either
        return all(closed_by_peer(s) for s in [*silent, *half_sent])

    try:
        poll(all_dropped, "the idle and half-sent connections to be closed",
             timeout=IDLE_TIMEOUT + 10)
        poll(lambda: closed_by_peer(trickle), "the trickling connection to be closed",
             timeout=IDLE_TIMEOUT + 10)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the trickler found its connection closed while sending
    took = time.monotonic() - opened
    assert IDLE_TIMEOUT * 0.9 <= took < IDLE_TIMEOUT + 10
    for sock in [*silent, *half_sent, trickle]:
        sock.close()
    assert lookup(port, "transport worker@bjzutrecht.nl") is not None


class Flood:
    """Holds `size` idle connections open, opening a new one for each that is closed."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.reopened = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> None:
        sock = connect(self.port)
        sock.sendall(b"30:transport ")  # half a request, as in the report
        self._selector.register(sock, selectors.EVENT_READ)

    def __enter__(self) -> Flood:
        for _ in range(self.size):
            self._open()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                self._selector.unregister(sock)
                sock.close()
                if not self._stop.is_set():
                    self._open()
                    self.reopened += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=DEADLINE)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


def test_more_clients_than_the_socketmap_serves_still_leave_postfix_lookups_answered(
    lab: Lab,
) -> None:
    busy = 'postwacht_errors_total{kind="socketmap-busy"}'
    before = lab.daemon.metric(busy)
    assert before is not None
    m = uuid.uuid4().hex[:12]
    with Flood(lab.daemon.ports.socketmap, MAX_CONNECTIONS + 100) as flood:
        retired = postmap(lab, "worker@bjzutrecht.nl")
        assert retired.returncode == 0, retired.stderr
        assert retired.stdout.startswith("error:5.7.1 bjzutrecht.nl was given up")
        assert postmap(lab, "ok@example.org").returncode == 1  # not found, not an error
        # qmgr's transport lookups (through trivial-rewrite) for a real message
        assert lab.postfix.submit(SENDER, [ALIAS], m) == {}
        poll(lambda: [d for d in lab.sink.with_marker(m) if "team@example.org" in d.recipients],
             "the alias's ordinary target delivered during the flood")
        assert flood.reopened >= 100  # the flood really was beyond the limit
    assert all("worker@bjzutrecht.nl" not in d.recipients for d in lab.sink.with_marker(m))
    counted = lab.daemon.metric(busy)
    assert counted is not None
    assert counted >= before + 100
    lab.daemon.logged("socketmap at its limit of 256 connections")


def test_a_burst_of_connects_is_neither_refused_nor_left_waiting(lab: Lab) -> None:
    clients = 200
    start = threading.Barrier(clients)
    waited: list[float] = []
    failed: list[BaseException] = []

    def client() -> None:
        start.wait()
        began = time.monotonic()
        try:
            answer = lookup(lab.daemon.ports.socketmap, "transport worker@bjzutrecht.nl")
            assert answer is not None
            assert answer.startswith(b"OK error:5.7.1")
            waited.append(time.monotonic() - began)
        except (OSError, AssertionError) as exc:
            failed.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE)
    assert failed == []
    assert len(waited) == clients
    # A full listen queue drops connects, and the client tries again after 1 s.
    assert sorted(waited)[int(clients * 0.99) - 1] < 0.9, sorted(waited)[-5:]


def test_idle_milter_connections_past_the_file_limit_do_not_stop_mail(lab: Lab) -> None:
    log = lab.daemon.log_text()
    assert re.search(rf"open files: limit \d+ \(was {FILE_LIMIT}\)", log), log
    idle = [connect(lab.daemon.milter_port) for _ in range(1100)]
    try:
        poll(lambda: lab.daemon.socket_fds() > 1100, "the daemon to accept 1,100 connections")
        m = uuid.uuid4().hex[:12]
        refused = lab.postfix.submit(SENDER, ["x@bjzutrecht.nl", "ok@example.org"], m)
        assert list(refused) == ["x@bjzutrecht.nl"]  # the milter decided, not its absence
        assert refused["x@bjzutrecht.nl"][0] == 550
        poll(lambda: lab.sink.with_marker(m), "the ordinary recipient's copy")
        assert not any(closed_by_peer(s) for s in idle)  # all still held while it was decided
    finally:
        for sock in idle:
            sock.close()


def test_a_stalled_milter_command_is_dropped_after_the_milter_timeout(tmp_path: Path) -> None:
    """libmilter's timeout bounds each wait for the rest of a command and for the next
    one. (It does not close a connection that has sent nothing at all: those are bounded
    by the open-files limit, which the test above shows is no longer 1,024.)"""
    _require_root()
    tmp_path.chmod(0o755)
    write_test_policy(tmp_path / "policy.yaml")
    daemon = FloodDaemon(tmp_path, tmp_path / "policy.yaml", Ports(), "--milter-timeout", "1")
    daemon.start()
    try:
        sock = connect(daemon.milter_port)
        sock.sendall(b"\0\0\0\x0dO")  # the start of Postfix's option negotiation
        opened = time.monotonic()
        poll(lambda: closed_by_peer(sock), "the stalled milter connection to be closed")
        assert 0.9 <= time.monotonic() - opened < 10
        sock.close()
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.log_text()


# UNIX sockets, as the README recommends them: a directory in Postfix's queue directory,
# group postfix, mode 2750; Postfix names the sockets relative to its queue directory,
# which works whether a service runs chrooted or not.

SOCKET_DIR = "postwacht"


@pytest.fixture(scope="module")
def unix_lab() -> Iterator[Lab]:
    _require_root()
    root = Path(tempfile.mkdtemp(prefix="postwacht-unix-", dir="/tmp"))
    sockets = root / "queue" / SOCKET_DIR

    def unix_main_cf(postfix: PostfixInstance) -> None:
        sockets.mkdir(parents=True)
        shutil.chown(sockets, user="root", group="postfix")
        sockets.chmod(0o2750)
        milter = f"{{ unix:{SOCKET_DIR}/milter.sock, default_action=tempfail }}"
        postfix.postconf("-e", f"smtpd_milters = {milter}", f"non_smtpd_milters = {milter}",
                         f"transport_maps = socketmap:unix:{SOCKET_DIR}/socketmap.sock:transport",
                         f"smtp_tls_policy_maps = socketmap:unix:{SOCKET_DIR}/socketmap.sock:tls")

    def unix_daemon(root: Path, ports: Ports) -> FloodDaemon:
        return FloodDaemon(root, root / "policy.yaml", ports,
                           milter=f"unix:{sockets}/milter.sock",
                           socketmap=f"unix:{sockets}/socketmap.sock")

    lab = _start_lab(root, unix_daemon, unix_main_cf)
    try:
        yield lab
    finally:
        _stop_lab(lab, root)
        assert not (sockets / "milter.sock").exists()


def unix_sockets(lab: Lab) -> list[Path]:
    sockets = lab.postfix.root / "queue" / SOCKET_DIR
    return [sockets / "milter.sock", sockets / "socketmap.sock"]


def test_postfix_reaches_the_milter_and_the_socketmap_over_unix_sockets(unix_lab: Lab) -> None:
    m = uuid.uuid4().hex[:12]
    refused = unix_lab.postfix.submit(SENDER, ["x@bjzutrecht.nl", ALIAS], m)
    assert list(refused) == ["x@bjzutrecht.nl"]
    assert refused["x@bjzutrecht.nl"][0] == 550
    poll(lambda: [d for d in unix_lab.sink.with_marker(m) if "team@example.org" in d.recipients],
         "the alias's ordinary target")
    bounce = poll(lambda: [d for d in unix_lab.sink.received(SENDER)
                           if b"worker@bjzutrecht.nl" in d.content and m.encode() in d.content],
                  "the bounce for the alias's retired target (transport table)")
    assert b"5.7.1" in bounce[0].content
    for path in unix_sockets(unix_lab):
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == grp.getgrnam("postfix").gr_gid  # from the set-group-id directory


def connect_as_nobody(path: Path) -> int:
    """The errno a process running as `nobody` gets connecting to `path` (0: it got in)."""
    nobody = pwd.getpwnam("nobody")
    child = os.fork()
    if child == 0:  # the child only drops its privileges, connects and reports
        code = 255
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
            code = 0
        except OSError as exc:
            code = exc.errno or 255
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_local_user_outside_postfix_group_cannot_connect(unix_lab: Lab) -> None:
    sockets = unix_lab.postfix.root / "queue" / SOCKET_DIR
    for path in unix_sockets(unix_lab):
        assert connect_as_nobody(path) == errno.EACCES
    sockets.chmod(0o2755)  # the directory opened: the socket's own mode still keeps them out
    try:
        for path in unix_sockets(unix_lab):
            assert connect_as_nobody(path) == errno.EACCES
    finally:
        sockets.chmod(0o2750)


def test_a_stale_socket_is_replaced_and_a_clean_stop_removes_the_sockets(
    tmp_path: Path,
) -> None:
    _require_root()
    tmp_path.chmod(0o755)
    write_test_policy(tmp_path / "policy.yaml")
    milter, socketmap = tmp_path / "milter.sock", tmp_path / "socketmap.sock"
    for path in (milter, socketmap):  # left by a run that was killed
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(path))
    daemon = FloodDaemon(tmp_path, tmp_path / "policy.yaml", Ports(),
                         milter=f"unix:{milter}", socketmap=f"unix:{socketmap}")
    daemon.start()
    try:
        assert lookup_unix(socketmap, "transport *") == b"NOTFOUND "
        assert port_open(daemon.metrics_port)
    finally:
        assert daemon.stop() == 0
    assert not milter.exists()
    assert not socketmap.exists()
    assert "Traceback" not in daemon.log_text()


def lookup_unix(path: Path, request: str) -> bytes | None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(encode(request))
        return read_netstring(sock.makefile("rb"))
