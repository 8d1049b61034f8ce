"""Postfix socketmap tables served from the running policy: `transport` and `tls`.

The answers are the core's (`postwacht.core.tables`); this module reads requests, asks
discovery for the facts the `tls` answer names, and writes replies. The protocol
(socketmap_table(5)): each request is a netstring `NAME KEY`, each reply a netstring
`OK data`, `NOTFOUND `, `TEMP reason` or `PERM reason`. A request that is malformed or
too long gets PERM and the connection goes on; a lookup that fails gets TEMP, so Postfix
defers the mail rather than guessing.
"""

from __future__ import annotations

import logging
import socketserver
from collections.abc import Callable

from postwacht.adapters.background import BackgroundServer
from postwacht.adapters.netstring import NetstringError, encode, read_netstring
from postwacht.config.holder import PolicyHolder
from postwacht.core.tables import (
    Status,
    TableAnswer,
    tls_answer,
    tls_needs_facts,
    transport_answer,
)
from postwacht.facts.discovery import DiscoveryPool
from postwacht.telemetry import ErrorKind, Telemetry

log = logging.getLogger("postwacht.socketmap")

Lookup = Callable[[str], TableAnswer]
"""A table: key -> answer."""


def transport_table(holder: PolicyHolder) -> Lookup:
    def lookup(key: str) -> TableAnswer:
        return transport_answer(key, holder.current)

    return lookup


def tls_table(holder: PolicyHolder, discovery: DiscoveryPool) -> Lookup:
    def lookup(key: str) -> TableAnswer:
        policy = holder.current
        domain = tls_needs_facts(key, policy)
        facts = discovery.for_settings(policy.dns).facts(domain) if domain else None
        return tls_answer(key, policy, facts)

    return lookup


class _Handler(socketserver.StreamRequestHandler):
    server: SocketmapServer

    def handle(self) -> None:
        while True:
            try:
                request = read_netstring(self.rfile)
            except NetstringError as exc:
                self.server.telemetry.socketmap("-", Status.PERM.value)
                self._reply(f"{Status.PERM} {exc}")
                if "closed" in str(exc):
                    return
                continue
            if request is None:
                return
            self._reply(str(self.server.answer(request)))

    def _reply(self, text: str) -> None:
        self.wfile.write(encode(text))
        self.wfile.flush()


class SocketmapServer(BackgroundServer, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    thread_name = "socketmap"

    def __init__(self, address: tuple[str, int], tables: dict[str, Lookup],
                 telemetry: Telemetry) -> None:
        self.tables = tables
        self.telemetry = telemetry
        super().__init__(address, _Handler)

    def answer(self, request: bytes) -> TableAnswer:
        name, _, key = request.decode("utf-8", "replace").partition(" ")
        table = self.tables.get(name)
        if table is None:
            self.telemetry.socketmap("-", Status.PERM.value)
            return TableAnswer(Status.PERM, f"unknown table {name[:40]!r}")
        try:
            reply = table(key)
        except Exception:  # a lookup that fails must defer the mail, not drop the connection
            log.exception("socketmap %s lookup failed", name)
            self.telemetry.error(ErrorKind.SOCKETMAP)
            reply = TableAnswer(Status.TEMP, "lookup failed")
        self.telemetry.socketmap(name, reply.status.value)
        return reply
