"""MTA-STS (RFC 8461): the `_mta-sts` TXT record, then the policy over HTTPS.

The policy host is resolved through Postwacht's own resolver, its certificate must be
valid for `mta-sts.<domain>`, redirects are refused, the body is capped, and a policy is
cached by its id for its max_age.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable

from postwacht.core.facts import StsPolicy
from postwacht.facts.dnscache import DnsCache

MAX_POLICY_BYTES = 64 * 1024
MAX_AGE_LIMIT = 31_557_600
WELL_KNOWN = "/.well-known/mta-sts.txt"


class StsError(Exception):
    """No usable MTA-STS policy; the message says why."""


def txt_id(records: tuple[str, ...]) -> str | None:
    """The policy id of the one `v=STSv1` TXT record; None when there is not exactly one."""
    found = []
    for text in records:  # TXT answers come with their strings joined (dnscache)
        if text.startswith("v=STSv1"):
            fields = dict(
                item.strip().partition("=")[::2] for item in text.split(";") if "=" in item
            )
            found.append(fields.get("id", ""))
    if len(found) != 1 or not found[0]:
        return None
    return found[0]


def parse_policy(text: str, policy_id: str) -> StsPolicy:
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise StsError(f"policy line {line[:60]!r} is not 'key: value'")
        fields.setdefault(key.strip(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise StsError("policy has no 'version: STSv1'")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        raise StsError(f"policy mode {mode!r} is not enforce, testing or none")
    try:
        max_age = int((fields.get("max_age") or [""])[0])
    except ValueError:
        raise StsError("policy max_age is not a number") from None
    if not 0 <= max_age <= MAX_AGE_LIMIT:
        raise StsError(f"policy max_age {max_age} is out of range")
    mx = tuple(m.lower().rstrip(".") for m in fields.get("mx", []))
    if mode != "none" and not mx:
        raise StsError("policy lists no mx")
    return StsPolicy(mode, mx, max_age, policy_id)


class StsFetcher:
    """Fetches and caches policies; `port` is 443 except in a test lab."""

    def __init__(self, dns: DnsCache, port: int = 443, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, cafile: str | None = None) -> None:
        self._dns = dns
        self._port = port
        self._cafile = cafile
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, StsPolicy]] = {}

    def cached(self, domain: str) -> StsPolicy | None:
        """The last policy fetched for `domain`, while its max_age lasts (RFC 8461 5.1:
        a missing TXT record or a failed fetch does not end a cached policy)."""
        with self._lock:
            found = self._cache.get(domain)
        return found[1] if found and found[0] > self._clock() else None

    def policy(self, domain: str, policy_id: str) -> StsPolicy:
        cached = self.cached(domain)
        if cached is not None and cached.policy_id == policy_id:
            return cached
        try:
            policy = parse_policy(self._fetch(domain), policy_id)
        except StsError:
            if cached is not None:
                return cached
            raise
        with self._lock:
            self._cache[domain] = (self._clock() + policy.max_age, policy)
        return policy

    def _fetch(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        addresses = self._dns.lookup(host, "A").records
        if not addresses:
            raise StsError(f"{host} has no address")
        deadline = time.monotonic() + self._timeout  # for the whole fetch, not per read
        context = ssl.create_default_context(cafile=self._cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            with socket.create_connection((addresses[0], self._port), self._timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as tls:
                connection = http.client.HTTPConnection(host, self._port, timeout=self._timeout)
                connection.sock = tls
                connection.request("GET", WELL_KNOWN, headers={"Host": host})
                response = connection.getresponse()
                if response.status != 200:
                    raise StsError(f"https://{host}{WELL_KNOWN} answered {response.status} "
                                   "(only 200 counts; redirects are not followed)")
                content_type = response.getheader("Content-Type", "")
                if not content_type.lower().startswith("text/plain"):
                    raise StsError(f"policy has Content-Type {content_type!r}, not text/plain")
                body = self._read_by(response, deadline)
        except (OSError, http.client.HTTPException) as exc:
            raise StsError(f"cannot fetch https://{host}{WELL_KNOWN}: {exc}") from None
        if len(body) > MAX_POLICY_BYTES:
            raise StsError(f"policy is larger than {MAX_POLICY_BYTES} bytes")
        return body.decode("utf-8", "replace")

    def _read_by(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        """The body, up to one byte over the cap; a server that trickles is cut off."""
        body = b""
        while len(body) <= MAX_POLICY_BYTES:
            chunk = response.read(4096)
            if not chunk:
                break
            body += chunk
            if time.monotonic() > deadline:
                raise StsError(f"policy fetch took longer than {self._timeout:g} s")
        return body
