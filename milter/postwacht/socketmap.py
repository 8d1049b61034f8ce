"""Postfix socketmap tables served from the running policy.

Milters see recipients before virtual aliases, aliases(5) and .forward are expanded; qmgr
asks `transport_maps` for every final recipient. So the `transport` table is the
backstop: a retired domain (or a look-alike the policy rejects) answers
`OK error:5.7.1 <reason>` and that recipient bounces instead of leaving.

The protocol (socketmap_table(5)): each request is a netstring `NAME KEY`, each reply a
netstring `OK data`, `NOTFOUND `, `TEMP reason` or `PERM reason`. A request that is
malformed or too long gets PERM and the connection goes on.
"""

from __future__ import annotations

import ipaddress
import logging
import socketserver
from collections.abc import Callable
from typing import Protocol

from postwacht import metrics
from postwacht.address import AddressError, Recipient, parse_recipient
from postwacht.background import BackgroundServer
from postwacht.decide import Envelope, decide
from postwacht.discovery import discovery_for, tls_policy
from postwacht.domains import DomainError, to_ascii
from postwacht.policy import Action, OwnedDomain, Partner, Policy, RetiredDomain
from postwacht.policyholder import PolicyHolder

log = logging.getLogger("postwacht.socketmap")
MAX_REQUEST = 100_000
_LENGTH_DIGITS = 6

Lookup = Callable[[str], str]
"""A table: key -> reply body (`OK ...`, `NOTFOUND `, `TEMP ...`, `PERM ...`)."""


class Stream(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class NetstringError(ValueError):
    """A request that is not a netstring; `skip` says how many more bytes to discard."""


def encode(text: str) -> bytes:
    data = text.encode("utf-8")
    return str(len(data)).encode() + b":" + data + b","


def read_netstring(stream: Stream, limit: int = MAX_REQUEST) -> bytes | None:
    """One netstring's payload, None at a clean end of stream; NetstringError if malformed.

    After an error the stream is left after the bad request (at its ',' or its declared
    end), so the next request can be read.
    """
    digits = b""
    while True:
        c = stream.read(1)
        if not c:
            if digits:
                raise NetstringError("connection closed inside a request")
            return None
        if c == b":":
            break
        if not c.isdigit() or len(digits) >= _LENGTH_DIGITS:
            _discard_to_comma(stream)
            raise NetstringError("request is not a netstring")
        digits += c
    if not digits:
        _discard_to_comma(stream)
        raise NetstringError("request has no length")
    length = int(digits)
    if length > limit:
        _discard(stream, length + 1)
        raise NetstringError(f"request longer than {limit} bytes")
    payload = stream.read(length)
    if len(payload) < length:
        raise NetstringError("connection closed inside a request")
    if stream.read(1) != b",":
        raise NetstringError("request does not end with ','")  # that byte stood for it
    return payload


def _discard(stream: Stream, count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, 65536))
        if not chunk:
            return
        count -= len(chunk)


def _discard_to_comma(stream: Stream) -> None:
    while (c := stream.read(1)) and c != b",":
        pass


def transport_table(holder: PolicyHolder) -> Lookup:
    """Final recipients of retired (and rejected look-alike) domains bounce.

    Postfix asks this for direct recipients too (smtpd and qmgr), so these answers are
    not counted as retired-domain attempts: the milter counts those, once each.
    """

    def lookup(key: str) -> str:
        if key == "*" or not key:
            return "NOTFOUND "
        recipient = _table_recipient(key)
        if recipient is None:
            return "TEMP cannot read this address; deferring rather than guessing"
        envelope = Envelope("", (recipient,), internal=True)
        [verdict] = decide(envelope, holder.current).recipients
        # A retired domain bounces here whatever its milter action: a quarantine cannot
        # happen at delivery, and mail expanded to it must never leave.
        if verdict.rule == "retired" or (
            verdict.rule == "lookalike" and verdict.action is Action.REJECT
        ):
            return f"OK error:5.7.1 {_one_line(verdict.reason)}"
        return "NOTFOUND "

    return lookup


def _table_recipient(key: str) -> Recipient | None:
    """Postfix passes addresses in internal form (unquoted: `john doe@example.org`)."""
    try:
        return parse_recipient(key if "@" in key else f"postmaster@{to_ascii(key)}")
    except (AddressError, DomainError):
        pass
    local, _, domain = key.rpartition("@")
    try:
        return parse_recipient(f'"{_quote(local)}"@{domain}') if local else None
    except AddressError:
        return None


def _quote(local: str) -> str:
    return local.replace("\\", "\\\\").replace('"', '\\"')


def tls_table(holder: PolicyHolder) -> Lookup:
    """Per next-hop TLS policy (smtp_tls_policy_maps) from partners and discovery."""

    def lookup(key: str) -> str:
        if key == "*" or not key:
            return "NOTFOUND "
        if key.startswith("["):
            return _route_tls(holder.current, key)
        try:
            domain = to_ascii(key)
        except DomainError:
            return "NOTFOUND "
        policy = holder.current
        rules = policy.secure_transport
        rule = policy.rule_for(domain)
        if rules is None or isinstance(rule, OwnedDomain | RetiredDomain):
            return "NOTFOUND "
        agreed = isinstance(rule, Partner) and "partner" in rules.accept
        facts = None
        if not (agreed and isinstance(rule, Partner) and rule.transport != "mta-sts"):
            facts = discovery_for(policy.dns).facts(domain)
            if facts.method == "failure":
                return f"TEMP {_one_line(facts.detail)}"  # defer rather than guess
        found = tls_policy(domain, policy, facts)
        return f"OK {found}" if found else "NOTFOUND "

    return lookup


def _route_tls(policy: Policy, key: str) -> str:
    """The secure-mail provider of `otherwise: route` is reached over verified TLS too."""
    rules = policy.secure_transport
    if rules is None or rules.route is None or rules.route.partition(":")[2] != key:
        return "NOTFOUND "
    host = key[1:].partition("]")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"OK secure protocols={rules.protocols}"
    # Postfix verifies certificate names, never addresses: for [192.0.2.1] the most it
    # can demand is TLS itself.
    return f"OK encrypt protocols={rules.protocols}"


def _one_line(text: str) -> str:
    return " ".join(text.encode("ascii", "replace").decode().split())


class _Handler(socketserver.StreamRequestHandler):
    server: SocketmapServer

    def handle(self) -> None:
        while True:
            try:
                request = read_netstring(self.rfile)
            except NetstringError as exc:
                metrics.SOCKETMAP.labels(table="-", answer="PERM").inc()
                self._reply(f"PERM {exc}")
                if "closed" in str(exc):
                    return
                continue
            if request is None:
                return
            self._reply(self.server.answer(request))

    def _reply(self, text: str) -> None:
        self.wfile.write(encode(text))
        self.wfile.flush()


class SocketmapServer(BackgroundServer, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    thread_name = "socketmap"

    def __init__(self, address: tuple[str, int], tables: dict[str, Lookup]) -> None:
        self.tables = tables
        super().__init__(address, _Handler)

    def answer(self, request: bytes) -> str:
        name, _, key = request.decode("utf-8", "replace").partition(" ")
        table = self.tables.get(name)
        if table is None:
            metrics.SOCKETMAP.labels(table="-", answer="PERM").inc()
            return f"PERM unknown table {name[:40]!r}"
        try:
            reply = table(key)
        except Exception:  # a lookup that fails must defer the mail, not drop the connection
            log.exception("socketmap %s lookup failed", name)
            metrics.ERRORS.labels(kind="socketmap").inc()
            reply = "TEMP lookup failed"
        metrics.SOCKETMAP.labels(table=name, answer=reply.split(" ", 1)[0]).inc()
        return reply
