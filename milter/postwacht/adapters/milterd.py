"""The pymilter adapter: Postfix asks, the core answers, this module only translates.

Two kinds of conversation reach it:
- smtpd (SMTP submission): each refused recipient gets its own reply at RCPT, the others
  go on; the whole message is decided again at end of message.
- sendmail(1)/pickup (`non_smtpd_milters`): Postfix fakes the client as 127.0.0.1 port 0
  and cannot refuse one recipient (the message would stay in maildrop for ever), so the
  whole message is decided at end of message.

Fail closed: a hold is recorded before the message is held, and a record that cannot be
written tempfails the message instead; an exception in a callback becomes a tempfail
(pymilter's exception policy, set in `run`). Only holds wait on the records store:
accepting, routing and refusing never do, so mail that need not be held flows while the
store is down (a retired-domain attempt that cannot be recorded is only logged).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import Milter

import milter as libmilter
from postwacht import defaults
from postwacht.adapters.headers import VisibleRecipients
from postwacht.adapters.unixsocket import claim, group_only, identity, release, unix_path
from postwacht.app import App
from postwacht.core.address import AddressError, Recipient, parse_recipient
from postwacht.core.classify import Classifier
from postwacht.core.decide import Envelope, IPAddress, RecipientVerdict
from postwacht.core.outcome import (
    NO_QUEUE_ID,
    RECORD_FAILED,
    MessageOutcome,
    RcptOutcome,
    Reply,
    at_end_of_message,
    at_rcpt,
    unreadable_at_rcpt,
)
from postwacht.core.policy import Policy
from postwacht.core.tables import one_line
from postwacht.core.text import is_queue_id, printable
from postwacht.core.vocabulary import Action
from postwacht.records.queue import QUARANTINE_HEADER
from postwacht.records.store import Hold, RecordsError
from postwacht.telemetry import ErrorKind, Stage

log = logging.getLogger("postwacht.milter")
ROUTE_HEADER = "X-Postwacht-Route"
"""`milter_header_checks` maps it to `FILTER` (deploy/postfix/header_checks)."""

_CODES = {Action.REJECT: Milter.REJECT, Action.TEMPFAIL: Milter.TEMPFAIL}
_STATUS_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
"""An enhanced status code alone, as Postfix gives it for a recipient it refused."""


def quarantine_header(hold: Hold) -> str:
    """The X-Postwacht-Quarantine value: the rule and policy for a person reading the
    held message, and the record's key, by which the release helper knows that a message
    under this queue id is the one the record is about."""
    return f"rule={hold.rule}; policy={hold.policy[:12]}; key={hold.key}"


def smtp_text(text: str) -> str:
    """Reply text as libmilter takes it: ASCII, one line, '%' doubled."""
    return one_line(text).replace("%", "%%")[:900]


class PostwachtMilter(Milter.Base):  # type: ignore[misc]
    """One instance per MTA connection, reused for each message on it.

    Whoever reaches the listener can say anything here, so every macro and address is
    treated as untrusted text: a queue id must have Postfix's shape, and whatever reaches a
    log line or a record is made one printable line first (`core.text.printable`).
    `listener` names the socket the connection came in on, for the records.
    """

    def __init__(self, app: App, conn_id: int, listener: str = "") -> None:
        self._app = app
        self._conn_id = conn_id
        self._listener = printable(listener, 128)
        self._client_ip: IPAddress | None = None
        self._local = False
        self._sees_headers = self._sees_body = True
        self._reset(app.holder.current)

    def _reset(self, policy: Policy) -> None:
        self._policy = policy
        self._sender = ""
        self._shown_sender = "<>"
        """The sender as logs and records may carry it: one printable line, bounded."""
        self._auth: str | None = None
        self._daemon: str | None = None
        self._recipients: list[Recipient] = []
        self._verdicts: list[RecipientVerdict] = []
        """What the kept recipients got at RCPT, in the order of `_recipients`."""
        self._unreadable: list[RecipientVerdict] = []
        self._classifier: Classifier | None = None
        self._visible: VisibleRecipients | None = None
        self._detected = ""

    def negotiate(self, opts: list[int]) -> int:
        """Ask for headers and body only when the running policy reads them.

        The stages are fixed for the life of the connection; a message on it whose policy
        reads what was not asked for is treated as sensitive (see `Classifier`).
        """
        offered = opts[1]  # the P_NO* steps the MTA can leave out
        result = int(super().negotiate(opts))
        policy = self._app.holder.current
        skip = 0
        if not policy.reads_headers:
            skip |= Milter.P_NOHDRS | Milter.P_NOEOH
        if not policy.reads_body:
            skip |= Milter.P_NOBODY
        opts[1] |= skip & offered
        if result == Milter.CONTINUE:
            # Recipients that smtpd refused itself are told too: on port 25 smtpd refuses
            # a retired domain through the transport table before any milter is asked,
            # and `report retired` must still name who sent. (Asking for the macros that
            # mark them with setsymlist fails in pymilter 1.0.5: Postfix's default
            # milter_rcpt_macros carry them, and `postwacht doctor` checks that list.)
            opts[1] |= Milter.P_RCPT_REJ & offered
            self._protocol = opts[1]
        self._sees_headers = not opts[1] & Milter.P_NOHDRS
        self._sees_body = not opts[1] & Milter.P_NOBODY
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
        self._reset(self._app.holder.current)  # one policy for the whole message
        self._sender = mailfrom.strip().removeprefix("<").removesuffix(">")
        self._shown_sender = printable(self._sender, 320) or "<>"
        self._auth = self._macro("{auth_authen}")
        self._daemon = self._macro("{daemon_name}")
        if self._policy.classifies:
            self._classifier = Classifier(self._policy.sensitivity, self._sender,
                                          self._sees_headers, self._sees_body)
        if self._policy.exposed_recipients is not None:
            self._visible = VisibleRecipients()
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def _macro(self, name: str) -> str | None:
        """A macro as one printable line (a policy names only printable values anyway)."""
        value = self.getsymval(name)
        return printable(value, 256) if value else None

    def _queue_id(self) -> tuple[str, str | None]:
        """The queue id `i`, and the value it had when it is not one Postfix makes (a line
        break, an option, a path): that is treated as no queue id at all."""
        value = self.getsymval("i") or ""
        if not value or is_queue_id(value):
            return value, None
        return "", printable(value, 64)

    @Milter.noreply  # type: ignore[untyped-decorator]
    def header(self, name: str, value: str) -> int:
        if self._classifier is not None:
            self._classifier.header(name, value)
        if self._visible is not None:
            self._visible.header(name, value)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    @Milter.noreply  # type: ignore[untyped-decorator]
    def body(self, chunk: bytes) -> int:
        if self._classifier is not None:
            self._classifier.body(chunk)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envrcpt(self, to: str, *params: str) -> int:
        started = time.perf_counter()
        try:
            return self._rcpt(to)
        finally:
            self._app.telemetry.callback(Stage.RCPT, time.perf_counter() - started)

    def _rcpt(self, to: str) -> int:
        if self._refused_by_postfix(to):
            self._refused_by_mta(to)
            return Milter.CONTINUE  # type: ignore[no-any-return]  # the MTA answered
        try:
            recipient = parse_recipient(to)
        except AddressError as exc:
            outcome = unreadable_at_rcpt(to, str(exc), local=self._local)
            if outcome.kept:
                self._unreadable.append(outcome.verdict)
        else:
            outcome = at_rcpt(self._envelope((recipient,)), self._policy,
                              self._app.facts.before_content(), local=self._local)
            if outcome.kept:
                self._recipients.append(recipient)
                self._verdicts.append(outcome.verdict)
        return self._act_at_rcpt(outcome)

    def _refused_by_postfix(self, to: str) -> bool:
        """Whether Postfix refused this recipient before asking (told only because
        P_RCPT_REJ was agreed). Its `{rcpt_mailer}` is "error" then, but so it is for a
        recipient accepted to the error transport (a retired domain on a service that
        lets the filter refuse it): a refused one has a bare status code as `{rcpt_host}`
        and the reply text, which is no address, as `{rcpt_addr}` (Postfix's
        MILTER_README, checked with Postfix 3.7). Anything else, macros missing included,
        is decided as a recipient."""
        if not self._protocol & Milter.P_RCPT_REJ or self.getsymval("{rcpt_mailer}") != "error":
            return False
        status = self.getsymval("{rcpt_host}") or ""
        said = self.getsymval("{rcpt_addr}") or ""
        if _STATUS_CODE.fullmatch(status) is None:
            return False
        try:
            parse_recipient(said)
        except AddressError:
            return True  # a reply text, not an address
        return False

    def _refused_by_mta(self, to: str) -> None:
        """A recipient Postfix refused before asking (the transport table's `error:` for
        a retired domain, an unknown user, ...): never one of the message's recipients,
        but an attempt to mail a retired domain is counted and reported as the filter's
        own refusal would be."""
        try:
            recipient = parse_recipient(to)
        except AddressError:
            return
        outcome = at_rcpt(self._envelope((recipient,)), self._policy,
                          self._app.facts.before_content(), local=self._local)
        if outcome.retired_domain is None or outcome.retired_monitored:
            return  # a monitored retired domain is no reason for Postfix to refuse
        self._count_at_rcpt(outcome)
        verdict = outcome.verdict
        self._log(Stage.RCPT, verdict.action, verdict.rule, self._who(verdict),
                  refused_by="postfix")

    def _count_at_rcpt(self, outcome: RcptOutcome) -> None:
        """The metrics of one recipient's decision, and a retired domain's attempt."""
        verdict = outcome.verdict
        self._app.telemetry.recipient(verdict.action, verdict.rule)
        self._count_monitored(verdict.monitored)
        if outcome.retired_domain is not None:
            self._record_retired_attempt(outcome.retired_domain, outcome.retired_monitored)

    def _act_at_rcpt(self, outcome: RcptOutcome) -> int:
        self._count_at_rcpt(outcome)
        verdict = outcome.verdict
        if outcome.reply is None:
            return Milter.CONTINUE  # type: ignore[no-any-return]
        self._log(Stage.RCPT, verdict.action, verdict.rule, self._who(verdict))
        return self._refuse(verdict.action, outcome.reply)

    def _envelope(self, recipients: tuple[Recipient, ...]) -> Envelope:
        return Envelope(
            sender=self._sender, recipients=recipients, client_ip=self._client_ip,
            authenticated=self._auth, daemon_name=self._daemon,
            internal=True if self._local else None,
        )

    def _client(self) -> str:
        """Where the message came from, as the milter client told it (Postfix tells the
        truth; another local process on the milter port can claim anything)."""
        if self._local:
            client = "sendmail(1) on the MTA host"
        else:
            client = f"smtp from {self._client_ip or 'unknown'}"
            if self._auth:
                client += f" as {self._auth}"
        if self._listener:
            client += f" via {self._listener}"
        return client

    def _record_retired_attempt(self, domain: str, monitored: bool) -> None:
        """For `postwacht report retired`: which systems still mail retired domains."""
        self._app.telemetry.retired_attempt(domain)
        self._app.retired_attempts.record(self._shown_sender, self._client(), domain,
                                          monitored)

    def eom(self) -> int:
        started = time.perf_counter()
        try:
            return self._eom()
        finally:
            self._app.telemetry.callback(Stage.EOM, time.perf_counter() - started)

    def _eom(self) -> int:
        policy = self._policy
        envelope = self._envelope(tuple(self._recipients))
        classification = self._classifier.result() if self._classifier else None
        self._detected = classification.detector if classification else ""
        # An unreadable recipient holds the message whatever else is learnt: ask nobody.
        visible: tuple[str, ...] | None = ()
        if self._visible is not None:
            # A connection agreed under a policy that read no headers carries none: the
            # addresses shown are unknown then, never "none".
            visible = self._visible.addresses() if self._sees_headers else None
        facts = (None if self._unreadable else
                 self._app.facts.for_message(envelope, policy, classification, visible))
        outcome = at_end_of_message(envelope, policy, facts, local=self._local,
                                    unreadable=tuple(self._unreadable),
                                    at_rcpt_time=tuple(self._verdicts))
        for verdict in outcome.decided_now:
            self._app.telemetry.recipient(verdict.action, verdict.rule)
        self._count_monitored(outcome.monitored_now)
        return self._act_at_end(outcome)

    def _count_monitored(self, monitored: tuple[RecipientVerdict, ...]) -> None:
        for decision in monitored:
            self._app.telemetry.monitored(decision.action, decision.rule)

    def _act_at_end(self, outcome: MessageOutcome) -> int:
        queue_id, bad = self._queue_id()
        if bad is not None:
            return self._refuse_bad_queue_id(bad)
        who = ",".join(self._who(v) for v in outcome.verdicts)
        if outcome.action is Action.QUARANTINE:
            return self._hold(queue_id, outcome, who)
        self._app.telemetry.message(outcome.action)
        monitored = _monitored_field(outcome)
        if outcome.action is Action.ACCEPT:
            if outcome.internal:
                self._log(Stage.EOM, Action.ACCEPT, "-", who, queue_id, monitored)
            self._app.learner.left(self._sender, outcome.learned)
            return Milter.ACCEPT  # type: ignore[no-any-return]
        self._log(Stage.EOM, outcome.action, outcome.rule or "-", who, queue_id, monitored,
                  route=outcome.route)
        if outcome.action is Action.ROUTE and outcome.route is not None:
            self.addheader(ROUTE_HEADER, outcome.route)
            self._app.learner.left(self._sender, outcome.learned)
            return Milter.ACCEPT  # type: ignore[no-any-return]
        if outcome.reply is None:
            raise RuntimeError(f"outcome {outcome.action} without a reply")  # -> tempfail
        return self._refuse(outcome.action, outcome.reply)

    def _refuse_bad_queue_id(self, bad: str) -> int:
        """Postfix never sends such a queue id: whatever the message is, it is not decided
        under a name that could forge a log line or claim another message's record."""
        self._app.telemetry.error(ErrorKind.BAD_QUEUE_ID)
        self._app.telemetry.message(Action.TEMPFAIL)
        log.error("conn=%d: queue id '%s' is not one Postfix makes (client %s); tempfailing",
                  self._conn_id, bad, self._client())
        return self._refuse(Action.TEMPFAIL, NO_QUEUE_ID)

    def _hold(self, queue_id: str, outcome: MessageOutcome, who: str) -> int:
        """Record, then hold: never a held message without its record."""
        if not queue_id:
            self._app.telemetry.error(ErrorKind.NO_QUEUE_ID)
            self._app.telemetry.message(Action.TEMPFAIL)
            log.error("conn=%d: no queue id at end of message; tempfailing", self._conn_id)
            return self._refuse(Action.TEMPFAIL, NO_QUEUE_ID)
        rule = outcome.rule
        assert rule is not None  # a hold always names its rule
        hold = Hold(
            mta=self._app.mta, queue_id=queue_id, key=secrets.token_hex(16),
            sender=self._shown_sender, recipients=outcome.verdicts, rule=rule,
            reason=outcome.reason, policy=self._policy.checksum, client=self._client(),
            route=outcome.route, detected=self._detected)
        try:
            record = self._app.records.record_quarantine(hold)
        except RecordsError as exc:
            self._app.telemetry.error(ErrorKind.RECORDS)
            self._app.telemetry.message(Action.TEMPFAIL)
            log.error("id=%s: %s; tempfailing instead of holding unrecorded", queue_id, exc)
            return self._refuse(Action.TEMPFAIL, RECORD_FAILED)
        self._app.telemetry.message(Action.QUARANTINE)
        self.addheader(QUARANTINE_HEADER, quarantine_header(hold))
        if hold.route is not None:  # Postfix sets it as the next hop now; a release keeps it
            self.addheader(ROUTE_HEADER, hold.route)
        self.quarantine(f"postwacht: {rule}")
        self._log(Stage.EOM, Action.QUARANTINE, rule, who, queue_id, route=hold.route)
        self._app.notices.held(record)  # queued for the notices thread: never waits
        return Milter.ACCEPT  # type: ignore[no-any-return]

    def _refuse(self, action: Action, reply: Reply) -> int:
        self.setreply(reply.code, reply.status, smtp_text(reply.text))
        return _CODES[action]  # type: ignore[no-any-return]

    def _who(self, verdict: RecipientVerdict) -> str:
        if self._policy.log_local_parts:
            return printable(verdict.address, 320)
        return printable(verdict.domains[0], 256) if verdict.domains else "-"

    def _log(self, stage: Stage, action: Action, rule: str, recipients: str,
             queue_id: str = "", monitored: str = "", refused_by: str = "",
             route: str | None = None) -> None:
        log.info(
            "id=%s conn=%d mode=%s stage=%s action=%s rule=%s recipients=%s%s%s%s",
            queue_id or self._queue_id()[0] or "NOQUEUE", self._conn_id,
            "local" if self._local else "smtpd", stage, action, rule, recipients,
            f" monitored={monitored}" if monitored else "",
            f" refused_by={refused_by}" if refused_by else "",
            f" route={route}" if route else "",
        )


def _monitored_field(outcome: MessageOutcome) -> str:
    """What rules in monitor mode would have done: `rule:action`, each once."""
    seen = dict.fromkeys(f"{m.rule}:{m.action}" for m in outcome.monitored)
    return ",".join(seen)


_FILTER_NAME = "postwacht"


def open_socket(socketspec: str, backlog: int = defaults.MILTER_BACKLOG) -> Callable[[], None]:
    """Listen on `socketspec` now, so that a bad listener stops the start before anything
    serves; `run` serves on it. A UNIX socket is made 0660 (see `unixsocket`). Returns what
    removes that socket again: libmilter leaves it behind when it runs as root."""
    path = unix_path(socketspec)
    if path is not None:
        claim(path)
    libmilter.setconn(socketspec)
    libmilter.setbacklog(backlog)
    libmilter.register(_FILTER_NAME)  # libmilter opens a socket only for a registered filter
    with group_only() if path is not None else contextlib.nullcontext():
        try:
            libmilter.opensocket(True)
        except libmilter.error:
            raise OSError(f"libmilter cannot listen on {socketspec} (in use, or not "
                          f"inet:PORT@HOST or unix:PATH?)") from None
    if path is None:
        return lambda: None
    made = identity(path)
    return lambda: release(path, made)


def run(app: App, socketspec: str, on_ready: Callable[[], None],
        timeout: int = defaults.MILTER_TIMEOUT) -> None:
    """Serve milter connections until libmilter is told to stop (SIGTERM, SIGHUP).

    `timeout` bounds every wait for Postfix's next command once a connection has spoken,
    so a stalled connection (and its thread and file descriptor) is closed after that
    many seconds. libmilter never closes one that says nothing at all: only the file and
    thread limits bound those, and a UNIX socket keeps other local users from opening
    them."""
    connections = itertools.count(1)
    Milter.factory = lambda: PostwachtMilter(app, next(connections), socketspec)
    libmilter.set_exception_policy(libmilter.TEMPFAIL)
    libmilter.set_flags(libmilter.ADDHDRS | libmilter.QUARANTINE)
    on_ready()
    Milter.runmilter(_FILTER_NAME, socketspec, timeout=timeout)
