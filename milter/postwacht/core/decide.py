"""The decision: (envelope, policy, facts) -> Verdict. Pure: no I/O, no clock, no state.

Every adapter (the milter, the table server, `postwacht explain`) calls `decide` (through
`postwacht.core.outcome` where the stage matters), so they cannot disagree about what a
policy means.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from postwacht.core.address import Recipient
from postwacht.core.classify import Classification
from postwacht.core.facts import Facts, TransportFacts
from postwacht.core.names import to_unicode
from postwacht.core.nta7516 import NO_RECORD
from postwacht.core.nta7516 import route as nta7516_route
from postwacht.core.policy import FirstRecipient, OwnedDomain, Partner, Policy, RetiredDomain
from postwacht.core.relay import Relaying, relaying
from postwacht.core.vocabulary import (
    Accepted,
    Action,
    LookalikeHow,
    Match,
    Method,
    Mode,
    Rule,
    Scope,
)

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
    monitored: tuple[RecipientVerdict, ...] = ()
    """Stricter decisions of rules in monitor mode: made, logged and counted, not done."""
    routed: bool = False
    """Held by a misaddressing rule over a verdict that sends it through a route (the
    policy's secure route, or the domain's NTA 7516 hosts): a release must leave through
    that route too."""
    hop: str | None = None
    """For ROUTE, and for a hold that is `routed`: the next hop when it is not the
    policy's secure route, but the NTA 7516 hosts of the recipient's domain."""

    @property
    def mode(self) -> Mode:
        """MONITOR when a monitored rule would have done more than this verdict does."""
        stricter = any(m.action.severity > self.action.severity for m in self.monitored)
        return Mode.MONITOR if stricter else Mode.ENFORCE

    @property
    def would(self) -> RecipientVerdict:
        """The strictest decision, monitored or not: what enforcing every rule would do."""
        return max((self, *self.monitored), key=lambda v: v.action.severity)


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
        # How the message leaves: one relay standing and one shared route for all of it.
        relay = relaying(policy, facts.relayhost if facts else None)
        shared = _shared_nta7516_hop(envelope, policy, facts, relay)
        verdicts = tuple(decide_recipient(r, policy, facts, envelope.sender, relay, shared)
                         for r in envelope.recipients)
        exposed = _exposure(policy, facts)
        if exposed is not None:
            verdicts = tuple(_expose(v, exposed, policy) for v in verdicts)
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
    recipient: Recipient, policy: Policy, facts: Facts | None, sender: str,
    relay: Relaying, shared_hop: str | None,
) -> RecipientVerdict:
    """The strictest answer over every domain the recipient could reach, and over the
    rules on the recipient itself; a rule in monitor mode adds what it would do, and the
    answer without it stands (so a monitored rule never weakens another).

    `relay`: how outside mail leaves (Postfix's relayhost under the policy). `shared_hop`:
    the NTA 7516 route every recipient of the message shares, if one does; only then can
    the message take it (a route is for the whole message)."""
    address, domains = recipient.address, recipient.domains
    classification = facts.classification if facts else None
    if recipient.literal is not None:
        literal = _enforced(RecipientVerdict(
            address, domains, policy.address_literals, Rule.ADDRESS_LITERAL,
            f"[{recipient.literal}] is an address literal: no domain rule can vouch for it; "
            "use the recipient's domain name",
        ), policy, address_literal_fallback(recipient))
        if (literal.action is Action.ACCEPT and policy.secure_transport and classification
                and classification.sensitive):
            insecure = _insecure(literal, policy, classification,
                                 f"[{recipient.literal}] has no verifiable TLS")
            return _strictest([_enforced(insecure, policy, literal), literal])
        return literal
    if not domains:
        return RecipientVerdict(address, domains, Action.ACCEPT, Rule.LOCAL, "local delivery")
    verdicts = [_decide_domain(recipient, d, policy, facts) for d in domains]
    if facts and classification:
        # Every domain the mail could reach must be safe, not only the one that decided;
        # listed first, so that of equal verdicts the transport one is shown.
        verdicts = [_enforced(_secure_transport(recipient, d, v, policy, facts,
                                                classification, relay, shared_hop), policy, v)
                    for d, v in zip(domains, verdicts, strict=True)
                    if _needs_secure_transport(v, policy, relay)] + verdicts
        strictest = _strictest(verdicts)
        if strictest.action in (Action.ACCEPT, Action.ROUTE):
            # Never over a tempfail (the transport is unknown yet: the sender retries and
            # the guard asks then) or another hold, which a sender's link must not end.
            first = _first_recipient(recipient, verdicts[-len(domains)], policy, facts,
                                     sender)
            if first is not None:
                routed = strictest.action is Action.ROUTE
                verdicts.append(replace(first, routed=routed,
                                        hop=strictest.hop if routed else None)
                                if first.action is Action.QUARANTINE else first)
    return _strictest(verdicts)


def _strictest(verdicts: list[RecipientVerdict]) -> RecipientVerdict:
    """The strictest verdict (the first of equals), carrying every monitored decision."""
    winner = max(verdicts, key=lambda v: v.action.severity)
    monitored = tuple(m for v in verdicts for m in v.monitored)
    return replace(winner, monitored=monitored) if monitored else winner


def _enforced(verdict: RecipientVerdict, policy: Policy,
              fallback: RecipientVerdict) -> RecipientVerdict:
    """`verdict` when its rule is enforced; else `fallback` (the answer without the
    monitored rule), which carries `verdict` as a monitored decision."""
    if (verdict.action is Action.ACCEPT
            or policy.mode(verdict.rule, verdict.matched) is Mode.ENFORCE):
        return verdict
    return replace(fallback, monitored=(*fallback.monitored, verdict, *verdict.monitored))


def address_literal_fallback(recipient: Recipient) -> RecipientVerdict:
    return RecipientVerdict(recipient.address, recipient.domains, Action.ACCEPT,
                            Rule.ADDRESS_LITERAL, "address literals are only monitored")


def first_recipient_candidates(envelope: Envelope, policy: Policy,
                               facts: Facts | None) -> tuple[str, ...]:
    """The recipients whose known-correspondent state the first-recipient rule needs:
    outside addresses of sensitive internal mail that the policy does not exempt."""
    if (policy.first_recipient is None or facts is None or facts.classification is None
            or not facts.classification.sensitive
            or not sender_is_internal(envelope, policy)[0]):
        return ()
    return tuple(
        r.address for r in envelope.recipients
        if r.literal is None and r.domains and _first_recipient(
            r, _decide_domain(r, r.domains[0], policy, facts), policy,
            replace(facts, known=frozenset()), envelope.sender) is not None
    )


def _first_recipient(recipient: Recipient, verdict: RecipientVerdict, policy: Policy,
                     facts: Facts, sender: str) -> RecipientVerdict | None:
    """Sensitive mail to an outside address neither the policy nor past mail knows:
    held until its sender confirms. `verdict` is the recipient's own domain's."""
    rule = policy.first_recipient
    classification = facts.classification
    if (rule is None or classification is None or not classification.sensitive
            or verdict.rule is not Rule.DEFAULT or verdict.action is not Action.ACCEPT
            or recipient.domain is None or rule.exempt.has(sender)
            or rule.knows(recipient.address, recipient.domain)
            or recipient.address in facts.known):
        return None
    who = _who_knows(rule)
    held = RecipientVerdict(
        recipient.address, recipient.domains, Action.QUARANTINE, Rule.FIRST_RECIPIENT,
        f"this message is sensitive ({classification.reason}) and {who} "
        f"{_target(policy, rule, recipient)} before: held until the sender confirms the "
        "address",
    )
    return _enforced(held, policy, verdict)


def _who_knows(rule: FirstRecipient) -> str:
    return ("the sender has never mailed" if rule.scope is Scope.SENDER
            else "nobody here has mailed")


def _target(policy: Policy, rule: FirstRecipient, recipient: Recipient) -> str:
    """The recipient as a reason (and so the audit trail and its log) may name it: the
    address only where the policy lets logs carry local parts."""
    domain = show(recipient.domain or "")
    if rule.match is Match.DOMAIN:
        return f"anyone at {domain}"
    return recipient.address if policy.log_local_parts else f"this address at {domain}"


def _exposure(policy: Policy, facts: Facts | None) -> RecipientVerdict | None:
    """A message showing more outside addresses to each other (To, Cc) than the policy
    allows, when it is sensitive: the verdict its outside recipients get."""
    rule = policy.exposed_recipients
    if rule is None or facts is None or facts.classification is None:
        return None
    if not facts.classification.sensitive:
        return None
    advice = rule.reply or "put the recipients in Bcc, so that they do not see each other"
    why = f"this message is sensitive ({facts.classification.reason})"
    if facts.visible is None:
        return RecipientVerdict(
            "", (), rule.action, Rule.EXPOSED_RECIPIENTS,
            f"{why} and its To/Cc headers could not be read, so whether it shows outside "
            f"addresses to each other is unknown; {advice}")
    outside = sum(1 for address in facts.visible if not _owned_address(address, policy))
    if outside <= rule.max_outside:
        return None
    return RecipientVerdict(
        "", (), rule.action, Rule.EXPOSED_RECIPIENTS,
        f"{why} and shows {outside} outside addresses to each other in To/Cc (at most "
        f"{rule.max_outside}); {advice}",
    )


def _owned_address(address: str, policy: Policy) -> bool:
    domain = address.rpartition("@")[2]
    return bool(domain) and policy.owns(domain)


def _expose(verdict: RecipientVerdict, exposed: RecipientVerdict,
            policy: Policy) -> RecipientVerdict:
    """An outside recipient of an exposing message: the exposure stands unless something
    stricter does (of equal holds it outranks only the sender's confirmation, so that a
    sender's link never releases what another rule holds)."""
    if verdict.rule in (Rule.OWNED, Rule.LOCAL, Rule.INBOUND):
        return verdict
    mine = replace(exposed, address=verdict.address, domains=verdict.domains)
    if policy.mode(Rule.EXPOSED_RECIPIENTS) is Mode.MONITOR:
        return replace(verdict, monitored=(*verdict.monitored, mine))
    if verdict.action is Action.TEMPFAIL and mine.action is Action.QUARANTINE:
        return verdict  # transport unknown yet: the sender retries, and it is judged then
    stricter = mine.action.severity > verdict.action.severity or (
        mine.action is verdict.action and verdict.rule.sender_confirms)
    if not stricter:
        return verdict
    routed = verdict.routed or verdict.action is Action.ROUTE
    return replace(mine, monitored=verdict.monitored, routed=routed,
                   hop=verdict.hop if routed else None)


def transport_domains(envelope: Envelope, policy: Policy,
                      relayhost: tuple[str, ...] | None = None) -> set[str]:
    """Domains whose transport facts the secure-transport rule would need, with mail
    leaving through `relayhost` (as `Facts.relayhost` says it)."""
    internal, _ = sender_is_internal(envelope, policy)
    if not internal or policy.secure_transport is None:
        return set()
    relay = relaying(policy, relayhost)
    return {
        domain
        for recipient in envelope.recipients if recipient.literal is None
        for domain in recipient.domains
        if _needs_secure_transport(_decide_domain(recipient, domain, policy, None), policy,
                                   relay)
    }


def _needs_secure_transport(verdict: RecipientVerdict, policy: Policy,
                            relay: Relaying) -> bool:
    """Whether the secure-transport rule judges this recipient: an outside domain, or a
    partner whose agreement the rule does not take, or does not reach (through a relay
    the TLS table never answers for the partner)."""
    rules = policy.secure_transport
    if rules is None or verdict.action is not Action.ACCEPT:
        return False
    return verdict.rule is Rule.DEFAULT or (verdict.rule is Rule.PARTNER and (
        Accepted.PARTNER not in rules.accept or relay.relayed))


def _secure_transport(
    recipient: Recipient,
    domain: str,
    verdict: RecipientVerdict,
    policy: Policy,
    facts: Facts,
    classification: Classification,
    relay: Relaying,
    shared_hop: str | None,
) -> RecipientVerdict:
    rules = policy.secure_transport
    assert rules is not None
    if not classification.sensitive:
        return verdict
    if relay.problem is not None:
        return _insecure(verdict, policy, classification, relay.problem)
    # Through a relay a partner too must offer DANE or MTA-STS: the TLS table is asked
    # about the relay, so the level agreed with the partner is never served.
    address, domains = recipient.address, recipient.domains
    why = f"this message is sensitive ({classification.reason})"
    through = (f"; through the relay {', '.join(relay.relayhost)}, trusted to enforce "
               "verified TLS onward" if relay.relayed else "")
    found = facts.transport.get(domain)
    if found is None or found.method is Method.FAILURE:
        detail = found.detail if found else "no transport facts were gathered"
        return RecipientVerdict(
            address, domains, policy.on_dns_failure, Rule.DNS_FAILURE,
            f"{why}; whether {show(domain)} takes mail securely is unknown ({detail}); "
            "try again later",
        )
    nta = nta7516_route_of(domain, found, policy, facts, relay)
    if nta.failure is not None:
        return RecipientVerdict(
            address, domains, policy.on_dns_failure, Rule.DNS_FAILURE,
            f"{why}; whether {show(domain)} receives through an NTA 7516 mail service is "
            f"unknown ({nta.failure}); try again later",
        )
    if nta.hop is not None and nta.hop == shared_hop:
        return RecipientVerdict(address, domains, Action.ROUTE, Rule.NTA7516,
                                f"{why}; {show(domain)} receives through an NTA 7516 mail "
                                f"service: {nta.detail}; sent to those hosts over verified "
                                "TLS", hop=nta.hop)
    note = nta.note if nta.hop is None else (
        f"{show(domain)} receives through an NTA 7516 mail service ({nta.detail}), but this "
        "message also goes to recipients who are not reached there: send it to "
        f"{show(domain)} in a message of its own")
    if found.verified and Accepted(found.method) in rules.accept:
        return RecipientVerdict(address, domains, Action.ACCEPT, Rule.SECURE_TRANSPORT,
                                f"{why}; {found.method}: {found.detail}{through}")
    return _insecure(verdict, policy, classification,
                     f"{show(domain)} offers no verified TLS ({found.detail})"
                     + (f"; {note}" if note else ""))


@dataclass(frozen=True, slots=True)
class Nta7516Route:
    """What a domain's NTA 7516 record means for one message's route."""

    hop: str | None = None
    """The route to its hosts, when the record counts."""
    detail: str = ""
    """The record, as a person reads it (with `hop`)."""
    note: str = ""
    """Why a record there is does not count (without `hop`)."""
    failure: str | None = None
    """The lookup failed: whether there is a record is unknown."""


def nta7516_route_of(domain: str, found: TransportFacts, policy: Policy, facts: Facts,
                     relay: Relaying) -> Nta7516Route:
    """Where sensitive mail to `domain` goes by its NTA 7516 record, under `policy`:
    nowhere special when the policy does not accept such records, or mail leaves through
    a relay."""
    rules = policy.secure_transport
    if rules is None or Accepted.NTA7516 not in rules.accept or relay.relayed:
        return Nta7516Route()  # through a relay, outside mail never goes to hosts directly
    nta = facts.nta7516.get(domain)
    if nta is None:
        return Nta7516Route(failure="no NTA 7516 record lookup answered")
    if nta.claim is None:
        return Nta7516Route(failure=nta.failure)
    record = nta.claim.record
    if record is None:
        return Nta7516Route(note=f"its NTA 7516 record does not count: {nta.claim.detail}"
                        if nta.claim.detail != NO_RECORD else "")
    hosts = tuple(h.host for h in record.hosts) or found.mx
    unsigned = ("the record is not DNSSEC-signed" if not nta.dnssec else
                "its MX, which receives, is not DNSSEC-signed"
                if not record.hosts and not found.dnssec else None)
    if unsigned is not None and rules.nta7516_require_dnssec:
        return Nta7516Route(note=f"its NTA 7516 record does not count: {unsigned}, and the "
                        "policy requires DNSSEC (secure_transport.nta7516.require_dnssec)")
    if not hosts:
        return Nta7516Route(note="its NTA 7516 record names no host that takes mail")
    return Nta7516Route(nta7516_route(hosts), nta.claim.detail + (f"; {unsigned}" if unsigned
                                                               else ""))


def _shared_nta7516_hop(envelope: Envelope, policy: Policy, facts: Facts | None,
                        relay: Relaying) -> str | None:
    """The NTA 7516 route of every recipient of sensitive mail, when they all share one:
    a route takes the whole message, so it must be every recipient's own."""
    rules = policy.secure_transport
    if (rules is None or Accepted.NTA7516 not in rules.accept or facts is None
            or facts.classification is None or not facts.classification.sensitive):
        return None
    if relay.problem is not None:
        return None
    hops = set()
    for recipient in envelope.recipients:
        if recipient.literal is not None or len(recipient.domains) != 1:
            return None
        [domain] = recipient.domains
        found = facts.transport.get(domain)
        if (found is None or found.method is Method.FAILURE or not _needs_secure_transport(
                _decide_domain(recipient, domain, policy, facts), policy, relay)):
            return None
        hops.add(nta7516_route_of(domain, found, policy, facts, relay).hop)
    return hops.pop() if len(hops) == 1 else None


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
        return _enforced(RecipientVerdict(
            address, domains, rule.action, Rule.RETIRED,
            _retired_reason(recipient, domain, rule, policy), rule.domain,
        ), policy, _unlisted(recipient, domain, "is retired, only monitored"))
    if isinstance(rule, OwnedDomain):
        owned = RecipientVerdict(
            address, domains, Action.ACCEPT, Rule.OWNED, f"{show(domain)} is our own domain",
            rule.domain,
        )
        watch = policy.domain_watch
        if (facts and rule.domain in facts.control_lost and watch.enabled
                and watch.hold_on_control_loss):
            return _enforced(RecipientVerdict(
                address, domains, Action.QUARANTINE, Rule.CONTROL_LOST,
                f"control of {show(rule.domain)} is in doubt "
                f"({facts.control_lost[rule.domain]}): held until a person looks",
                rule.domain,
            ), policy, owned)
        return owned
    if isinstance(rule, Partner):
        return RecipientVerdict(
            address, domains, Action.ACCEPT, Rule.PARTNER,
            f"{show(domain)} is a partner ({rule.transport})", rule.domain,
        )
    match = policy.lookalike(domain)
    if match is None:
        return _unlisted(recipient, domain, "matches no rule")
    kind = _kind(policy, match.protected)
    if match.how is LookalikeHow.EMBEDDED:
        why = f"{show(domain)} contains {kind} {show(match.protected)} but is someone else's"
    else:
        why = f"{show(domain)} looks like {kind} {show(match.protected)} but is not it"
    return _enforced(RecipientVerdict(
        address, domains, policy.lookalikes.action, Rule.LOOKALIKE,
        f"{why}: check the address", match.protected,
    ), policy, _unlisted(recipient, domain, "is a look-alike, only monitored"))


def _unlisted(recipient: Recipient, domain: str, what: str) -> RecipientVerdict:
    """An outside domain no enforced rule covers: the other rules (secure transport, the
    first-recipient guard) still apply to it."""
    return RecipientVerdict(recipient.address, recipient.domains, Action.ACCEPT, Rule.DEFAULT,
                            f"{show(domain)} {what}")


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
