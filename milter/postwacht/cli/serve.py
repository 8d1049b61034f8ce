"""`postwacht serve`: the composition root's parts handed to the listeners and the milter.

Every listener is bound before anything starts serving, and whatever was opened is
closed again on the way out, so a failed start leaves no socket behind.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from postwacht import defaults
from postwacht.adapters import milterd
from postwacht.adapters.control import ControlServer
from postwacht.adapters.socketmap import SocketmapServer, tls_table, transport_table
from postwacht.app import App, StartError, build
from postwacht.cli.common import ExitCode
from postwacht.telemetry.prometheus import MetricsServer

log = logging.getLogger("postwacht")


def split_listen(spec: str) -> tuple[str, int]:
    """`127.0.0.1:9464` -> ("127.0.0.1", 9464); raises ValueError naming the problem."""
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{spec!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def serve(
    policy_path: str,
    milter_socket: str,
    metrics_listen: str | None,
    socketmap_listen: str | None,
    state_dir: str,
    check_interval: float,
) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # libmilter waits for SIGTERM/SIGHUP/SIGINT in a thread of its own with sigwait(); a
    # thread started before it (metrics, control, watchers) must not take them instead, or
    # the default action kills the process mid-conversation. Threads inherit this mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
    try:
        app = build(policy_path, state_dir, check_interval)
    except StartError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        log.error("not starting: %s", exc)
        return ExitCode.FAILED
    with contextlib.ExitStack() as running:
        running.callback(app.stop)
        try:
            if metrics_listen:
                running.callback(_listen("metrics", metrics_listen, lambda host, port:
                                         MetricsServer(app.telemetry.registry, host, port)).stop)
            if socketmap_listen:
                tables = {"transport": transport_table(app.holder),
                          "tls": tls_table(app.holder, app.discovery)}
                socketmap = _listen("socketmap", socketmap_listen, lambda host, port:
                                    SocketmapServer((host, port), tables, app.telemetry))
                running.callback(socketmap.stop)
            control = _control(Path(state_dir) / defaults.CONTROL_SOCKET, app)
            running.callback(control.stop)
        except StartError as exc:
            log.error("not starting: %s", exc)
            return ExitCode.FAILED
        if socketmap_listen:
            socketmap.start()
        control.start()
        app.start()

        def ready() -> None:
            log.info("serving milter on %s, socketmap on %s, metrics on %s; policy %s (%s)",
                     milter_socket, socketmap_listen or "-", metrics_listen or "-",
                     policy_path, app.holder.current.summary())

        milterd.run(app, milter_socket, ready)
    log.info("stopped")
    return ExitCode.OK


def _control(path: Path, app: App) -> ControlServer:
    try:
        return ControlServer(path, app.holder)
    except OSError as exc:
        raise StartError(f"control socket {path}: {exc.strerror or exc}") from None


_Server = TypeVar("_Server", MetricsServer, SocketmapServer)


def _listen(what: str, spec: str, bind: Callable[[str, int], _Server]) -> _Server:
    try:
        host, port = split_listen(spec)
        return bind(host, port)
    except (OSError, ValueError) as exc:
        raise StartError(f"{what} on {spec}: {exc}") from None
