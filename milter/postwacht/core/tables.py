"""The answers of Postfix's lookup tables, served by the socketmap adapter.

- `transport` (transport_maps): the backstop for mail the milter never saw (virtual
  aliases, aliases(5), .forward expand after it). A retired domain, or a look-alike the
  policy rejects, answers `OK error:5.7.1 <reason>`: that recipient bounces.
- `tls` (smtp_tls_policy_maps): per next hop, the TLS policy Postfix must demand; never
  weaker than what the milter relied on when it let sensitive mail through.
- `nta7516` (the smtp_tls_policy_maps of the `nta7516` transport only): per host of an
  NTA 7516 route, `dane-only` where the host has usable TLSA records, else `secure` with
  the host's name. The transport's own level is `secure`: a host this table does not
  answer for still leaves only over verified TLS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from postwacht.core.address import AddressError, Recipient, parse_recipient
from postwacht.core.decide import Envelope, decide
from postwacht.core.facts import TransportFacts
from postwacht.core.names import DomainError, to_ascii
from postwacht.core.policy import OwnedDomain, Partner, Policy, RetiredDomain, tls_protocols
from postwacht.core.relay import next_hops
from postwacht.core.vocabulary import Accepted, Action, Method, PartnerTransport, RelayTls, Rule


class Status(StrEnum):
    """socketmap_table(5) reply kinds."""

    OK = "OK"
    NOTFOUND = "NOTFOUND"
    TEMP = "TEMP"
    PERM = "PERM"


@dataclass(frozen=True, slots=True)
class TableAnswer:
    status: Status
    data: str = ""

    def __str__(self) -> str:
        return f"{self.status} {one_line(self.data)}"


NOTFOUND = TableAnswer(Status.NOTFOUND)


def one_line(text: str) -> str:
    """ASCII on one line: what a table reply and an SMTP reply can carry."""
    return " ".join(text.encode("ascii", "replace").decode().split())


def transport_answer(key: str, policy: Policy) -> TableAnswer:
    """Final recipients of retired (and rejected look-alike) domains bounce.

    Postfix asks this for direct recipients too (smtpd and qmgr), so these answers are
    not retired-domain attempts: the milter counts those, once each.
    """
    if key == "*" or not key:
        return NOTFOUND
    recipient = table_recipient(key)
    if recipient is None:
        return TableAnswer(Status.TEMP, "cannot read this address; deferring rather than guessing")
    [verdict] = decide(Envelope("", (recipient,), internal=True), policy).recipients
    # A retired domain bounces here whatever its milter action: a quarantine cannot
    # happen at delivery, and mail expanded to it must never leave.
    if verdict.rule is Rule.RETIRED or (
        verdict.rule is Rule.LOOKALIKE and verdict.action is Action.REJECT
    ):
        return TableAnswer(Status.OK, f"error:5.7.1 {one_line(verdict.reason)}")
    return NOTFOUND


def table_recipient(key: str) -> Recipient | None:
    """Postfix passes addresses in internal form (unquoted: `john doe@example.org`)."""
    try:
        return parse_recipient(key if "@" in key else f"postmaster@{to_ascii(key)}")
    except (AddressError, DomainError):
        pass
    local, _, domain = key.rpartition("@")
    try:
        quoted = local.replace("\\", "\\\\").replace('"', '\\"')
        return parse_recipient(f'"{quoted}"@{domain}') if local else None
    except AddressError:
        return None


def tls_needs_facts(key: str, policy: Policy) -> str | None:
    """The domain whose transport facts the `tls` answer for `key` depends on, if any."""
    target = _tls_target(key, policy)
    if isinstance(target, TableAnswer):
        return None
    rule = policy.rule_for(target)
    rules = policy.secure_transport
    if (isinstance(rule, Partner) and rules is not None and Accepted.PARTNER in rules.accept
            and rule.transport is not PartnerTransport.MTA_STS):
        return None  # the agreed level is the answer
    return target


def tls_answer(key: str, policy: Policy, facts: TransportFacts | None) -> TableAnswer:
    """The `tls` table's reply for next hop `key`, given the facts `tls_needs_facts` named."""
    target = _tls_target(key, policy)
    if isinstance(target, TableAnswer):
        return target
    if facts is not None and facts.method is Method.FAILURE:
        return TableAnswer(Status.TEMP, facts.detail)  # defer rather than guess
    found = tls_policy(target, policy, facts)
    return TableAnswer(Status.OK, found) if found else NOTFOUND


def _tls_target(key: str, policy: Policy) -> str | TableAnswer:
    if key == "*" or not key:
        return NOTFOUND
    relay = _relay_tls(policy, key)
    if relay is not None:
        return relay
    if key.startswith("["):
        return _route_tls(policy, key)
    try:
        domain = to_ascii(key)
    except DomainError:
        return NOTFOUND
    if policy.secure_transport is None or isinstance(policy.rule_for(domain),
                                                     OwnedDomain | RetiredDomain):
        return NOTFOUND
    return domain


def _relay_tls(policy: Policy, key: str) -> TableAnswer | None:
    """The relay the policy names (`delivery`) is reached at the level it says; the
    policy's check makes sure that an address is never asked to be verified."""
    delivery = policy.delivery
    if delivery is None:
        return None
    try:
        [hop] = next_hops(key)
    except ValueError:  # not one hop, or not a hop at all
        return None
    if hop not in delivery.relay:
        return None
    level = "dane-only" if delivery.tls is RelayTls.DANE else str(delivery.tls)
    return TableAnswer(Status.OK, f"{level} protocols={delivery.protocols}")


def _route_tls(policy: Policy, key: str) -> TableAnswer:
    """The secure-mail provider of `otherwise: route` is reached over verified TLS too."""
    rules = policy.secure_transport
    if rules is None or rules.route is None or rules.route.partition(":")[2] != key:
        return NOTFOUND
    host = key[1:].partition("]")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return TableAnswer(Status.OK, f"secure protocols={rules.protocols}")
    # Postfix verifies certificate names, never addresses: for [192.0.2.1] the most it
    # can demand is TLS itself.
    return TableAnswer(Status.OK, f"encrypt protocols={rules.protocols}")


def tls_policy(domain: str, policy: Policy, facts: TransportFacts | None) -> str | None:
    """The smtp_tls_policy_maps value for next hop `domain`, or None for Postfix's default.

    Never weaker than what the milter relied on when it let sensitive mail through.
    """
    rules = policy.secure_transport
    if rules is None:
        return None
    protocols = f"protocols={rules.protocols}"
    rule = policy.rule_for(domain)
    if isinstance(rule, Partner) and Accepted.PARTNER in rules.accept:
        return {
            PartnerTransport.DANE: f"dane-only {protocols}",
            PartnerTransport.MTA_STS: _sts_policy(facts, protocols) or f"secure {protocols}",
            PartnerTransport.VERIFY: f"verify {protocols}",
            PartnerTransport.ENCRYPT: f"encrypt {protocols}",
        }[rule.transport]
    if facts is None or not facts.verified or Accepted(facts.method) not in rules.accept:
        return None
    if facts.method is Method.DANE:
        return f"dane-only {protocols}"
    return _sts_policy(facts, protocols)


def _sts_policy(facts: TransportFacts | None, protocols: str) -> str | None:
    if facts is None or facts.sts is None or facts.method is not Method.MTA_STS:
        return None
    # MTA-STS "*.example.net" matches one label; Postfix ".example.net" matches any
    # depth below it: slightly wider, never weaker than certificate verification.
    patterns = [p[1:] if p.startswith("*.") else p for p in facts.sts.mx]
    return f"secure match={':'.join(patterns)} {protocols}"


def nta7516_tls_answer(host: str, policy: Policy, why_not_dane: str | None) -> TableAnswer:
    """The `nta7516` table's reply for an NTA 7516 host: DANE where its TLSA records are
    usable (`why_not_dane` None), else its certificate must carry its name."""
    # The policy may have dropped secure_transport since the message was routed.
    rules = policy.secure_transport
    protocols = rules.protocols if rules is not None else tls_protocols("1.2")
    if why_not_dane is None:
        return TableAnswer(Status.OK, f"dane-only protocols={protocols}")
    return TableAnswer(Status.OK, f"secure match={host} protocols={protocols}")
