"""The decision: (envelope, policy, facts) -> Verdict. Pure: no I/O, no clock, no state.

Every adapter (the milter, the table server, `postwacht explain`) calls `decide` (through
`postwacht.core.outcome` where the stage matters), so they cannot disagree about what a
policy means.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from postwacht.core.address import Recipient
from postwacht.core.classify import Classification
from postwacht.core.facts import Facts
from postwacht.core.names import to_unicode
from postwacht.core.policy import OwnedDomain, Partner, Policy, RetiredDomain
from postwacht.core.vocabulary import Accepted, Action, LookalikeHow, Method, Rule

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
class RecipientVerdict:
    address: str
    domains: tuple[str, ...]
    action: Action
    rule: Rule
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
        return tuple(r for r in self.recipients if r.action.refuses)


def decide(envelope: Envelope, policy: Policy, facts: Facts | None = None) -> Verdict:
    """Decide what happens to every recipient of `envelope`, and so to the message."""
    internal, why = sender_is_internal(envelope, policy)
    if internal:
        verdicts = tuple(decide_recipient(r, policy, facts) for r in envelope.recipients)
    else:
        verdicts = tuple(
            RecipientVerdict(
                r.address, r.domains, Action.ACCEPT, Rule.INBOUND,
                "not from an internal sender: only outbound mail is checked",
            )
            for r in envelope.recipients
        )
    return Verdict(message_action(verdicts), internal, why, verdicts)


def message_action(verdicts: tuple[RecipientVerdict, ...]) -> Action:
    """Reject or tempfail when no recipient is left; else the strictest remaining action."""
    remaining = [v.action for v in verdicts if not v.action.refuses]
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


def decide_recipient(
    recipient: Recipient, policy: Policy, facts: Facts | None = None
) -> RecipientVerdict:
    """The strictest answer over every domain the recipient could reach."""
    address, domains = recipient.address, recipient.domains
    classification = facts.classification if facts else None
    if recipient.literal is not None:
        literal = RecipientVerdict(
            address, domains, policy.address_literals, Rule.ADDRESS_LITERAL,
            f"[{recipient.literal}] is an address literal: no domain rule can vouch for it; "
            "use the recipient's domain name",
        )
        if (literal.action is Action.ACCEPT and policy.secure_transport and classification
                and classification.sensitive):
            return _insecure(literal, policy, classification,
                             f"[{recipient.literal}] has no verifiable TLS")
        return literal
    if not domains:
        return RecipientVerdict(address, domains, Action.ACCEPT, Rule.LOCAL, "local delivery")
    verdicts = [_decide_domain(recipient, d, policy, facts) for d in domains]
    if facts and classification:
        # Every domain the mail could reach must be safe, not only the one that decided;
        # listed first, so that of equal verdicts the transport one is shown.
        verdicts = [_secure_transport(recipient, d, v, policy, facts, classification)
                    for d, v in zip(domains, verdicts, strict=True)
                    if _needs_secure_transport(v, policy)] + verdicts
    return max(verdicts, key=lambda v: v.action.severity)  # the first of equals wins


def transport_domains(envelope: Envelope, policy: Policy) -> set[str]:
    """Domains whose transport facts the secure-transport rule would need."""
    internal, _ = sender_is_internal(envelope, policy)
    if not internal or policy.secure_transport is None:
        return set()
    return {
        domain
        for recipient in envelope.recipients if recipient.literal is None
        for domain in recipient.domains
        if _needs_secure_transport(_decide_domain(recipient, domain, policy, None), policy)
    }


def _needs_secure_transport(verdict: RecipientVerdict, policy: Policy) -> bool:
    rules = policy.secure_transport
    if rules is None or verdict.action is not Action.ACCEPT:
        return False
    return verdict.rule is Rule.DEFAULT or (verdict.rule is Rule.PARTNER
                                            and Accepted.PARTNER not in rules.accept)


def _secure_transport(
    recipient: Recipient,
    domain: str,
    verdict: RecipientVerdict,
    policy: Policy,
    facts: Facts,
    classification: Classification,
) -> RecipientVerdict:
    rules = policy.secure_transport
    assert rules is not None
    if not classification.sensitive:
        return verdict
    address, domains = recipient.address, recipient.domains
    found = facts.transport.get(domain)
    why = f"this message is sensitive ({classification.reason})"
    if found is None or found.method is Method.FAILURE:
        detail = found.detail if found else "no transport facts were gathered"
        return RecipientVerdict(
            address, domains, policy.on_dns_failure, Rule.DNS_FAILURE,
            f"{why}; whether {show(domain)} takes mail securely is unknown ({detail}); "
            "try again later",
        )
    if found.verified and Accepted(found.method) in rules.accept:
        return RecipientVerdict(address, domains, Action.ACCEPT, Rule.SECURE_TRANSPORT,
                                f"{why}; {found.method}: {found.detail}")
    return _insecure(verdict, policy, classification,
                     f"{show(domain)} offers no verified TLS ({found.detail})")


def _insecure(
    verdict: RecipientVerdict, policy: Policy, classification: Classification, what: str
) -> RecipientVerdict:
    """Sensitive mail that would leave without verified TLS: the policy's `otherwise`."""
    rules = policy.secure_transport
    assert rules is not None
    tail = {
        Action.REJECT: rules.reply or "send it through a secure mail service instead",
        Action.QUARANTINE: "held for review",
        Action.ROUTE: f"sent through {rules.route}",
    }.get(rules.otherwise, "")
    return RecipientVerdict(
        verdict.address, verdict.domains, rules.otherwise, Rule.INSECURE_TRANSPORT,
        f"this message is sensitive ({classification.reason}) and {what}; {tail}",
    )


def _decide_domain(
    recipient: Recipient, domain: str, policy: Policy, facts: Facts | None
) -> RecipientVerdict:
    address, domains = recipient.address, recipient.domains
    rule = policy.rule_for(domain)
    if isinstance(rule, RetiredDomain):
        return RecipientVerdict(
            address, domains, rule.action, Rule.RETIRED,
            _retired_reason(recipient, domain, rule, policy), rule.domain,
        )
    if isinstance(rule, OwnedDomain) and facts and rule.domain in facts.control_lost:
        watch = policy.domain_watch
        if watch.enabled and watch.hold_on_control_loss:
            return RecipientVerdict(
                address, domains, Action.QUARANTINE, Rule.CONTROL_LOST,
                f"control of {show(rule.domain)} is in doubt "
                f"({facts.control_lost[rule.domain]}): held until a person looks",
                rule.domain,
            )
    if isinstance(rule, OwnedDomain):
        return RecipientVerdict(
            address, domains, Action.ACCEPT, Rule.OWNED, f"{show(domain)} is our own domain",
            rule.domain,
        )
    if isinstance(rule, Partner):
        return RecipientVerdict(
            address, domains, Action.ACCEPT, Rule.PARTNER,
            f"{show(domain)} is a partner ({rule.transport})", rule.domain,
        )
    match = policy.lookalike(domain)
    if match is None:
        return RecipientVerdict(
            address, domains, Action.ACCEPT, Rule.DEFAULT, f"{show(domain)} matches no rule"
        )
    kind = _kind(policy, match.protected)
    if match.how is LookalikeHow.EMBEDDED:
        why = f"{show(domain)} contains {kind} {show(match.protected)} but is someone else's"
    else:
        why = f"{show(domain)} looks like {kind} {show(match.protected)} but is not it"
    return RecipientVerdict(
        address, domains, policy.lookalikes.action, Rule.LOOKALIKE,
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
            domain=show(rule.domain), since=since, successor=successor or "", address=address
        )
    gave_up = f" on {since}" if rule.since else ""
    text = (
        f"{show(rule.domain)} was given up by {policy.organisation}{gave_up} "
        "and may now belong to someone else"
    )
    if successor and simple_local:
        return f"{text}; send to {address} instead"
    if successor:
        return f"{text}; use the recipient's address at {show(successor)} instead"
    return f"{text}; this mail is not sent"


def show(domain: str) -> str:
    """A domain as a person reads it: U-labels, with the A-label form when they differ."""
    readable = to_unicode(domain)
    return domain if readable == domain else f"{readable} ({domain})"
