"""Registration data over RDAP (RFC 9082/9083), with the IANA bootstrap file (RFC 9224).

A 404 means "not registered"; anything else that is not an answer is an `RdapError`,
which the domain watch reports as unknown, never as fine.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from postwacht.core.facts import Registration
from postwacht.core.policy import DomainWatch

MAX_RDAP_BYTES = 1024 * 1024


class RdapError(Exception):
    """Registration data could not be had; the message says why."""


class RdapClient:
    def __init__(self, settings: DomainWatch) -> None:
        self._base = settings.rdap_base_url
        self._timeout = settings.rdap_timeout
        self._bootstrap: dict[str, str] = {}
        if settings.bootstrap_file:
            self._bootstrap = _read_bootstrap(Path(settings.bootstrap_file))

    def base_for(self, domain: str) -> str | None:
        if self._base:
            return self._base
        return self._bootstrap.get(domain.rsplit(".", 1)[-1])

    def lookup(self, domain: str) -> Registration:
        base = self.base_for(domain)
        if base is None:
            raise RdapError("no RDAP server configured for this top-level domain")
        if not base.startswith(("https://", "http://")):
            raise RdapError(f"RDAP base URL {base!r} is not http(s)")
        url = f"{base.rstrip('/')}/domain/{domain}"
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, headers={"Accept": "application/rdap+json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read(MAX_RDAP_BYTES)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return Registration(False)
            raise RdapError(f"{url} answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise RdapError(f"{url} did not answer: {exc}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise RdapError(f"{url} sent no JSON") from None
        raw_events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(raw_events, list):
            raise RdapError(f"{url} sent no RDAP domain object with events")
        events = {e.get("eventAction"): e.get("eventDate") for e in raw_events
                  if isinstance(e, dict)}
        return Registration(True, _date(events.get("registration")),
                            _date(events.get("expiration")))


def _read_bootstrap(path: Path) -> dict[str, str]:
    """IANA RDAP bootstrap (RFC 9224): [[["nl", ...], ["https://rdap.example/"]], ...]."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RdapError(f"cannot read RDAP bootstrap file {path}: {exc}") from None
    out: dict[str, str] = {}
    try:
        for tlds, urls in data["services"]:
            https = [u for u in urls if u.startswith("https://")] or list(urls)
            for tld in tlds:
                out[str(tld).lower()] = str(https[0])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        raise RdapError(f"RDAP bootstrap file {path} is not in the IANA format") from None
    return out


def _date(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
