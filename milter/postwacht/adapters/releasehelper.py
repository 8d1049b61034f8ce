"""The release helper's socket: the daemon asks root to carry out one review request.

`postsuper` is reserved for the superuser, and the daemon runs as its own user; so a
separate helper runs as root, as small as it can be, and listens on a UNIX socket that
only root and the daemon's group may reach (mode 0660). One request per connection: a
netstring holding `{"request": N}`, answered by a netstring holding `{"ok": bool,
"detail": str, "queue_id": str|null}`. The caller names only a request id: what to do,
and to which message, the helper reads from the records store itself and checks against
Postfix's queue (`records.queue.carry_out`), so a caller who can reach the socket can
still only have done what a reviewer asked for.

Floods: a connection has `idle_timeout` seconds to send its request; at
`max_connections` a new connection is closed unanswered (the caller tries again later).
Requests are carried out one at a time, and the answer to a request that was carried out
is kept and given again when the same request comes back (its caller timed out, say), so
asking twice never acts twice.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postwacht.adapters.background import BackgroundServer
from postwacht.adapters.netstring import NetstringError, RequestClock, encode, read_netstring
from postwacht.adapters.unixsocket import claim, group_only, identity, release
from postwacht.records.queue import ActionResult

log = logging.getLogger("postwacht.release")

HelperResult = ActionResult
"""The helper's answer: ok, a detail for the reviewer, and the new queue id if any."""
DEFAULT_GROUP = "postwacht"
"""The daemon's group: the only one, besides root, that may connect."""
IDLE_TIMEOUT = 10.0
"""Seconds a connection may take to send its request."""
MAX_CONNECTIONS = 16
REQUEST_MAX = 200
"""Bytes of a request (`{"request": N}` is about 20)."""
ANSWER_MAX = 65_536
WARN_EVERY = 60.0
REMEMBERED = 1000
"""Answers to carried-out requests kept, to be given again if asked again."""

CarryOut = Callable[[int], ActionResult]


class ReleaseHelperError(Exception):
    """The helper could not be asked, or did not answer properly; the message names the
    socket and why. Whether the request was carried out is then unknown: ask again (the
    helper answers a request it carried out with the same answer)."""


@dataclass(frozen=True)
class HelperLimits:
    idle_timeout: float = IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


def parse_request(payload: bytes) -> int:
    """The request id of `{"request": N}`; ValueError saying what is wrong."""
    try:
        message = json.loads(payload)
    except ValueError:
        raise ValueError("the request is not JSON") from None
    request_id = message.get("request") if isinstance(message, dict) else None
    if type(request_id) is not int or request_id < 1:
        raise ValueError('the request is not {"request": N} with N a request id')
    return request_id


class _Handler(socketserver.StreamRequestHandler):
    server: ReleaseHelperServer

    def handle(self) -> None:
        peer = _peer(self.connection)
        try:
            payload = read_netstring(
                RequestClock(self.connection, self.rfile, self.server.limits.idle_timeout),
                REQUEST_MAX)
            if payload is None:
                return
            request_id = parse_request(payload)
        except (NetstringError, ValueError) as exc:
            log.warning("a malformed request from %s: %s", peer, exc)
            self._answer(ActionResult(False, f"malformed request: {exc}"))
            return
        except OSError:  # idle too long, or the client went away
            return
        result = self.server.carry_out(request_id)
        log.info("request %d from %s: %s: %s", request_id, peer,
                 "done" if result.ok else "not done", result.detail)
        self._answer(result)

    def _answer(self, result: ActionResult) -> None:
        reply = {"ok": result.ok, "detail": result.detail, "queue_id": result.queue_id}
        try:
            self.connection.settimeout(self.server.limits.idle_timeout)
            self.wfile.write(encode(json.dumps(reply)))
            self.wfile.flush()
        except OSError:
            log.warning("the caller left before its answer: %s", result.detail)


def _peer(connection: socket.socket) -> str:
    """Who connected (uid and pid), for the log."""
    try:
        pid, uid, _ = struct.unpack("3i", connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return "an unknown process"
    return f"uid {uid} pid {pid}"


class ReleaseHelperServer(BackgroundServer, socketserver.ThreadingUnixStreamServer):
    """Serves `carry_out` on the UNIX socket `path`, mode 0660, group `group` (None:
    root's; a group that does not exist is skipped with a warning)."""

    daemon_threads = True
    thread_name = "release-helper"

    def __init__(self, path: Path, carry_out: CarryOut, group: str | None = DEFAULT_GROUP,
                 limits: HelperLimits | None = None) -> None:
        self.path = path
        self.limits = limits or HelperLimits()
        self._carry_out = carry_out
        self._group = group
        self._one_at_a_time = threading.Lock()
        self._done: OrderedDict[int, ActionResult] = OrderedDict()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        self._made: tuple[int, int] | None = None
        self._warned_at = -WARN_EVERY
        claim(path)
        with group_only():  # 0660 from the moment it exists
            super().__init__(str(path), _Handler)

    def server_bind(self) -> None:
        """Bind with the group as the effective group id, so the socket is made with it:
        no chown, nothing renamed, nothing followed in a directory that the daemon's user
        can write (the state directory). In a set-group-id directory the socket takes the
        directory's group instead, as every file there does."""
        gid = self._gid()
        saved = os.getegid()
        if gid is not None:
            os.setegid(gid)
        try:
            self.socket.bind(str(self.path))  # 0660: the umask is group_only's
        finally:
            if gid is not None:
                os.setegid(saved)
        self.server_address = str(self.path)
        self._made = identity(self.path)

    def _gid(self) -> int | None:
        if self._group is None:
            return None
        try:
            return grp.getgrnam(self._group).gr_gid
        except KeyError:
            log.warning("group %r does not exist: %s stays root's only (mode 0660, group "
                        "root), and the daemon cannot reach it", self._group, self.path)
            return None

    def server_close(self) -> None:
        super().server_close()
        if self._made is not None:
            release(self.path, self._made)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY:  # a flood must not flood the log too
                self._warned_at = now
                log.warning("release helper at its limit of %d connections: new ones are "
                            "closed unanswered", self.limits.max_connections)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def carry_out(self, request_id: int) -> ActionResult:
        """One at a time; a request carried out before gets its answer again."""
        with self._one_at_a_time:
            if request_id in self._done:
                return self._done[request_id]
            try:
                result = self._carry_out(request_id)
            except Exception:  # the helper goes on serving; the caller learns it failed
                log.exception("request %d: the release helper failed", request_id)
                return ActionResult(False, f"request {request_id}: the release helper failed "
                                           "(its log says why): nothing done")
            if result.ok:
                self._done[request_id] = result
                while len(self._done) > REMEMBERED:
                    self._done.popitem(last=False)
            return result


class ReleaseHelperClient:
    """Asks the release helper at `path` to carry out one request."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout

    def carry_out(self, request_id: int) -> HelperResult:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                raise self._error(f"cannot be reached: {exc.strerror or exc}") from None
            try:
                sock.sendall(encode(json.dumps({"request": request_id})))
                with sock.makefile("rb") as stream:
                    payload = read_netstring(stream, ANSWER_MAX)
            except TimeoutError:
                raise self._error(f"no answer within {self.timeout:g} s (the request may "
                                  "have been carried out; ask again)") from None
            except NetstringError as exc:
                if "closed" not in str(exc):
                    raise self._error(f"answered garbage ({exc})") from None
                payload = None
            except OSError as exc:
                raise self._error(f"closed the connection without an answer (busy, or "
                                  f"stopping): {exc.strerror or exc}") from None
        if payload is None:
            raise self._error("closed the connection without an answer (busy, or stopping)")
        return self._result(payload)

    def _result(self, payload: bytes) -> HelperResult:
        try:
            answer = json.loads(payload)
        except ValueError:
            raise self._error("answered garbage (not JSON)") from None
        if (not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool)
                or not isinstance(answer.get("detail"), str)
                or not isinstance(answer.get("queue_id"), str | None)):
            raise self._error('answered garbage (not {"ok", "detail", "queue_id"})')
        return HelperResult(answer["ok"], answer["detail"], answer["queue_id"])

    def _error(self, why: str) -> ReleaseHelperError:
        return ReleaseHelperError(f"release helper at {self.path}: {why}")
