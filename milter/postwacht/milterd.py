"""The pymilter adapter: Postfix asks, `decide` answers, this module only translates.

Two kinds of conversation reach it:
- smtpd (SMTP submission): each refused recipient gets its own 550 at RCPT, the others
  go on; a quarantine verdict holds the whole message at end of message.
- sendmail(1)/pickup (`non_smtpd_milters`): Postfix fakes the client as 127.0.0.1 port 0
  and cannot refuse one recipient (the message would stay in maildrop for ever), so the
  whole message is decided at end of message.

A quarantine is recorded in the state store before the message is held; if the record
cannot be written the message is tempfailed, never accepted unrecorded. An exception in a
callback becomes a tempfail (pymilter's exception policy, set in `run`).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable
from typing import Any, ClassVar

import Milter

import milter as libmilter
from postwacht import metrics
from postwacht.address import AddressError, Recipient, parse_recipient
from postwacht.classify import Classifier
from postwacht.decide import (
    Envelope,
    Facts,
    IPAddress,
    RecipientVerdict,
    decide,
    end_of_message_action,
    transport_domains,
)
from postwacht.discovery import discovery_for
from postwacht.domainwatch import DomainWatcher
from postwacht.policy import Action, Policy
from postwacht.policyholder import PolicyHolder
from postwacht.state import StateError, StateStore

log = logging.getLogger("postwacht.milter")
QUARANTINE_HEADER = "X-Postwacht-Quarantine"
ROUTE_HEADER = "X-Postwacht-Route"
_connections = itertools.count(1)


def smtp_text(text: str) -> str:
    """Reply text as libmilter takes it: ASCII, one line, '%' doubled."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    return " ".join(ascii_text.split()).replace("%", "%%")[:900]


class PostwachtMilter(Milter.Base):  # type: ignore[misc]
    """One instance per MTA connection, reused for each message on it."""

    holder: ClassVar[PolicyHolder]
    store: ClassVar[StateStore]
    watcher: ClassVar[DomainWatcher | None] = None

    def __init__(self) -> None:
        self._conn_id = next(_connections)
        self._client_ip: IPAddress | None = None
        self._local = False
        self._reset()

    def _reset(self) -> None:
        self._policy: Policy | None = None
        self._sender = ""
        self._auth: str | None = None
        self._daemon: str | None = None
        self._verdicts: list[RecipientVerdict] = []
        self._recipients: list[Recipient] = []
        self._internal = False
        self._unparseable: list[str] = []
        self._classifier: Classifier | None = None

    def negotiate(self, opts: list[int]) -> int:
        """Ask for headers and body only when the running policy reads them."""
        offered = opts[1]  # the P_NO* steps the MTA can leave out
        result = int(super().negotiate(opts))
        sensitivity = self.holder.current.sensitivity
        transport = self.holder.current.secure_transport is not None
        skip = 0
        if not (transport and sensitivity.reads_headers):
            skip |= Milter.P_NOHDRS | Milter.P_NOEOH
        if not (transport and sensitivity.reads_body):
            skip |= Milter.P_NOBODY
        opts[1] = self._protocol = opts[1] | (skip & offered)
        return result
    @Milter.noreply  # type: ignore[untyped-decorator]
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(hostaddr, tuple):
            self._client_ip = ipaddress.ip_address(hostaddr[0])
            # A TCP client never has port 0: this is Postfix's stand-in for sendmail(1).
            self._local = hostaddr[1] == 0
        return Milter.CONTINUE  # type: ignore[no-any-return]

    @Milter.noreply  # type: ignore[untyped-decorator]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        self._reset()
        self._policy = self.holder.current
        self._sender = mailfrom.strip().removeprefix("<").removesuffix(">")
        self._auth = self.getsymval("{auth_authen}") or None
        self._daemon = self.getsymval("{daemon_name}") or None
        if self._policy.secure_transport is not None:
            self._classifier = Classifier(self._policy.sensitivity, self._sender)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    @Milter.noreply  # type: ignore[untyped-decorator]
    def header(self, name: str, value: str) -> int:
        if self._classifier is not None:
            self._classifier.header(name, value)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    @Milter.noreply  # type: ignore[untyped-decorator]
    def body(self, chunk: bytes) -> int:
        if self._classifier is not None:
            self._classifier.body(chunk)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envrcpt(self, to: str, *params: str) -> int:
        with metrics.CALLBACK_SECONDS.labels(stage="rcpt").time():
            return self._rcpt(to)

    def _rcpt(self, to: str) -> int:
        policy = self._policy or self.holder.current
        try:
            recipient = parse_recipient(to)
        except AddressError as exc:
            metrics.RECIPIENTS.labels(action="reject", rule="bad-address").inc()
            if self._local:
                self._unparseable.append(str(exc))
                return Milter.CONTINUE  # type: ignore[no-any-return]
            self._log("rcpt", "reject", "bad-address", "-")
            self.setreply("550", "5.1.3", smtp_text(f"bad recipient address: {exc}"))
            return Milter.REJECT  # type: ignore[no-any-return]
        envelope = Envelope(
            sender=self._sender,
            recipients=(recipient,),
            client_ip=self._client_ip,
            authenticated=self._auth,
            daemon_name=self._daemon,
            internal=True if self._local else None,
        )
        verdict = decide(envelope, policy, self._watch_facts())
        self._internal = verdict.internal
        [result] = verdict.recipients
        metrics.RECIPIENTS.labels(action=result.action.value, rule=result.rule).inc()
        if result.rule == "retired" and result.matched:
            self._record_retired_attempt(result.matched)
        if not self._local and result.action in (Action.REJECT, Action.TEMPFAIL):
            self._log("rcpt", result.action.value, result.rule, self._who(result))
            if result.action is Action.REJECT:
                self.setreply("550", "5.7.1", smtp_text(result.reason))
                return Milter.REJECT  # type: ignore[no-any-return]
            self.setreply("451", "4.7.1", smtp_text(result.reason))
            return Milter.TEMPFAIL  # type: ignore[no-any-return]
        self._verdicts.append(result)
        self._recipients.append(recipient)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def _watch_facts(self) -> Facts | None:
        watcher = self.watcher
        return Facts(control_lost=watcher.control_lost) if watcher else None

    def _record_retired_attempt(self, domain: str) -> None:
        """For `postwacht report retired`: which systems still mail retired domains."""
        metrics.RETIRED_ATTEMPTS.labels(domain=domain).inc()
        if self._local:
            client = "sendmail(1) on the MTA host"
        else:
            client = f"smtp from {self._client_ip or 'unknown'}"
            if self._auth:
                client += f" as {self._auth}"
        try:
            self.store.record_retired_attempt(self._sender or "<>", client, domain)
        except StateError as exc:  # the recipient is refused anyway; the report misses one
            metrics.ERRORS.labels(kind="state-store").inc()
            log.error("cannot record a retired-domain attempt: %s", exc)

    def eom(self) -> int:
        with metrics.CALLBACK_SECONDS.labels(stage="eom").time():
            return self._eom()

    def _eom(self) -> int:
        policy = self._policy or self.holder.current
        queue_id = self.getsymval("i") or ""
        verdicts = self._with_content_and_transport(policy)
        if self._unparseable:
            reason = f"a recipient address could not be read: {self._unparseable[0]}"
            return self._hold(queue_id, policy, verdicts, "bad-address", reason)
        action = end_of_message_action(verdicts, policy, self._local)
        metrics.MESSAGES.labels(action=action.value).inc()
        strictest = max(verdicts, key=lambda v: v.action.severity, default=None)
        if action is Action.ACCEPT or strictest is None:
            if self._internal:
                self._log("eom", "accept", "-", ",".join(self._who(v) for v in verdicts),
                          queue_id)
            return Milter.ACCEPT  # type: ignore[no-any-return]
        if action is Action.QUARANTINE:
            return self._hold(queue_id, policy, verdicts, strictest.rule, strictest.reason)
        self._log("eom", action.value, strictest.rule, self._who(strictest), queue_id)
        if action is Action.ROUTE:
            route = policy.secure_transport.route if policy.secure_transport else None
            if not route:
                raise RuntimeError("a route verdict without a route in the policy")
            self.addheader(ROUTE_HEADER, route)  # milter_header_checks maps it to FILTER
            return Milter.ACCEPT  # type: ignore[no-any-return]
        if action is Action.TEMPFAIL:
            self.setreply("451", "4.7.1", smtp_text(strictest.reason))
            return Milter.TEMPFAIL  # type: ignore[no-any-return]
        self.setreply("550", "5.7.1", smtp_text(strictest.reason))
        return Milter.REJECT  # type: ignore[no-any-return]

    def _with_content_and_transport(self, policy: Policy) -> tuple[RecipientVerdict, ...]:
        """Decide again now that the content is known: the secure-transport rule."""
        if self._classifier is None or not self._recipients or not self._internal:
            return tuple(self._verdicts)
        envelope = Envelope(
            sender=self._sender, recipients=tuple(self._recipients), client_ip=self._client_ip,
            authenticated=self._auth, daemon_name=self._daemon,
            internal=True if self._local else None,
        )
        discovery = discovery_for(policy.dns)
        facts = Facts(
            classification=self._classifier.result(),
            transport={d: discovery.facts(d) for d in transport_domains(envelope, policy)},
            control_lost=self.watcher.control_lost if self.watcher else {},
        )
        verdicts = decide(envelope, policy, facts).recipients
        for verdict in verdicts:
            if verdict.rule in ("secure-transport", "insecure-transport", "dns-failure"):
                metrics.RECIPIENTS.labels(action=verdict.action.value, rule=verdict.rule).inc()
        return verdicts

    def _hold(
        self,
        queue_id: str,
        policy: Policy,
        verdicts: tuple[RecipientVerdict, ...],
        rule: str,
        reason: str,
    ) -> int:
        if not queue_id:
            metrics.ERRORS.labels(kind="no-queue-id").inc()
            log.error("conn=%d: no queue id at end of message; tempfailing", self._conn_id)
            return Milter.TEMPFAIL  # type: ignore[no-any-return]
        try:
            self.store.record_quarantine(
                queue_id, self._sender, verdicts, rule, reason, policy.checksum
            )
        except StateError as exc:
            metrics.ERRORS.labels(kind="state-store").inc()
            log.error("id=%s: %s; tempfailing instead of holding unrecorded", queue_id, exc)
            self.setreply("451", "4.3.0", "message could not be recorded for review; try later")
            return Milter.TEMPFAIL  # type: ignore[no-any-return]
        self.addheader(QUARANTINE_HEADER, f"rule={rule}; policy={policy.checksum[:12]}")
        self.quarantine(f"postwacht: {rule}")
        self._log("eom", "quarantine", rule, ",".join(self._who(v) for v in verdicts), queue_id)
        return Milter.ACCEPT  # type: ignore[no-any-return]

    def _who(self, verdict: RecipientVerdict) -> str:
        policy = self._policy or self.holder.current
        if policy.log_local_parts:
            return verdict.address
        return verdict.domains[0] if verdict.domains else "-"

    def _log(
        self, stage: str, action: str, rule: str, recipients: str, queue_id: str = ""
    ) -> None:
        log.info(
            "id=%s conn=%d mode=%s stage=%s action=%s rule=%s recipients=%s",
            queue_id or self.getsymval("i") or "NOQUEUE", self._conn_id,
            "local" if self._local else "smtpd", stage, action, rule, recipients,
        )


def run(
    holder: PolicyHolder,
    store: StateStore,
    watcher: DomainWatcher | None,
    socketspec: str,
    on_ready: Callable[[], None],
) -> None:
    """Serve milter connections until libmilter is told to stop (SIGTERM, SIGHUP)."""
    PostwachtMilter.holder = holder
    PostwachtMilter.store = store
    PostwachtMilter.watcher = watcher
    Milter.factory = PostwachtMilter
    libmilter.set_exception_policy(libmilter.TEMPFAIL)
    libmilter.set_flags(libmilter.ADDHDRS | libmilter.QUARANTINE)
    on_ready()
    Milter.runmilter("postwacht", socketspec, timeout=30)
