"""`postwacht web` as a separate process on loopback, spoken to over HTTP: it says where
it listens, refuses what is too large, believes a single sign-on header only as told,
stops cleanly on SIGTERM, and a release asked for on it is carried out by the MTA (a real
Postfix, the daemon and its release helper) and reaches the outside world."""

from __future__ import annotations

import datetime as dt
import http.client
import re
import shutil
import smtplib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import Status

from tests.integration.conftest import POSTWACHT, Lab, Process, held_for, running_lab
from tests.labs.util import DEADLINE, poll

LISTENING = re.compile(r"postwacht web: listening on http://127\.0\.0\.1:(\d+)$", re.MULTILINE)
PASSWORD = "correct horse battery"


class WebSite(Process):
    def __init__(self, root: Path, records_options: list[str], *extra: str) -> None:
        self.root = root
        self.records_options = records_options
        self.extra = list(extra)
        self.log = root / "web.log"
        self.process = None

    @property
    def port(self) -> int:
        found = LISTENING.search(self.log_text())
        return int(found.group(1)) if found else 0

    def start(self) -> None:
        self.spawn(["web", "--listen", "127.0.0.1:0", *self.records_options, *self.extra],
                   lambda: self.port > 0, "postwacht web to listen")

    def users(self, *args: str) -> None:
        secret = self.root / "password"
        secret.touch(mode=0o600)
        secret.write_text(PASSWORD + "\n")
        result = subprocess.run([POSTWACHT, "users", *self.records_options, *args,
                                 "--password-file", str(secret)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr


class Visitor:
    """One browser's cookies, over plain HTTP/1.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, value = cookie.split(";")[0].split("=", 1)
            if "Max-Age=0" in cookie or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response.status, response.headers, text

    def csrf(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        assert status == 200, page
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found is not None, page
        return found.group(1)

    def sign_in(self, name: str) -> None:
        token = self.csrf("/login")
        status, headers, page = self.request("POST", "/login", {
            "csrf": token, "name": name, "password": PASSWORD, "next": "/held"})
        assert (status, headers["Location"]) == (303, "/held"), page


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="postwacht-web-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site(root: Path) -> Iterator[WebSite]:
    SqliteRecords(root / "state", mta="web-lab").close()
    web = WebSite(root, ["--state", str(root / "state")])
    web.users("add", "rita", "--role", "reviewer")
    web.start()
    yield web
    if web.process is not None:
        assert web.stop() == 0
    assert "Traceback" not in web.log_text(), web.log_text()


def test_the_site_says_where_it_listens_serves_and_stops_on_sigterm(site: WebSite) -> None:
    visitor = Visitor(site.port)
    status, headers, page = visitor.request("GET", "/held")
    assert (status, headers["Location"]) == (303, "/login?next=/held")
    visitor.sign_in("rita")
    status, headers, page = visitor.request("GET", "/held")
    assert status == 200
    assert "rita (reviewer)" in page
    assert headers["Server"] == "postwacht"
    assert site.stop() == 0
    assert "Traceback" not in site.log_text()


def test_a_request_body_over_64_kib_is_refused_and_the_site_goes_on(site: WebSite) -> None:
    visitor = Visitor(site.port)
    token = visitor.csrf("/login")
    status, _, _ = visitor.request("POST", "/login", {
        "csrf": token, "name": "rita", "password": "x" * 70_000})
    assert status == 413
    visitor.sign_in("rita")


def test_a_single_sign_on_header_counts_only_when_the_site_is_told_to_trust_it(
    root: Path,
) -> None:
    SqliteRecords(root / "state", mta="web-lab").close()
    options = ["--state", str(root / "state")]
    plain = WebSite(root, options)
    plain.users("add", "piet", "--role", "approver")
    plain.start()
    try:
        status, _, _ = Visitor(plain.port).request("GET", "/held",
                                                   headers={"X-Remote-User": "piet"})
        assert status == 303
    finally:
        assert plain.stop() == 0
    secret = root / "proxy-secret"
    secret.touch(mode=0o640)
    secret.write_text("f" * 64 + "\n")
    trusting = WebSite(root, options, "--trusted-header", "X-Remote-User",
                       "--trusted-proxy", "127.0.0.1", "--proxy-secret-file", str(secret))
    trusting.log = root / "web-sso.log"
    trusting.start()
    try:
        # Another local process has the proxy's address, but not its secret.
        status, _, _ = Visitor(trusting.port).request("GET", "/held",
                                                      headers={"X-Remote-User": "piet"})
        assert status == 303
        proxy = {"X-Postwacht-Proxy-Secret": "f" * 64}
        status, _, page = Visitor(trusting.port).request(
            "GET", "/held", headers={"X-Remote-User": "piet", **proxy})
        assert status == 200
        assert "piet (approver)" in page
        status, _, page = Visitor(trusting.port).request(
            "GET", "/held", headers={"X-Remote-User": "eve", **proxy})
        assert status == 403
        # Behind the proxy, a failed sign-in counts against the address the proxy names,
        # not against the proxy's own (one shared limit would lock everyone out).
        visitor = Visitor(trusting.port)
        token = visitor.csrf("/login")
        status, _, _ = visitor.request("POST", "/login", {
            "csrf": token, "name": "piet", "password": "not the password", "next": "/held"},
            headers={"X-Forwarded-For": "192.0.2.7", **proxy})
        assert status == 401
        store = SqliteRecords(root / "state", mta="web-lab")
        try:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
            assert store.sign_in_failures(since, client="192.0.2.7") == 1
            assert store.sign_in_failures(since, client="127.0.0.1") == 0
        finally:
            store.close()
    finally:
        assert trusting.stop() == 0


SENDER = "medewerker@samen-veilig.nl"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("postwacht-web-http-", mta="web-lab") as started:
        yield started


def test_a_release_asked_on_the_site_is_carried_out_by_the_mta(lab: Lab, root: Path) -> None:
    marker = uuid.uuid4().hex[:12]
    recipient = f"planning-{marker}@samen-veiIig.nl"
    with smtplib.SMTP("127.0.0.1", lab.postfix.submission_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, [recipient], f"From: <{SENDER}>\r\nSubject: {marker}\r\n\r\n"
                                           f"{marker}\r\n")
    queue_id = str(held_for(lab, recipient)["queue_id"])
    with lab.records() as store:
        [record] = [r for r in store.records_of(queue_id) if r.status is Status.HELD]
    site = WebSite(root, lab.daemon.records_options)
    site.users("add", f"rita-{marker}", "--role", "reviewer")
    site.start()
    try:
        visitor = Visitor(site.port)
        visitor.sign_in(f"rita-{marker}")
        path = f"/held/{record.record_id}"
        status, _, page = visitor.request("POST", f"{path}/release", {
            "csrf": visitor.csrf(path), "mode": "plain", "reason": "checked with the sender"})
        assert status == 303, page
        delivered = poll(lambda: lab.sink.with_marker(marker), "the released message")
        assert delivered[0].recipients == [recipient]

        def released() -> bool:
            with lab.records() as store:
                return store.record(record.record_id).status is Status.RELEASED

        poll(released, "the record to be released")
        status, _, page = visitor.request("GET", path)
        assert status == 200
        assert "released" in page
    finally:
        assert site.stop() == 0
    assert "Traceback" not in site.log_text(), site.log_text()
