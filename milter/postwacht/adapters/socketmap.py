"""Postfix socketmap tables served from the running policy: `transport` and `tls`.

The answers are the core's (`postwacht.core.tables`); this module reads requests, asks
discovery for the facts the `tls` answer names, and writes replies. The protocol
(socketmap_table(5)): each request is a netstring `NAME KEY`, each reply a netstring
`OK data`, `NOTFOUND `, `TEMP reason` or `PERM reason`. A request that is malformed or
too long gets PERM and the connection goes on; a lookup that fails gets TEMP, so Postfix
defers the mail rather than guessing.

Floods: each connection has one thread, and a client that sends nothing, or half a
request, for `idle_timeout` seconds is let go (Postfix itself closes a socketmap connection
after 10 s idle and reconnects when it needs one). At `max_connections` a new connection
makes room by closing the one that has waited longest for a request; Postfix retries a
lookup once on a connection closed under it, so its lookups are still answered while a
flood of idle clients takes turns. Only when every connection is inside a lookup is the
new one closed at once. The listen backlog takes a burst of connects without refusing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from postwacht import defaults
from postwacht.adapters.background import BackgroundServer
from postwacht.adapters.netstring import NetstringError, RequestClock, encode, read_netstring
from postwacht.adapters.unixsocket import SOCKET_MODE, claim, identity, release
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
_WARN_EVERY = 60.0


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


def nta7516_tls_table(holder: PolicyHolder, discovery: DiscoveryPool) -> Lookup:
    """The TLS table of the `nta7516` transport: asked only about NTA 7516 hosts."""
    def lookup(key: str) -> TableAnswer:
        policy = holder.current
        return discovery.for_settings(policy.dns).nta7516_tls(key, policy)

    return lookup


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout: float = defaults.SOCKETMAP_IDLE_TIMEOUT
    """Seconds a connection may take to send its next complete request."""
    max_connections: int = defaults.SOCKETMAP_MAX_CONNECTIONS
    backlog: int = defaults.SOCKETMAP_BACKLOG


class Admission(Enum):
    ADMITTED = "admitted"
    MADE_ROOM = "made room"
    """At the limit: the connection that had waited longest for a request was closed."""
    FULL = "full"
    """At the limit with every connection inside a lookup: the new one was closed."""


class _Connections:
    """The open connections, and since when each has waited for its next request
    (None while a lookup is answered: such a connection is never closed to make room)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._waiting_since: dict[socket.socket, float | None] = {}

    def admit(self, connection: socket.socket) -> Admission:
        """Take `connection` in, closing the longest-waiting one if at the limit."""
        with self._lock:
            admission = Admission.ADMITTED
            if len(self._waiting_since) >= self._limit:
                idle = [(since, conn) for conn, since in self._waiting_since.items()
                        if since is not None]
                if not idle:
                    return Admission.FULL
                _, oldest = min(idle, key=lambda item: item[0])
                del self._waiting_since[oldest]
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)  # its thread sees the end and leaves
                admission = Admission.MADE_ROOM
            self._waiting_since[connection] = time.monotonic()
            return admission

    def waiting(self, connection: socket.socket) -> None:
        with self._lock:
            if connection in self._waiting_since:
                self._waiting_since[connection] = time.monotonic()

    def busy(self, connection: socket.socket) -> None:
        with self._lock:
            if connection in self._waiting_since:
                self._waiting_since[connection] = None

    def leave(self, connection: socket.socket) -> None:
        with self._lock:
            self._waiting_since.pop(connection, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting_since)


class _Handler(socketserver.StreamRequestHandler):
    server: SocketmapServer

    def handle(self) -> None:
        connections = self.server.connections
        clock = RequestClock(self.connection, self.rfile, self.server.limits.idle_timeout)
        try:
            while True:  # waiting for a request since it was admitted or last answered
                clock.restart()
                try:
                    request = read_netstring(clock)
                except NetstringError as exc:
                    if "closed" in str(exc):
                        return
                    self.server.telemetry.socketmap("-", Status.PERM.value)
                    self._reply(f"{Status.PERM} {exc}")
                    continue
                if request is None:
                    return
                connections.busy(self.connection)
                self._reply(str(self.server.answer(request)))
                connections.waiting(self.connection)
        except OSError:  # idle too long, closed to make room, or the client went away
            return

    def _reply(self, text: str) -> None:
        self.connection.settimeout(self.server.limits.idle_timeout)
        self.wfile.write(encode(text))
        self.wfile.flush()


class SocketmapServer(BackgroundServer, socketserver.ThreadingTCPServer):
    """Serves on `address`: (host, port), or a path for a UNIX socket (mode 0660)."""

    daemon_threads = True
    allow_reuse_address = True
    thread_name = "socketmap"

    def __init__(self, address: tuple[str, int] | Path, tables: dict[str, Lookup],
                 telemetry: Telemetry, limits: ConnectionLimits | None = None) -> None:
        self.tables = tables
        self.telemetry = telemetry
        self.limits = limits or ConnectionLimits()
        self.connections = _Connections(self.limits.max_connections)
        self.request_queue_size = self.limits.backlog
        self.path: Path | None = None
        self._warned_at = -_WARN_EVERY
        self._made: tuple[int, int] | None = None
        if isinstance(address, Path):
            claim(address)
            self.address_family = socket.AF_UNIX
            self.path = address
            super().__init__(str(address), _Handler)  # type: ignore[arg-type]  # AF_UNIX
        else:
            if ":" in address[0]:
                self.address_family = socket.AF_INET6
            super().__init__(address, _Handler)

    def server_bind(self) -> None:
        super().server_bind()
        if self.path is not None:  # not listening yet: nobody could connect before this
            self.path.chmod(SOCKET_MODE)
            self._made = identity(self.path)

    def server_close(self) -> None:
        super().server_close()
        if self.path is not None and self._made is not None:
            release(self.path, self._made)

    def process_request(self, request: Any, client_address: Any) -> None:
        admission = self.connections.admit(request)
        if admission is not Admission.ADMITTED:
            self.telemetry.error(ErrorKind.SOCKETMAP_BUSY)
            self._warn_full(admission)
        if admission is Admission.FULL:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _warn_full(self, admission: Admission) -> None:
        """One line a minute at most: a flood must not flood the log as well."""
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning("socketmap at its limit of %d connections (%s); counted in "
                        "postwacht_errors_total{kind=%r}", self.limits.max_connections,
                        admission.value, ErrorKind.SOCKETMAP_BUSY.value)

    def shutdown_request(self, request: Any) -> None:
        self.connections.leave(request)
        super().shutdown_request(request)

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
