"""`postwacht serve`: the policy, the state store, the control socket, metrics, the milter."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from prometheus_client import REGISTRY, start_http_server

from postwacht import milterd
from postwacht.control import SOCKET_NAME, ControlServer
from postwacht.domainwatch import DomainWatcher
from postwacht.metrics import QuarantineCollector
from postwacht.policy import load
from postwacht.policyfile import PolicyError
from postwacht.policyholder import PolicyHolder, PolicyWatcher
from postwacht.socketmap import SocketmapServer, tls_table, transport_table
from postwacht.state import StateError, StateStore

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
    try:
        policy = load(policy_path)
    except PolicyError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        log.error("not starting: %s is invalid", policy_path)
        return 1
    try:
        store = StateStore(state_dir)
    except StateError as exc:
        log.error("not starting: %s", exc)
        return 1
    # libmilter waits for SIGTERM/SIGHUP/SIGINT in a thread of its own with sigwait(); a
    # thread started before it (metrics, control, watcher) must not take them instead, or
    # the default action kills the process mid-conversation. Threads inherit this mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
    holder = PolicyHolder(policy_path, policy)
    watcher = PolicyWatcher(holder, check_interval)
    control = ControlServer(Path(state_dir) / SOCKET_NAME, holder)
    if metrics_listen:
        try:
            host, port = split_listen(metrics_listen)
            start_http_server(port, addr=host)
        except (OSError, ValueError) as exc:
            log.error("not starting: metrics on %s: %s", metrics_listen, exc)
            return 1
    socketmap = None
    if socketmap_listen:
        try:
            socketmap = SocketmapServer(
                split_listen(socketmap_listen),
                {"transport": transport_table(holder), "tls": tls_table(holder)},
            )
        except (OSError, ValueError) as exc:
            log.error("not starting: socketmap on %s: %s", socketmap_listen, exc)
            return 1
        socketmap.start()
    watcher.start()
    control.start()
    domains = DomainWatcher(holder)
    domains.start()
    REGISTRY.register(QuarantineCollector(store))

    def ready() -> None:
        log.info("serving milter on %s, socketmap on %s, metrics on %s; policy %s (%s)",
                 milter_socket, socketmap_listen or "-", metrics_listen or "-", policy_path,
                 policy.summary())

    try:
        milterd.run(holder, store, domains, milter_socket, ready)
    finally:
        domains.stop()
        if socketmap is not None:
            socketmap.stop()
        watcher.stop()
        control.stop()
        store.close()
        log.info("stopped")
    return 0
