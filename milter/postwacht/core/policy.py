"""The policy model: what the organisation owns, gave up and trusts, compiled for lookups.

`postwacht.config` reads, checks and compiles a policy file into a `Policy`; nothing here
reads a file. Every value is immutable once built, so a message decided under one policy
is never half-decided under the next. Defaults live in the JSON Schema only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from postwacht.core.classify import SenderGroup, Sensitivity
from postwacht.core.lookalike import LookalikeIndex, LookalikeMatch
from postwacht.core.names import parents
from postwacht.core.vocabulary import (
    Accepted,
    Action,
    Match,
    Mode,
    PartnerTransport,
    RelayTls,
    Rule,
    Scope,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
REPLY_FIELDS = ("domain", "since", "successor", "address")
"""The placeholders a retired domain's `reply` text may use."""


@dataclass(frozen=True, slots=True)
class OwnedDomain:
    domain: str
    nameservers: frozenset[str]
    """Name servers the domain watch expects; empty: not checked."""
    mx: frozenset[str]
    """MX hosts the domain watch expects; empty: not checked."""


@dataclass(frozen=True, slots=True)
class RetiredDomain:
    domain: str
    since: dt.date | None
    successor: str | None
    action: Action
    reply: str | None
    mode: Mode


@dataclass(frozen=True, slots=True)
class Partner:
    domain: str
    transport: PartnerTransport


DomainRule = OwnedDomain | RetiredDomain | Partner


@dataclass(frozen=True, slots=True)
class LookalikeRule:
    protect: frozenset[str]
    max_distance: int
    min_length: int
    action: Action
    ignore: frozenset[str]
    mode: Mode


@dataclass(frozen=True, slots=True)
class Outbound:
    """Who counts as an internal sender."""

    authenticated: bool
    networks: tuple[IPNetwork, ...]
    daemon_names: frozenset[str]


@dataclass(frozen=True, slots=True)
class SecureTransport:
    accept: frozenset[Accepted]
    min_tls: str
    otherwise: Action
    route: str | None
    reply: str | None
    mode: Mode
    """Monitor: insecure transport and DNS failures are logged and counted, not acted on."""
    nta7516_require_dnssec: bool
    """An NTA 7516 record (and the MX hosts it sends mail to) counts only when
    DNSSEC-signed: unsigned, anyone on the path could name their own hosts."""

    @property
    def protocols(self) -> str:
        return tls_protocols(self.min_tls)


def tls_protocols(min_tls: str) -> str:
    """Postfix smtp_tls_policy_maps `protocols=` value for a lowest TLS version."""
    return f">=TLSv{min_tls}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The relay Postfix hands outside mail to (its `relayhost`), as the policy names it.

    With a relay, Postfix asks the TLS table about the relay, not the recipient's domain:
    verified TLS to the recipient is then the relay's to keep, and is claimed only when
    the policy trusts the relay to enforce it and the hop to it is verified too."""

    relay: tuple[str, ...]
    """The relay's next hops as Postfix writes them (`[smtp.example]:587`), lower-case."""
    tls: RelayTls
    trusted_to_enforce: bool
    min_tls: str
    """secure_transport's min_tls (the schema's default without that section)."""

    @property
    def protocols(self) -> str:
        return tls_protocols(self.min_tls)

    @property
    def shortfall(self) -> str | None:
        """Why mail through this relay never counts as verified, by the policy alone."""
        shown = ", ".join(self.relay)
        if not self.tls.verified:
            return (f"the hop to the relay {shown} is encrypted but not verified "
                    "(delivery.tls: encrypt)")
        if not self.trusted_to_enforce:
            return (f"the policy does not trust the relay {shown} to enforce verified TLS "
                    "onward (delivery.trusted_to_enforce)")
        return None


@dataclass(frozen=True, slots=True)
class DnsSettings:
    resolvers: tuple[tuple[str, int], ...]
    """Empty: the system's resolvers (/etc/resolv.conf)."""
    timeout: float
    mta_sts_port: int


@dataclass(frozen=True, slots=True)
class DomainWatch:
    enabled: bool
    """The policy has a `domain_watch` section: the daemon runs the watch."""
    rdap_base_url: str | None
    bootstrap_file: str | None
    rdap_timeout: float
    interval: int
    expiry_warning_days: int
    hold_on_control_loss: bool
    mode: Mode
    """Of the control-lost rule: monitor logs and counts mail it would hold."""


class OnExpiry(StrEnum):
    """What the daemon does with held mail older than the retention."""

    RETURN = "return"
    """Back to the sender as expired (postsuper -f): the sender learns it never left."""
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class QuarantineSettings:
    retention_days: float
    """Held longer than this, a message is expired by the daemon on its MTA."""
    on_expiry: OnExpiry

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400.0

    @property
    def retention(self) -> str:
        """The retention for a person: `30 days`, `12 hours`, `3 seconds`."""
        units = (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))
        unit, seconds = next((u for u in units if self.retention_seconds >= u[1]), units[-1])
        count = round(self.retention_seconds / seconds, 2)
        return f"{count:g} {unit}{'' if count == 1 else 's'}"

    def describe(self) -> str:
        then = ("returned to the sender" if self.on_expiry is OnExpiry.RETURN
                else "deleted")
        return f"held mail kept {self.retention}, then {then}"


class Language(StrEnum):
    """The languages notices are written in (a template set each)."""

    NL = "nl"
    EN = "en"


class DigestPeriod(StrEnum):
    """How often reviewers are told what waits for them."""

    IMMEDIATELY = "immediately"
    """Shortly after new holds, several batched, at most one digest a minute."""
    HOURLY = "hourly"
    DAILY = "daily"
    """At 08:00 local time."""
    OFF = "off"


@dataclass(frozen=True, slots=True)
class NoticeSwitch:
    """Whether a hold under one rule is told to its sender, and listed in the digest."""

    sender: bool
    digest: bool


@dataclass(frozen=True, slots=True)
class NoticeSettings:
    """Notices to the senders of held mail and digests for reviewers (policy `notices`)."""

    sender_address: str
    """The envelope and header From of every notice: an address in an owned domain."""
    language: Language
    review_url: str
    """The web review's base URL, ending in '/'."""
    sender: bool
    digest: DigestPeriod
    rules: Mapping[Rule, NoticeSwitch]
    """Per-rule exceptions; a rule not listed follows `sender` and is in the digest."""

    def notifies_sender(self, rule: Rule) -> bool:
        switch = self.rules.get(rule)
        return switch.sender if switch is not None else self.sender

    def in_digest(self, rule: Rule) -> bool:
        switch = self.rules.get(rule)
        return switch.digest if switch is not None else True

    def is_own(self, address: str) -> bool:
        """Whether mail from `address` is a notice of Postwacht's (never told of again)."""
        return address.lower() == self.sender_address.lower()

    def link(self, record_id: int) -> str:
        """Where a held message's page is in the web review."""
        return f"{self.review_url}held/{record_id}"


@dataclass(frozen=True, slots=True)
class FirstRecipient:
    """Sensitive mail to an outside address nobody (or this sender) mailed before is held
    until the sender confirms it by a signed link (policy `misaddressing.first_recipient`)."""

    scope: Scope
    match: Match
    known: SenderGroup
    """Known correspondents from the policy (addresses and @domains): never held."""
    exempt: SenderGroup
    """Senders whose mail this rule leaves alone."""
    forget_after_days: float
    """A correspondent not mailed for this long is new again."""
    link_valid_hours: float
    mode: Mode

    def knows(self, address: str, domain: str) -> bool:
        """Whether the policy lists the recipient (address, domain or a parent domain)."""
        return (address.lower() in self.known.addresses
                or any(name in self.known.domains for name in parents(domain)))


@dataclass(frozen=True, slots=True)
class ExposedRecipients:
    """Sensitive mail showing more than `max_outside` outside addresses in To/Cc."""

    max_outside: int
    action: Action
    """QUARANTINE or REJECT."""
    reply: str | None
    mode: Mode


@dataclass(frozen=True)
class Policy:
    """A checked, compiled policy. Never changes once built."""

    source: str
    checksum: str
    organisation: str
    owned: tuple[str, ...]
    retired: tuple[RetiredDomain, ...]
    partners: tuple[Partner, ...]
    lookalikes: LookalikeRule
    outbound: Outbound
    address_literals: Action
    on_dns_failure: Action
    local_on_reject: Action
    """For sendmail(1) mail with a refused recipient: QUARANTINE, or REJECT (a bounce)."""
    log_local_parts: bool
    sensitivity: Sensitivity
    secure_transport: SecureTransport | None
    """None: the policy does not enforce secure transport."""
    dns: DnsSettings
    domain_watch: DomainWatch
    quarantine: QuarantineSettings
    notices: NoticeSettings | None
    """None: the policy has no `notices` section, and nobody is told of a hold."""
    first_recipient: FirstRecipient | None
    exposed_recipients: ExposedRecipients | None
    address_literals_mode: Mode
    delivery: Delivery | None
    """None: the policy names no relay; mail is taken to leave straight to each domain."""
    _table: Mapping[str, DomainRule] = field(repr=False)
    _lookalike_index: LookalikeIndex = field(repr=False)
    _modes: Mapping[Rule, Mode] = field(init=False, repr=False)
    """Each rule's mode but the retired domains' (per domain), worked out once."""

    def __post_init__(self) -> None:
        st, first, exposed = self.secure_transport, self.first_recipient, self.exposed_recipients
        modes = {
            Rule.LOOKALIKE: self.lookalikes.mode,
            Rule.ADDRESS_LITERAL: self.address_literals_mode,
            Rule.CONTROL_LOST: self.domain_watch.mode,
            Rule.INSECURE_TRANSPORT: st.mode if st else Mode.ENFORCE,
            Rule.DNS_FAILURE: st.mode if st else Mode.ENFORCE,
            Rule.NTA7516: st.mode if st else Mode.ENFORCE,
            Rule.FIRST_RECIPIENT: first.mode if first else Mode.ENFORCE,
            Rule.EXPOSED_RECIPIENTS: exposed.mode if exposed else Mode.ENFORCE,
        }
        object.__setattr__(self, "_modes", MappingProxyType(modes))

    def rule_for(self, domain: str) -> DomainRule | None:
        """The entry covering `domain` (itself or its nearest listed parent)."""
        table = self._table
        for name in parents(domain):
            rule = table.get(name)
            if rule is not None:
                return rule
        return None

    def lookalike(self, domain: str) -> LookalikeMatch | None:
        """The protected domain an unlisted `domain` could be mistaken for, if any."""
        if any(name in self.lookalikes.ignore for name in parents(domain)):
            return None
        return self._lookalike_index.match(domain)

    def owns(self, domain: str) -> bool:
        """Whether `domain` (in ASCII form) is an owned domain or lies under one."""
        return isinstance(self.rule_for(domain), OwnedDomain)

    def owned_domains(self) -> list[OwnedDomain]:
        return [r for d in self.owned if isinstance(r := self.rule_for(d), OwnedDomain)]

    def mode(self, rule: Rule, matched: str | None = None) -> Mode:
        """Whether a decision under `rule` is carried out or only monitored."""
        if rule is Rule.RETIRED and matched is not None:
            retired = self.rule_for(matched)
            return retired.mode if isinstance(retired, RetiredDomain) else Mode.ENFORCE
        return self._modes.get(rule, Mode.ENFORCE)

    @property
    def classifies(self) -> bool:
        """Whether any rule asks if a message is sensitive (so its content is read)."""
        return (self.secure_transport is not None or self.first_recipient is not None
                or self.exposed_recipients is not None)

    @property
    def reads_headers(self) -> bool:
        """Whether deciding a message needs its headers (the milter negotiates them)."""
        return self.exposed_recipients is not None or (
            self.classifies and self.sensitivity.reads_headers)

    @property
    def reads_body(self) -> bool:
        return self.classifies and self.sensitivity.reads_body

    def monitored(self) -> list[str]:
        """What is only monitored: each retired domain, then every other rule."""
        found = [f"retired domain {r.domain}" for r in self.retired if r.mode is Mode.MONITOR]
        rules = (Rule.LOOKALIKE, Rule.ADDRESS_LITERAL, Rule.CONTROL_LOST,
                 Rule.INSECURE_TRANSPORT, Rule.FIRST_RECIPIENT, Rule.EXPOSED_RECIPIENTS)
        sections = {Rule.CONTROL_LOST: self.domain_watch.enabled
                    and self.domain_watch.hold_on_control_loss,
                    Rule.INSECURE_TRANSPORT: self.secure_transport is not None,
                    Rule.FIRST_RECIPIENT: self.first_recipient is not None,
                    Rule.EXPOSED_RECIPIENTS: self.exposed_recipients is not None}
        found += [f"rule {rule}" for rule in rules
                  if sections.get(rule, True) and self.mode(rule) is Mode.MONITOR]
        return found

    def warnings(self) -> list[str]:
        """What a valid policy does that a postmaster should know before relying on it."""
        warned = [f"{r.domain} is a retired domain in monitor mode: mail to it LEAVES "
                  "(whoever holds the domain now receives it); set mode: enforce once the "
                  "report shows who still mails it" for r in self.retired
                  if r.mode is Mode.MONITOR]
        others = [m for m in self.monitored() if not m.startswith("retired domain")]
        if others:
            warned.append(f"only monitored, not enforced: {', '.join(others)}")
        secure = self.secure_transport
        if (secure is not None and secure.mode is Mode.ENFORCE
                and self.sensitivity.default_sensitive
                and secure.otherwise in (Action.QUARANTINE, Action.REJECT)):
            done = _done(secure.otherwise)
            warned.append(
                f"all external mail is sensitive by default and secure_transport is "
                f"enforced: every message to a domain without verified TLS (most domains) "
                f"is {done}; start with mode: monitor for a week and read what "
                "postwacht_monitored_total says would have happened")
        if (secure is not None and Accepted.NTA7516 in secure.accept
                and not secure.nta7516_require_dnssec):
            warned.append("secure_transport.nta7516.require_dnssec is false: an NTA 7516 "
                          "record from an unsigned zone counts, and anyone on the path could "
                          "name their own hosts for it, which a certificate for their own "
                          "name then satisfies")
        shortfall = self.delivery.shortfall if self.delivery else None
        if secure is not None and shortfall is not None:
            warned.append(f"{shortfall}: sensitive mail to outside domains never counts as "
                          f"verified, and is {_done(secure.otherwise)}")
        return warned

    def summary(self) -> str:
        return (
            f"{self.organisation}: {len(self.owned)} owned, {len(self.retired)} retired, "
            f"{len(self.partners)} partner domain{'s' if len(self.partners) != 1 else ''}; "
            f"{self.quarantine.describe()}; checksum {self.checksum[:12]}"
        )


def _done(otherwise: Action) -> str:
    """What `secure_transport.otherwise` does to mail, as a warning says it."""
    return {Action.QUARANTINE: "held", Action.REJECT: "refused"}.get(
        otherwise, f"sent through the secure route ({otherwise})")
