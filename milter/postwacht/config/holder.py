"""The running policy, and how it is replaced without a restart.

A new policy is checked completely before it replaces the running one; a broken file is
reported (the same messages as `postwacht check`), counted, and the running policy stays.
Readers take `holder.current` once per message, so one message is never decided by two
policies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postwacht.config.compiler import load
from postwacht.config.policyfile import READ_TIMEOUT, PolicyError
from postwacht.core.policy import Policy
from postwacht.filestamp import FileStamp, file_stamp
from postwacht.telemetry import ReloadResult, Telemetry

log = logging.getLogger("postwacht.policy")


@dataclass(frozen=True, slots=True)
class Reload:
    """What a reload did: loaded, kept the same, or refused (with every problem)."""

    ok: bool
    changed: bool
    summary: str
    problems: tuple[str, ...] = ()
    ran: bool = True
    """False when another reload held the file too long and this one did not look."""


class PolicyHolder:
    def __init__(self, path: str | Path, policy: Policy, telemetry: Telemetry) -> None:
        self.path = Path(path)
        self._policy = policy
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Policy], None]] = []
        self.loaded_at = time.time()
        telemetry.policy_loaded(policy.checksum, self.loaded_at)

    def on_change(self, listener: Callable[[Policy], None]) -> None:
        """Call `listener` with each new policy after it replaced the running one."""
        self._listeners.append(listener)

    @property
    def current(self) -> Policy:
        return self._policy  # one reference read: atomic under the GIL

    def reload(self) -> Reload:
        """Load the file again; keep the running policy unless the new one is valid.

        Reloads take turns. One that waits longer than a read may take gives up and says
        so, rather than leaving `postwacht reload` hanging behind a stuck file system.
        """
        if not self._lock.acquire(timeout=2 * READ_TIMEOUT):
            problem = f"{self.path}: another reload has been running for too long; try again"
            log.error("policy reload not started: %s", problem)
            self._telemetry.policy_reload(ReloadResult.INVALID)
            return Reload(False, False, self._policy.summary(), (problem,), ran=False)
        try:
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> Reload:
        try:
            policy = load(self.path)
        except Exception as exc:  # noqa: BLE001 - no file may stop reloads for good
            problems = (tuple(str(p) for p in exc.problems) if isinstance(exc, PolicyError)
                        else (f"{self.path}: cannot load: {exc!r}",))
            for problem in problems:
                log.error("policy reload rejected: %s", problem)
            log.error("keeping the running policy %s", self._policy.checksum[:12])
            self._telemetry.policy_reload(ReloadResult.INVALID)
            return Reload(False, False, self._policy.summary(), problems)
        changed = policy.checksum != self._policy.checksum
        if changed:
            self._policy = policy
            self.loaded_at = time.time()
            self._telemetry.policy_loaded(policy.checksum, self.loaded_at)
            log.info("policy reloaded: %s", policy.summary())
            for listener in self._listeners:
                listener(policy)
        self._telemetry.policy_reload(ReloadResult.OK if changed else ReloadResult.UNCHANGED)
        return Reload(True, changed, policy.summary())

    def checked(self) -> None:
        """The watcher finished a look at the file (exported, so a stuck watcher shows)."""
        self._telemetry.policy_checked(time.time())

    def file_gone(self) -> None:
        log.error("policy file %s is gone; keeping the running policy", self.path)
        self._telemetry.policy_reload(ReloadResult.INVALID)


class PolicyWatcher(threading.Thread):
    """Reloads the policy when its file changes (checked every `interval` seconds)."""

    def __init__(self, holder: PolicyHolder, interval: float,
                 also: Callable[[], None] | None = None) -> None:
        super().__init__(name="policy-watcher", daemon=True)
        self._holder = holder
        self._interval = interval
        self._also = also
        """Called on every look too (the relayhost watch: has main.cf changed?)."""
        self._stop_event = threading.Event()
        self._seen = file_stamp(self._holder.path)
        self._changing: FileStamp | None = None

    def run(self) -> None:
        self._holder.checked()
        while not self._stop_event.wait(self._interval):
            self._look()
            if self._also is not None:
                try:
                    self._also()
                except Exception:  # logged; it must not end the policy's reloads
                    log.exception("the watcher's other look failed")
            self._holder.checked()

    def _look(self) -> None:
        seen = file_stamp(self._holder.path)
        if seen is None:
            if self._seen is not None:
                self._holder.file_gone()
            self._seen = None
            return
        if seen == self._seen:
            return
        if seen != self._changing:
            self._changing = seen  # still being written? load it once it held still a beat
            return
        if self._holder.reload().ran:  # else the change is still unseen: look again
            self._seen, self._changing = seen, None

    def stop(self) -> None:
        self._stop_event.set()
