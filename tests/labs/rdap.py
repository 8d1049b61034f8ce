"""An RDAP server on loopback with registration data for the domain-watch zones."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

from tests.labs.util import free_port


def _events(created: dt.datetime, expires: dt.datetime) -> dict[str, object]:
    return {"objectClassName": "domain", "events": [
        {"eventAction": "registration", "eventDate": created.isoformat().replace("+00:00", "Z")},
        {"eventAction": "expiration", "eventDate": expires.isoformat().replace("+00:00", "Z")},
    ]}


def registrations(now: dt.datetime) -> dict[str, object]:
    year = dt.timedelta(days=365)
    old = dt.datetime(2010, 3, 1, tzinfo=dt.UTC)
    return {
        "samen-veilig.test": _events(old, now + year),
        "moved.test": _events(old, now + year),
        "mxmoved.test": _events(old, now + year),
        "expiring.test": _events(old, now + dt.timedelta(days=9)),
        "bjz-old.test": _events(dt.datetime(2023, 5, 1, tzinfo=dt.UTC), now + year),
        "badshape.test": [],  # JSON, but not an RDAP domain object
    }


class RdapServer:
    def __init__(self) -> None:
        self.port = free_port()
        data = registrations(dt.datetime.now(dt.UTC))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                known = self.path.startswith("/domain/") and name in data
                body = json.dumps(data[name] if known else {"errorCode": 404}).encode()
                self.send_response(200 if known else 404)
                self.send_header("Content-Type", "application/rdap+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
