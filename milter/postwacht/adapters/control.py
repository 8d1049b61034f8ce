"""A control socket in the state directory: `postwacht reload` and `postwacht status`.

libmilter takes SIGHUP as "stop", so a reload is asked for here instead. The socket is a
UNIX socket readable by root and the daemon's user only; one request line, one JSON reply.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postwacht import defaults
from postwacht.adapters.background import BackgroundServer
from postwacht.config.holder import PolicyHolder

SOCKET_NAME = defaults.CONTROL_SOCKET
log = logging.getLogger("postwacht.control")


class ControlError(Exception):
    """The daemon could not be asked; the message says why."""


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer
    timeout = 10.0
    """A client that connects and says nothing does not keep a thread for ever."""

    def handle(self) -> None:
        try:
            request = self.rfile.readline(256)
        except OSError:  # timed out or went away: nothing was asked
            return
        line = request.decode("ascii", "replace").strip()
        holder = self.server.holder
        reply: dict[str, Any]
        if line == "reload":
            if self.server.also_reload is not None:
                try:
                    self.server.also_reload()
                except Exception:  # logged; the policy is reloaded all the same
                    log.exception("reading Postfix's relayhost again failed")
            result = holder.reload()
            reply = {"ok": result.ok, "changed": result.changed, "summary": result.summary,
                     "problems": list(result.problems)}
        elif line == "status":
            policy = holder.current
            reply = {"ok": True, "policy": str(holder.path), "checksum": policy.checksum,
                     "summary": policy.summary(), "loaded_at": holder.loaded_at}
        else:
            reply = {"ok": False, "problems": [f"unknown request {line!r}"]}
        try:
            self.wfile.write(json.dumps(reply).encode() + b"\n")
        except OSError:
            log.info("a control client left before its %s reply", line[:20])


class ControlServer(BackgroundServer, socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    thread_name = "control"

    def __init__(self, path: Path, holder: PolicyHolder,
                 also_reload: Callable[[], None] | None = None) -> None:
        self.holder = holder
        self.also_reload = also_reload
        """Read again on `reload` too (Postfix's relayhost)."""
        if path.exists() or path.is_symlink():
            path.unlink()
        old_umask = os.umask(0o077)
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old_umask)
        self.path = path

    def stop(self) -> None:
        super().stop()
        self.path.unlink(missing_ok=True)


def ask(state_dir: str | Path, request: str, timeout: float = 60.0) -> dict[str, Any]:
    """Send one request to a running daemon and return its reply."""
    path = Path(state_dir) / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(request.encode("ascii") + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ControlError(f"cannot reach the daemon at {path}: {exc.strerror or exc}") from None
    try:
        reply: dict[str, Any] = json.loads(data)
    except ValueError:
        raise ControlError(f"the daemon at {path} sent no valid reply") from None
    return reply
