"""What to do at each stage of the SMTP conversation: the decision, as an adapter acts on it.

A milter sees a message in two steps. At RCPT each recipient is decided on its own: over
SMTP a refused recipient gets its own reply and the others go on; mail from sendmail(1)
cannot be refused per recipient, so there every recipient stays in the message. At end of
message the recipients still in it are decided again with what was learnt meanwhile (the
content, DNS), and only the whole message can be refused or held. `explain` plays the
same two steps, so it shows what the milter does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from postwacht.core.decide import (
    Envelope,
    RecipientVerdict,
    decide,
    message_action,
    sender_is_internal,
)
from postwacht.core.facts import Facts
from postwacht.core.policy import Policy
from postwacht.core.vocabulary import Action, Rule


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: code, enhanced status code, one line of text for the sender."""

    code: str
    status: str
    text: str


RECORD_FAILED = Reply("451", "4.3.0", "message could not be recorded for review; try later")
"""A hold that cannot be recorded is never made: the message waits at the sender instead."""
NO_QUEUE_ID = Reply("451", "4.3.0", "message has no queue id to record it under; try later")


@dataclass(frozen=True, slots=True)
class RcptOutcome:
    verdict: RecipientVerdict
    reply: Reply | None
    """The refusal of this recipient now; None: it stays in the message."""
    retired_domain: str | None
    """A retired domain this recipient tried to reach (refused, held, or only monitored):
    counted and reported."""
    retired_monitored: bool = False
    """That retired domain's rule is only monitored: the mail goes on."""

    @property
    def kept(self) -> bool:
        return self.reply is None


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    action: Action
    """ACCEPT, ROUTE, QUARANTINE (held for review), TEMPFAIL or REJECT: the whole message."""
    internal: bool
    verdicts: tuple[RecipientVerdict, ...]
    """For every recipient still in the message, decided with everything known now."""
    rule: Rule | None = None
    """What decided, when the message is not simply accepted."""
    reason: str = ""
    reply: Reply | None = None
    """For TEMPFAIL and REJECT."""
    route: str | None = None
    """For ROUTE: the next hop of the secure-mail provider, or of the NTA 7516 hosts of
    the recipients' domain. For QUARANTINE of mail held for insecure transport, when the
    policy has a secure route, or held over a route: the route set in the held message,
    so that a release leaves through it, never in the clear."""

    learned: tuple[str, ...] = ()
    """Outside recipients of internal mail that leaves now: known correspondents from now
    on (the first-recipient guard)."""

    @property
    def decided_now(self) -> tuple[RecipientVerdict, ...]:
        """Verdicts that only the end of message could reach (the rest were seen at RCPT)."""
        return tuple(v for v in self.verdicts if v.rule.needs_content)

    @property
    def monitored_now(self) -> tuple[RecipientVerdict, ...]:
        """Monitored decisions that only the end of message could reach."""
        return tuple(m for v in self.verdicts for m in v.monitored if m.rule.needs_content)

    @property
    def monitored(self) -> tuple[RecipientVerdict, ...]:
        """Every monitored decision stricter than what is done: what enforcing would do."""
        return tuple(m for v in self.verdicts for m in v.monitored
                     if m.action.severity > v.action.severity)


def at_rcpt(envelope: Envelope, policy: Policy, facts: Facts | None, *,
            local: bool) -> RcptOutcome:
    """The outcome for the one recipient of `envelope`, at RCPT time."""
    [verdict] = decide(envelope, policy, facts).recipients
    retired = next((v.matched for v in (verdict, *verdict.monitored)
                    if v.rule is Rule.RETIRED), None)
    monitored = retired is not None and verdict.rule is not Rule.RETIRED
    if local or not verdict.action.refuses:
        return RcptOutcome(verdict, None, retired, monitored)
    return RcptOutcome(verdict, _refusal(verdict.action, verdict.reason), retired, monitored)


def unreadable_at_rcpt(address: str, problem: str, *, local: bool) -> RcptOutcome:
    """A recipient that is not an address: refused over SMTP; held with its message when
    it came from sendmail(1), which cannot refuse one recipient."""
    reason = f"bad recipient address: {problem}"
    if local:
        verdict = RecipientVerdict(address, (), Action.QUARANTINE, Rule.BAD_ADDRESS, reason)
        return RcptOutcome(verdict, None, None)
    verdict = RecipientVerdict(address, (), Action.REJECT, Rule.BAD_ADDRESS, reason)
    return RcptOutcome(verdict, Reply("550", "5.1.3", reason), None)


def at_end_of_message(
    envelope: Envelope, policy: Policy, facts: Facts | None, *, local: bool,
    unreadable: tuple[RecipientVerdict, ...] = (),
    at_rcpt_time: tuple[RecipientVerdict, ...] | None = None,
) -> MessageOutcome:
    """The fate of the whole message, for the recipients still in it.

    Recipients refused at RCPT are gone already; a refusal decided now (the content made
    the mail sensitive, or sendmail(1) mail that cannot be refused per recipient) can only
    refuse, or hold, the whole message. `at_rcpt_time`, the verdicts the kept recipients
    got at RCPT, stand when no content was classified: nothing new could change them.
    """
    if at_rcpt_time is not None and (facts is None or facts.classification is None):
        internal, verdicts = sender_is_internal(envelope, policy)[0], at_rcpt_time
    else:
        verdict = decide(envelope, policy, facts)
        internal, verdicts = verdict.internal, verdict.recipients
    if unreadable:
        return MessageOutcome(
            Action.QUARANTINE, internal, (*verdicts, *unreadable), Rule.BAD_ADDRESS,
            f"held: {unreadable[0].reason}",
        )
    action = _end_of_message_action(verdicts, policy, local)
    strictest = max(verdicts, key=lambda v: v.action.severity, default=None)
    if action is Action.ACCEPT or strictest is None:
        return MessageOutcome(Action.ACCEPT, internal, verdicts,
                              learned=_learned(verdicts, policy) if internal else ())
    outcome = MessageOutcome(action, internal, verdicts, strictest.rule, strictest.reason)
    secure = policy.secure_transport.route if policy.secure_transport else None
    if action is Action.ROUTE:
        route = _route(tuple(v for v in verdicts if v.action is Action.ROUTE), secure)
        if route is None:  # the policy check refuses this; never let the mail go unrouted
            return replace(outcome, action=Action.TEMPFAIL,
                           reply=Reply("451", "4.3.0", "no secure route configured; try later"))
        return replace(outcome, route=route,
                       learned=_learned(verdicts, policy) if internal else ())
    if action.refuses:
        return replace(outcome, reply=_refusal(action, strictest.reason))
    return replace(outcome, route=_route_for_release(verdicts, secure))


def _route(routed: tuple[RecipientVerdict, ...], secure: str | None) -> str | None:
    """The one next hop these recipients' routes share: the NTA 7516 hosts of their
    domain, or the policy's secure route. None when they share none (the decision routes
    a message to NTA 7516 hosts only when all its recipients go there)."""
    hops = {v.hop for v in routed}
    if len(hops) != 1:
        return None
    return hops.pop() or secure


def _learned(verdicts: tuple[RecipientVerdict, ...], policy: Policy) -> tuple[str, ...]:
    """The outside addresses among the recipients (not owned, not an address literal)."""
    return tuple(v.address for v in verdicts
                 if v.domains and v.rule not in (Rule.ADDRESS_LITERAL, Rule.BAD_ADDRESS,
                                                 Rule.LOCAL)
                 and not policy.owns(v.domains[0]))


def _route_for_release(verdicts: tuple[RecipientVerdict, ...], secure: str | None) -> str | None:
    """The route for a held message, when any recipient lacks verified transport or was
    held over a route: Postfix turns it into the message's next hop at hold time
    (milter_header_checks), and the message keeps it when released."""
    routed = tuple(v for v in verdicts if v.rule is Rule.INSECURE_TRANSPORT or v.routed)
    if not routed:
        return None
    return _route(routed, secure) or secure


def _end_of_message_action(
    verdicts: tuple[RecipientVerdict, ...], policy: Policy, local: bool
) -> Action:
    actions = {v.action for v in verdicts}
    if Action.REJECT in actions:
        return policy.local_on_reject if local else Action.REJECT
    for action in (Action.TEMPFAIL, Action.QUARANTINE, Action.ROUTE):
        if action in actions:
            return action
    return Action.ACCEPT


def _refusal(action: Action, reason: str) -> Reply:
    if action is Action.REJECT:
        return Reply("550", "5.7.1", reason)
    return Reply("451", "4.7.1", reason)


@dataclass(frozen=True, slots=True)
class Explained:
    """A whole SMTP conversation played through: each recipient's final verdict and the
    message's fate, as the milter would reach them."""

    action: Action
    internal: bool
    sender_reason: str
    recipients: tuple[RecipientVerdict, ...]
    message: MessageOutcome | None
    """None when every recipient was refused at RCPT (no end of message)."""

    @property
    def refused(self) -> tuple[RecipientVerdict, ...]:
        return tuple(r for r in self.recipients if r.action.refuses)


def explain(envelope: Envelope, policy: Policy, facts: Facts | None) -> Explained:
    """Every recipient at RCPT (over SMTP), then the end of message for those kept."""
    control = Facts(control_lost=facts.control_lost) if facts else None
    internal, sender_reason = sender_is_internal(envelope, policy)
    at_rcpt_time = [
        at_rcpt(replace(envelope, recipients=(r,)), policy, control, local=False)
        for r in envelope.recipients
    ]
    kept = tuple(r for r, o in zip(envelope.recipients, at_rcpt_time, strict=True) if o.kept)
    if not kept:
        refused = tuple(o.verdict for o in at_rcpt_time)
        return Explained(message_action(refused), internal, sender_reason, refused, None)
    message = at_end_of_message(replace(envelope, recipients=kept), policy, facts, local=False)
    final = iter(message.verdicts)
    recipients = tuple(next(final) if o.kept else o.verdict for o in at_rcpt_time)
    return Explained(message.action, internal, sender_reason, recipients, message)
