"""The deploy kit's reverse proxy, for real: Debian's nginx with
`deploy/nginx/postwacht-web.conf` in front of `postwacht web`, over HTTPS.

nginx runs as a private instance (its configuration, pid file, logs and temporary files
in a directory of the test's own, a free loopback port, a certificate from a test CA);
the snippet is included as a postmaster would, with only the upstream port, the
listening port and the file names changed. The proxy authenticates people (HTTP basic
authentication here; any nginx module that sets `$remote_user` works the same) and
passes the name on in `X-Remote-User`; the site trusts that header only from the proxy.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
import trustme
from postwacht.records.locate import open_records
from postwacht.records.store import AuditAction, AuditEntry

from tests.conftest import ROOT
from tests.integration.test_web_browser import WebSite, add_user
from tests.labs.util import DEADLINE, free_port, poll, port_open

SNIPPET = ROOT / "deploy" / "nginx" / "postwacht-web.conf"
NGINX = "/usr/sbin/nginx"
WORKER_USER = "www-data"
"""Debian's nginx workers run as www-data: they read the password file at each request."""


def htpasswd_line(name: str, password: str) -> str:
    """One line of an nginx password file, salted SHA-1 (`{SSHA}`, which nginx reads)."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # nginx's format
    return f"{name}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


@dataclass
class Proxy:
    """A private nginx serving the deploy snippet on a free loopback port over HTTPS."""

    root: Path
    upstream: int
    accounts: dict[str, str]
    secret: str
    """What nginx sends the site in X-Postwacht-Proxy-Secret."""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = free_port()
        self.ca = trustme.CA()

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    def configure(self) -> None:
        """Write nginx.conf, the certificate, the password file, the adapted snippet."""
        self.root.chmod(0o755)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.root / "temp" / sub).mkdir(parents=True)
            shutil.chown(self.root / "temp" / sub, user=WORKER_USER)
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.cert_chain_pems[0].write_to_path(str(self.root / "cert.pem"))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(self.root / "cert.pem"), append=True)
        cert.private_key_pem.write_to_path(str(self.root / "key.pem"))
        (self.root / "key.pem").chmod(0o600)
        passwords = self.root / "htpasswd"
        passwords.write_text("".join(htpasswd_line(n, p) for n, p in self.accounts.items()))
        passwords.chmod(0o640)
        shutil.chown(passwords, group=WORKER_USER)
        secret = self.root / "postwacht-proxy-secret.conf"
        secret.touch(mode=0o600)  # read by nginx's master (root) only
        secret.write_text(f'proxy_set_header X-Postwacht-Proxy-Secret "{self.secret}";\n')
        (self.root / "postwacht-web.conf").write_text(self.adapted_snippet())
        r = self.root
        (r / "nginx.conf").write_text(f"""\
user {WORKER_USER};
worker_processes 1;
pid {r}/nginx.pid;
error_log {r}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {r}/access.log;
    client_body_temp_path {r}/temp/client_body;
    proxy_temp_path {r}/temp/proxy;
    fastcgi_temp_path {r}/temp/fastcgi;
    uwsgi_temp_path {r}/temp/uwsgi;
    scgi_temp_path {r}/temp/scgi;
    include {r}/postwacht-web.conf;
}}
""")

    def adapted_snippet(self) -> str:
        """The deploy snippet with this test's ports and files, and nothing else changed."""
        text = SNIPPET.read_text()
        listen = f"server {{\n    listen 127.0.0.1:{self.port} ssl;"
        changes: list[tuple[str, str, int]] = [  # pattern, replacement, at most (0: all)
            (r"\n\s*listen\s[^;]*;", "", 0),
            (r"server\s*\{", listen, 1),
            (r"127\.0\.0\.1:8080", f"127.0.0.1:{self.upstream}", 0),
            (r"ssl_certificate\s+[^;]+;", f"ssl_certificate {self.root}/cert.pem;", 0),
            (r"ssl_certificate_key\s+[^;]+;", f"ssl_certificate_key {self.root}/key.pem;", 0),
            (r"auth_basic_user_file\s+[^;]+;", f"auth_basic_user_file {self.root}/htpasswd;", 0),
            (r"include\s+\S*postwacht-proxy-secret\.conf;",
             f"include {self.root}/postwacht-proxy-secret.conf;", 0),
        ]
        for pattern, replacement, count in changes:
            text, made = re.subn(pattern, replacement, text, count=count)
            assert made, f"the snippet has nothing like {pattern!r}"
        return text

    def start(self) -> None:
        if not Path(NGINX).exists():
            pytest.fail(f"no nginx at {NGINX}: install Debian's nginx package "
                        "(`make test` does)")
        test = subprocess.run([NGINX, "-t", *self._options()], capture_output=True,
                              text=True, check=False)
        assert test.returncode == 0, f"nginx -t refused the snippet:\n{test.stderr}"
        with (self.root / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen([NGINX, *self._options(), "-g", "daemon off;"],
                                            stdout=out, stderr=out)
        poll(lambda: self.process is not None and (self.process.poll() is not None
                                                    or port_open(self.port)),
             "nginx to listen")
        assert self.process.poll() is None, self.error_log.read_text()

    def _options(self) -> list[str]:
        return ["-p", str(self.root), "-c", str(self.root / "nginx.conf"),
                "-e", str(self.error_log)]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: nginx's fast shutdown
            self.process.wait(timeout=DEADLINE)
            self.process = None

    def get(self, path: str, headers: dict[str, str] | None = None,
            account: tuple[str, str] | None = None) -> Answer:
        """A GET over HTTPS that trusts only the test CA, as `account` (basic
        authentication) when given, with any extra `headers` a client chooses to send."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=context,
                                                 timeout=DEADLINE)
        sent = dict(headers or {})
        if account is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(
                f"{account[0]}:{account[1]}".encode()).decode()
        try:
            connection.request("GET", path, headers=sent)
            response = connection.getresponse()
            return Answer(response.status, response.headers,
                          response.read().decode("utf-8", "replace"))
        finally:
            connection.close()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: str

    def cookie(self, name: str) -> str:
        """The Set-Cookie line for `name` ('' when none)."""
        return next((c for c in self.headers.get_all("Set-Cookie") or []
                     if c.startswith(f"{name}=")), "")


ACCOUNTS = {"ada": "admin", "vera": "viewer"}
"""People the site knows (single sign-on only: no local password) and their roles."""
PROXY_ONLY = "mallory"
"""Known to the proxy's password file, but not to the site."""
PASSWORDS = {name: f"{name}-proxy-password" for name in (*ACCOUNTS, PROXY_ONLY)}


@dataclass(frozen=True)
class ProxyLab:
    nginx: Proxy
    site: WebSite
    state: Path

    def get(self, path: str, headers: dict[str, str] | None = None,
            account: tuple[str, str] | None = None) -> Answer:
        return self.nginx.get(path, headers, account)

    def get_directly(self, path: str, headers: dict[str, str]) -> Answer:
        """A GET to the site itself, past nginx, from loopback as the proxy is."""
        connection = http.client.HTTPConnection("127.0.0.1", self.nginx.upstream,
                                                timeout=DEADLINE)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.headers,
                          response.read().decode("utf-8", "replace"))
        finally:
            connection.close()

    def signed_in(self) -> list[AuditEntry]:
        store = open_records(None, self.state, create=False, mta="proxy-lab")
        try:
            return [e for e in store.audit_entries() if e.action is AuditAction.SIGNED_IN]
        finally:
            store.close()


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyLab]:
    """A records store with the accounts, `postwacht web` trusting X-Remote-User only
    from 127.0.0.1 with the proxy's secret, and nginx with the deploy snippet in front."""
    root = Path(tempfile.mkdtemp(prefix="postwacht-proxy-", dir="/tmp"))
    root.chmod(0o755)  # nginx's workers (www-data) read the password file below it
    state = root / "state"
    open_records(None, state, create=True, mta="proxy-lab").close()
    options = ["--state", str(state)]
    for name, role in ACCOUNTS.items():
        add_user(root, options, name, role, None)
    secret = secrets.token_hex(32)
    secret_file = root / "proxy-secret"
    secret_file.touch(mode=0o600)
    secret_file.write_text(secret + "\n")
    site = WebSite(root, options, ("--trusted-header", "X-Remote-User",
                                   "--trusted-proxy", "127.0.0.1",
                                   "--proxy-secret-file", str(secret_file)))
    site.start()
    nginx = Proxy(root / "nginx", int(site.url.rsplit(":", 1)[1]), PASSWORDS, secret)
    try:
        nginx.root.mkdir()
        nginx.configure()
        nginx.start()
        yield ProxyLab(nginx, site, state)
    finally:
        nginx.stop()
        errors = nginx.error_log.read_text() if nginx.error_log.exists() else ""
        assert not re.search(r"\[(emerg|alert|crit)\]", errors), errors
        assert site.stop() == 0, "postwacht web did not stop cleanly on SIGTERM"
        assert "Traceback" not in site.log_text(), site.log_text()
        shutil.rmtree(root, ignore_errors=True)


def test_a_forged_sign_on_header_without_the_proxys_authentication_gets_nowhere(
    proxy: ProxyLab,
) -> None:
    for forged in ({"X-Remote-User": "ada"}, {"X_Remote_User": "ada"}):
        answer = proxy.get("/users", headers=forged)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="Postwacht review"'
        assert answer.cookie("postwacht_session") == ""
        assert "Accounts" not in answer.body


def test_the_proxy_replaces_a_forged_header_with_the_person_it_authenticated(
    proxy: ProxyLab,
) -> None:
    before = len(proxy.signed_in())
    forged = {"X-Remote-User": "ada", "X-Forwarded-For": "203.0.113.9"}
    answer = proxy.get("/users", headers=forged, account=("vera", PASSWORDS["vera"]))
    assert answer.status == 403  # vera is a viewer: the accounts page is an admin's
    assert "vera (viewer)" in answer.body
    listed = proxy.get("/held", headers={"X_Remote_User": "ada"},
                       account=("vera", PASSWORDS["vera"]))
    assert listed.status == 200
    assert "vera (viewer)" in listed.body
    assert "ada" not in listed.body
    signed_in = proxy.signed_in()[before:]
    assert [e.actor for e in signed_in] == ["vera", "vera"]  # no cookie kept: each anew
    assert all("from 127.0.0.1 by single sign-on" in e.detail for e in signed_in)


def test_the_person_the_proxy_authenticated_is_signed_in(proxy: ProxyLab) -> None:
    answer = proxy.get("/users", account=("ada", PASSWORDS["ada"]))
    assert answer.status == 200
    assert "ada (administrator)" in answer.body
    cookie = answer.cookie("postwacht_session").lower()
    assert all(flag in cookie for flag in ("secure", "httponly", "samesite=strict", "path=/"))
    wrong = proxy.get("/held", account=("ada", "not-the-password"))
    assert wrong.status == 401


def test_a_person_the_site_does_not_know_is_refused(proxy: ProxyLab) -> None:
    answer = proxy.get("/held", account=(PROXY_ONLY, PASSWORDS[PROXY_ONLY]))
    assert answer.status == 403
    assert PROXY_ONLY in answer.body
    assert answer.cookie("postwacht_session") == ""


def test_the_security_headers_pass_through_the_proxy(proxy: ProxyLab) -> None:
    for path in ("/held", "/audit", "/users", "/held/12345", "/static/style.css"):
        answer = proxy.get(path, account=("ada", PASSWORDS["ada"]))
        assert answer.status in (200, 404), path
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
        assert answer.headers["X-Frame-Options"] == "DENY", path
        assert answer.headers["Referrer-Policy"] == "no-referrer", path
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000", path
        assert "nginx/" not in answer.headers.get("Server", ""), path


def test_a_local_process_without_the_proxys_secret_cannot_sign_anyone_in(
    proxy: ProxyLab,
) -> None:
    """Every process on the host has the proxy's address: the header counts only with
    the secret that nginx sends."""
    for sent in ({"X-Remote-User": "ada"},
                 {"X-Remote-User": "ada", "X-Postwacht-Proxy-Secret": "0" * 64}):
        answer = proxy.get_directly("/users", sent)
        assert answer.status == 303
        assert "/login" in answer.headers["Location"]
        assert answer.cookie("postwacht_session") == ""
    with_secret = proxy.get_directly("/users", {
        "X-Remote-User": "ada", "X-Postwacht-Proxy-Secret": proxy.nginx.secret})
    assert with_secret.status == 200  # the same request as nginx sends it
    assert "ada (administrator)" in with_secret.body
