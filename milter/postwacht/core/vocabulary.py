"""The words every layer shares, defined once: actions, rules, transport methods."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What happens to a recipient or a message; ordered from mildest to strictest."""

    ACCEPT = "accept"
    ROUTE = "route"
    """Accept, but deliver through the policy's secure route (a secure-mail provider)."""
    TEMPFAIL = "tempfail"
    QUARANTINE = "quarantine"
    REJECT = "reject"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def refuses(self) -> bool:
        """Refused outright (now or later), rather than delivered or held."""
        return self in (Action.REJECT, Action.TEMPFAIL)


_SEVERITY = {a: i for i, a in enumerate(Action)}


class Rule(StrEnum):
    """Why a recipient got its action. Bounded: safe as a metric label and a record field."""

    RETIRED = "retired"
    LOOKALIKE = "lookalike"
    ADDRESS_LITERAL = "address-literal"
    BAD_ADDRESS = "bad-address"
    OWNED = "owned"
    PARTNER = "partner"
    LOCAL = "local"
    DEFAULT = "default"
    INBOUND = "inbound"
    CONTROL_LOST = "control-lost"
    SECURE_TRANSPORT = "secure-transport"
    INSECURE_TRANSPORT = "insecure-transport"
    DNS_FAILURE = "dns-failure"
    FIRST_RECIPIENT = "first-recipient"
    """Sensitive mail to an outside address its sender never mailed: the sender confirms."""
    EXPOSED_RECIPIENTS = "exposed-recipients"
    """Sensitive mail that shows many outside addresses to each other in To/Cc."""
    NTA7516 = "nta7516"
    """Sensitive mail to a domain announcing an NTA 7516 mail service (`v=NTA7516-1`):
    sent to the hosts its record names, over verified TLS."""

    @property
    def needs_content(self) -> bool:
        """Decided only at end of message, once the content made the mail sensitive."""
        return self in _CONTENT_RULES

    @property
    def sender_confirms(self) -> bool:
        """A hold its sender may end with a signed link ("send it" or "cancel"), no
        reviewer needed: the sender is the one who knows whether the address is right."""
        return self is Rule.FIRST_RECIPIENT


_CONTENT_RULES = frozenset({Rule.SECURE_TRANSPORT, Rule.INSECURE_TRANSPORT, Rule.DNS_FAILURE,
                            Rule.FIRST_RECIPIENT, Rule.EXPOSED_RECIPIENTS, Rule.NTA7516})


class Mode(StrEnum):
    """Whether a rule's decision is carried out, or only logged, counted and shown."""

    ENFORCE = "enforce"
    MONITOR = "monitor"
    """The decision is made, logged and counted; the mail goes on unchanged. How a
    postmaster rolls a rule out: a week in monitor, then enforce."""


class Scope(StrEnum):
    """Whose past mail makes a recipient known to the first-recipient guard."""

    SENDER = "sender"
    """This sender must have mailed the recipient before."""
    ORGANISATION = "organisation"
    """Anyone in the organisation."""


class Match(StrEnum):
    """What the first-recipient guard remembers of a recipient."""

    ADDRESS = "address"
    DOMAIN = "domain"


class Method(StrEnum):
    """What discovery found a recipient domain offers for transport."""

    DANE = "dane"
    MTA_STS = "mta-sts"
    NONE = "none"
    NO_MAIL = "no-mail"
    """A null MX: the domain takes no mail."""
    NXDOMAIN = "nxdomain"
    FAILURE = "failure"
    """The lookup failed (SERVFAIL, bogus, timeout): unknown, never "nothing"."""

    @property
    def verified(self) -> bool:
        return self in (Method.DANE, Method.MTA_STS)


class Accepted(StrEnum):
    """What `secure_transport.accept` may count as verified transport."""

    DANE = "dane"
    MTA_STS = "mta-sts"
    PARTNER = "partner"
    NTA7516 = "nta7516"
    """A valid `v=NTA7516-1` record: the mail goes to the hosts it names."""


class PartnerTransport(StrEnum):
    """The level agreed with a partner, served to Postfix as its TLS policy."""

    DANE = "dane"
    MTA_STS = "mta-sts"
    VERIFY = "verify"
    ENCRYPT = "encrypt"


class RelayTls(StrEnum):
    """What Postfix demands of the hop to a relay (`delivery.tls`), served as its TLS
    policy: the first three verify the relay's certificate, `encrypt` does not."""

    SECURE = "secure"
    DANE = "dane"
    VERIFY = "verify"
    ENCRYPT = "encrypt"

    @property
    def verified(self) -> bool:
        return self is not RelayTls.ENCRYPT


class LookalikeHow(StrEnum):
    SIMILAR = "similar"
    """The skeletons are equal or within the edit distance."""
    EMBEDDED = "embedded"
    """The protected name stands inside the domain (`samen-veilig.nl.example.com`)."""


class CheckName(StrEnum):
    """A domain-watch check; bounded, used as a metric label."""

    DELEGATION = "delegation"
    MX = "mx"
    REGISTRATION = "registration"
