"""An HTTPS server for MTA-STS policies, with a test CA (trustme) the client is told to trust.

Policies by host: a valid enforce policy for `sts.pw-unsigned.test`, and a redirect for
`stsbad.pw-unsigned.test` (RFC 8461 forbids following it).
"""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path

import trustme

from tests.labs.util import free_port

POLICIES = {
    "mta-sts.sts.pw-unsigned.test": (
        200, "version: STSv1\nmode: enforce\nmx: mx.sts.pw-unsigned.test\nmax_age: 86400\n"
    ),
    "mta-sts.stsbad.pw-unsigned.test": (301, ""),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        status, body = POLICIES.get(host, (404, ""))
        if self.path != "/.well-known/mta-sts.txt":
            status, body = 404, ""
        self.send_response(status)
        if status == 301:
            self.send_header("Location", "https://elsewhere.example/")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


class StsServer:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        ca = trustme.CA()
        self.cafile = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        cert = ca.issue_cert(*POLICIES)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
