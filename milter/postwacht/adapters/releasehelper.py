"""The release helper's socket: the daemon asks root to carry out one review request.

`postsuper` is reserved for the superuser, and the daemon runs as its own user; so a
separate helper runs as root, as small as it can be, and listens on a UNIX socket that
only root and the daemon's group may reach (mode 0660). One question per connection: a
netstring holding `{"request": N}` (carry out request N) or `{"capture": N}` (capture what
review may see of the message held under record N), answered by a netstring holding
`{"ok": bool, "detail": str, "queue_id": str|null}`. The caller names only a number: what
to do, and to which message, the helper reads from the records store itself and checks
against Postfix's queue (`records.queue.carry_out` and `capture`), so a caller who can
reach the socket can still only have done what a reviewer asked for, and can only have
the held messages of open records read into the store.

Floods: a connection has `idle_timeout` seconds to send its request; at
`max_connections` a new connection is closed unanswered (the caller tries again later).
Questions are answered one at a time, and the answer to a request that was carried out
is kept and given again when the same request comes back (its caller timed out, say), so
asking twice never acts twice. A capture is not kept: capturing again only writes the
same view again.
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
from enum import StrEnum
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
"""Bytes of a question (`{"request": N}` is about 20)."""
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


class Ask(StrEnum):
    """What the daemon may ask of the helper: the key of the question's one member."""

    REQUEST = "request"
    """Carry out review request N."""
    CAPTURE = "capture"
    """Capture what review may see of the message held under record N."""


@dataclass(frozen=True, slots=True)
class Question:
    ask: Ask
    number: int
    """A request id or a record id, as `ask` says."""


def parse_request(payload: bytes) -> Question:
    """`{"request": N}` or `{"capture": N}`; ValueError saying what is wrong."""
    try:
        message = json.loads(payload)
    except ValueError:
        raise ValueError("the request is not JSON") from None
    if isinstance(message, dict) and len(message) == 1:
        [(key, number)] = message.items()
        if key in tuple(Ask) and type(number) is int and number >= 1:
            return Question(Ask(key), number)
    raise ValueError('the request is not {"request": N} with N a request id, nor '
                     '{"capture": N} with N a record id')


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
            question = parse_request(payload)
        except (NetstringError, ValueError) as exc:
            log.warning("a malformed request from %s: %s", peer, exc)
            self._answer(ActionResult(False, f"malformed request: {exc}"))
            return
        except OSError:  # idle too long, or the client went away
            return
        result = self.server.answer(question)
        log.info("%s %d from %s: %s: %s", question.ask, question.number, peer,
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
    """Serves `carry_out` (a request id) and `capture` (a record id) on the UNIX socket
    `path`, mode 0660, group `group` (None: root's; a group that does not exist is skipped
    with a warning)."""

    daemon_threads = True
    thread_name = "release-helper"

    def __init__(self, path: Path, carry_out: CarryOut, capture: CarryOut,
                 group: str | None = DEFAULT_GROUP,
                 limits: HelperLimits | None = None) -> None:
        self.path = path
        self.limits = limits or HelperLimits()
        self._carry_out = carry_out
        self._capture = capture
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

    def answer(self, question: Question) -> ActionResult:
        if question.ask is Ask.CAPTURE:
            return self.capture(question.number)
        return self.carry_out(question.number)

    def capture(self, record_id: int) -> ActionResult:
        """One at a time, with the requests."""
        with self._one_at_a_time:
            try:
                return self._capture(record_id)
            except Exception:  # the helper goes on serving; the caller learns it failed
                log.exception("capture of record %d: the release helper failed", record_id)
                return ActionResult(False, f"record {record_id}: the release helper failed "
                                           "to capture its content (its log says why)")

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
    """Asks the release helper at `path` to carry out one request, or to capture the
    content of one held message."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout

    def carry_out(self, request_id: int) -> HelperResult:
        return self._ask(Question(Ask.REQUEST, request_id))

    def capture(self, record_id: int) -> HelperResult:
        return self._ask(Question(Ask.CAPTURE, record_id))

    def _ask(self, question: Question) -> HelperResult:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                raise self._error(f"cannot be reached: {exc.strerror or exc}") from None
            try:
                sock.sendall(encode(json.dumps({question.ask.value: question.number})))
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
