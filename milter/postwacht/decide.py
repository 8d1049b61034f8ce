"""The decision: (envelope, policy, facts) -> Verdict. Pure: no I/O, no clock, no state.

Every adapter (the milter, the table server, `postwacht explain`) calls `decide`, so they
cannot disagree about what a policy means.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from postwacht.address import Recipient
from postwacht.domains import to_unicode
from postwacht.policy import Action, OwnedDomain, Partner, Policy, RetiredDomain

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the MTA knows about one message before its content."""

    sender: str
    recipients: tuple[Recipient, ...]
    client_ip: IPAddress | None = None
    authenticated: str | None = None
    """SASL login name, if the client logged in."""
    daemon_name: str | None = None
    """Postfix `milter_macro_daemon_name` of the receiving service."""
    internal: bool | None = None
    """Set when the caller knows the sender is internal (local submission); else derived."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What was learnt by I/O before deciding (DNS, domain control); the decision does none."""


@dataclass(frozen=True, slots=True)
class RecipientVerdict:
    address: str
    domains: tuple[str, ...]
    action: Action
    rule: str
    """Bounded rule kind: retired, lookalike, address-literal, owned, partner, local,
    default or inbound. Safe as a metric label."""
    reason: str
    matched: str | None = None
    """The policy domain the rule matched, if any."""


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    """For the message as a whole, after refused recipients are dropped."""
    internal: bool
    sender_reason: str
    recipients: tuple[RecipientVerdict, ...]

    @property
    def refused(self) -> tuple[RecipientVerdict, ...]:
        """Recipients refused one by one (at RCPT, where the MTA allows it)."""
        return tuple(r for r in self.recipients if r.action in _REFUSED)


_REFUSED = (Action.REJECT, Action.TEMPFAIL)


def decide(envelope: Envelope, policy: Policy, facts: Facts | None = None) -> Verdict:
    """Decide what happens to every recipient of `envelope`, and so to the message."""
    del facts  # no rule reads DNS facts yet; the parameter keeps every caller's shape
    internal, why = sender_is_internal(envelope, policy)
    if internal:
        verdicts = tuple(decide_recipient(r, policy) for r in envelope.recipients)
    else:
        verdicts = tuple(
            RecipientVerdict(
                r.address, r.domains, Action.ACCEPT, "inbound",
                "not from an internal sender: only outbound mail is checked",
            )
            for r in envelope.recipients
        )
    return Verdict(message_action(verdicts), internal, why, verdicts)


def message_action(verdicts: tuple[RecipientVerdict, ...]) -> Action:
    """Reject or tempfail when no recipient is left; else the strictest remaining action."""
    remaining = [v.action for v in verdicts if v.action not in _REFUSED]
    if not remaining:
        refused = [v.action for v in verdicts]
        return max(refused, key=lambda a: a.severity) if refused else Action.ACCEPT
    return max(remaining, key=lambda a: a.severity)


def sender_is_internal(envelope: Envelope, policy: Policy) -> tuple[bool, str]:
    """Whether the policy treats the sender as internal, and why."""
    outbound = policy.outbound
    if envelope.internal is not None:
        return envelope.internal, "set by the caller"
    if envelope.authenticated and outbound.authenticated:
        return True, f"authenticated as {envelope.authenticated}"
    if envelope.daemon_name and envelope.daemon_name in outbound.daemon_names:
        return True, f"received by {envelope.daemon_name}"
    ip = envelope.client_ip
    if ip is not None:
        for network in outbound.networks:
            if ip.version == network.version and ip in network:
                return True, f"client {ip} is in {network}"
    return False, "not authenticated, not from an outbound network or daemon"


def decide_recipient(recipient: Recipient, policy: Policy) -> RecipientVerdict:
    """The strictest answer over every domain the recipient could reach."""
    address, domains = recipient.address, recipient.domains
    if recipient.literal is not None:
        return RecipientVerdict(
            address, domains, policy.address_literals, "address-literal",
            f"[{recipient.literal}] is an address literal: no domain rule can vouch for it; "
            "use the recipient's domain name",
        )
    if not domains:
        return RecipientVerdict(address, domains, Action.ACCEPT, "local", "local delivery")
    best: RecipientVerdict | None = None
    for domain in domains:
        verdict = _decide_domain(recipient, domain, policy)
        if best is None or verdict.action.severity > best.action.severity:
            best = verdict
    assert best is not None
    return best


def _decide_domain(recipient: Recipient, domain: str, policy: Policy) -> RecipientVerdict:
    address, domains = recipient.address, recipient.domains
    rule = policy.rule_for(domain)
    if isinstance(rule, RetiredDomain):
        return RecipientVerdict(
            address, domains, rule.action, "retired",
            _retired_reason(recipient, domain, rule, policy), rule.domain,
        )
    if isinstance(rule, OwnedDomain):
        return RecipientVerdict(
            address, domains, Action.ACCEPT, "owned", f"{_show(domain)} is our own domain",
            rule.domain,
        )
    if isinstance(rule, Partner):
        return RecipientVerdict(
            address, domains, Action.ACCEPT, "partner",
            f"{_show(domain)} is a partner ({rule.transport})", rule.domain,
        )
    match = policy.lookalike(domain)
    if match is None:
        return RecipientVerdict(
            address, domains, Action.ACCEPT, "default", f"{_show(domain)} matches no rule"
        )
    kind = _kind(policy, match.protected)
    if match.how == "embedded":
        why = f"{_show(domain)} contains {kind} {_show(match.protected)} but is someone else's"
    else:
        why = f"{_show(domain)} looks like {kind} {_show(match.protected)} but is not it"
    return RecipientVerdict(
        address, domains, policy.lookalikes.action, "lookalike",
        f"{why}: check the address", match.protected,
    )


def _kind(policy: Policy, domain: str) -> str:
    rule = policy.rule_for(domain)
    if isinstance(rule, RetiredDomain):
        return "our retired domain"
    if isinstance(rule, Partner):
        return "partner domain"
    return "our domain"


def _retired_reason(
    recipient: Recipient, domain: str, rule: RetiredDomain, policy: Policy
) -> str:
    since = rule.since.isoformat() if rule.since else "unknown"
    successor = rule.successor
    simple_local = recipient.domain == domain and not any(c in recipient.local for c in '"%!')
    address = f"{recipient.local}@{successor}" if successor and simple_local else successor or ""
    if rule.reply is not None:
        return rule.reply.format(
            domain=_show(rule.domain), since=since, successor=successor or "", address=address
        )
    gave_up = f" on {since}" if rule.since else ""
    text = (
        f"{_show(rule.domain)} was given up by {policy.organisation}{gave_up} "
        "and may now belong to someone else"
    )
    if successor and simple_local:
        return f"{text}; send to {address} instead"
    if successor:
        return f"{text}; use the recipient's address at {_show(successor)} instead"
    return f"{text}; this mail is not sent"


def _show(domain: str) -> str:
    """A domain as a person reads it: U-labels, with the A-label form when they differ."""
    readable = to_unicode(domain)
    return domain if readable == domain else f"{readable} ({domain})"
