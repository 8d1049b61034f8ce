"""`postwacht serve`: the composition root's parts handed to the listeners and the milter.

Every listener is bound before anything starts serving, and whatever was opened is
closed again on the way out, so a failed start leaves no socket behind. The release
helper is a separate process (root): the daemon only asks it, through its socket, to
carry out review requests on this MTA.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from postwacht import defaults
from postwacht.adapters import logqueue, milterd
from postwacht.adapters.control import ControlServer
from postwacht.adapters.releasehelper import ReleaseHelperClient, ReleaseHelperError
from postwacht.adapters.socketmap import (
    ConnectionLimits,
    Lookup,
    SocketmapServer,
    nta7516_tls_table,
    tls_table,
    transport_table,
)
from postwacht.adapters.unixsocket import unix_path
from postwacht.app import App, MtaSettings, StartError, build
from postwacht.cli.common import ExitCode
from postwacht.core.nta7516 import TRANSPORT
from postwacht.records.executor import HelperUnreachableError
from postwacht.records.queue import ActionResult
from postwacht.telemetry.prometheus import MetricsServer

log = logging.getLogger("postwacht")


def split_listen(spec: str) -> tuple[str, int]:
    """`127.0.0.1:9464` -> ("127.0.0.1", 9464); raises ValueError naming the problem."""
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{spec!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def socketmap_address(spec: str) -> tuple[str, int] | Path:
    """`unix:/path` -> Path("/path"), else as `split_listen`."""
    path = unix_path(spec) if spec.startswith("unix:") else None
    if path is None:
        return split_listen(spec)
    if not path.is_absolute():
        raise ValueError(f"{spec!r}: a UNIX socket needs an absolute path")
    return path


def serve(
    policy_path: str,
    milter_socket: str,
    metrics_listen: str | None,
    socketmap_listen: str | None,
    state_dir: str,
    check_interval: float,
    milter_timeout: int = defaults.MILTER_TIMEOUT,
    socketmap_limits: ConnectionLimits | None = None,
    mta: MtaSettings | None = None,
    release_helper: Path | None = None,
) -> int:
    """Serve until SIGTERM. `mta` names this MTA instance and its records (default: the
    host name, SQLite under `state_dir`); `release_helper` is the helper's socket (default
    STATE/release.sock). The log goes to standard error from a thread of its own."""
    # libmilter waits for SIGTERM/SIGHUP/SIGINT in a thread of its own with sigwait(); a
    # thread started before it (the log, metrics, control, watchers) must not take them
    # instead, or the default action kills the process mid-conversation. Threads inherit
    # this mask, so it is set before the first one starts.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
    stop_log = logqueue.start(sys.stderr)
    try:
        return _serve(policy_path, milter_socket, metrics_listen, socketmap_listen,
                      state_dir, check_interval, milter_timeout, socketmap_limits, mta,
                      release_helper)
    finally:
        stop_log()


def _serve(
    policy_path: str,
    milter_socket: str,
    metrics_listen: str | None,
    socketmap_listen: str | None,
    state_dir: str,
    check_interval: float,
    milter_timeout: int,
    socketmap_limits: ConnectionLimits | None,
    mta: MtaSettings | None,
    release_helper: Path | None,
) -> int:
    _raise_file_limit()
    mta = mta or MtaSettings(socket.gethostname())
    helper = _Helper(ReleaseHelperClient(
        release_helper or Path(state_dir) / defaults.RELEASE_HELPER_SOCKET,
        defaults.RELEASE_HELPER_TIMEOUT))
    try:
        app = build(policy_path, state_dir, check_interval, mta, helper)
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
                          "tls": tls_table(app.holder, app.discovery),
                          TRANSPORT: nta7516_tls_table(app.holder, app.discovery)}
                socketmap = _socketmap(socketmap_listen, tables, app, socketmap_limits)
                running.callback(socketmap.stop)
            control = _control(Path(state_dir) / defaults.CONTROL_SOCKET, app)
            running.callback(control.stop)
            running.callback(_milter_socket(milter_socket))
        except StartError as exc:
            log.error("not starting: %s", exc)
            return ExitCode.FAILED
        if socketmap_listen:
            socketmap.start()
        control.start()
        _check_sendmail(mta.sendmail)
        app.start()

        def ready() -> None:
            log.info("serving milter on %s, socketmap on %s, metrics on %s as MTA %s; "
                     "policy %s (%s)", milter_socket, socketmap_listen or "-",
                     metrics_listen or "-", mta.name, policy_path,
                     app.holder.current.summary())

        milterd.run(app, milter_socket, ready, milter_timeout)
    log.info("stopped")
    return ExitCode.OK


class _Helper:
    """The release helper's client, as the request executor asks it."""

    def __init__(self, client: ReleaseHelperClient) -> None:
        self._client = client

    def carry_out(self, request_id: int) -> ActionResult:
        try:
            return self._client.carry_out(request_id)
        except ReleaseHelperError as exc:
            raise HelperUnreachableError(str(exc)) from None

    def capture(self, record_id: int) -> ActionResult:
        try:
            return self._client.capture(record_id)
        except ReleaseHelperError as exc:
            raise HelperUnreachableError(str(exc)) from None


def _check_sendmail(command: str) -> None:
    """Notices go out through sendmail(1); say so now when it cannot run, rather than
    with the first hold (a policy reload may turn notices on later, so it is no reason
    not to start)."""
    if not os.access(command, os.X_OK):
        log.warning("notices: %s is not an executable file; notices to senders and "
                    "reviewers will fail (serve --sendmail names another)", command)


def _raise_file_limit() -> None:
    """libmilter takes a thread and a file descriptor per connection and stops accepting
    at the limit (all mail then waits): take all the descriptors the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.warning("open files: cannot raise the limit of %d to %d: %s", soft, hard, exc)
            return
    log.info("open files: limit %d (was %d)", hard, soft)


def _socketmap(spec: str, tables: dict[str, Lookup], app: App,
               limits: ConnectionLimits | None) -> SocketmapServer:
    try:
        return SocketmapServer(socketmap_address(spec), tables, app.telemetry, limits)
    except (OSError, ValueError) as exc:
        raise StartError(f"socketmap on {spec}: {exc}") from None


def _milter_socket(spec: str) -> Callable[[], None]:
    try:
        return milterd.open_socket(spec)
    except OSError as exc:
        raise StartError(f"milter on {spec}: {exc}") from None


def _control(path: Path, app: App) -> ControlServer:
    try:
        return ControlServer(path, app.holder, lambda: app.relayhost.refresh(force=True))
    except OSError as exc:
        raise StartError(f"control socket {path}: {exc.strerror or exc}") from None


def _listen(what: str, spec: str, bind: Callable[[str, int], MetricsServer]) -> MetricsServer:
    try:
        host, port = split_listen(spec)
        return bind(host, port)
    except (OSError, ValueError) as exc:
        raise StartError(f"{what} on {spec}: {exc}") from None
