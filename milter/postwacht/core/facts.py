"""The facts a decision may need, as values: what the outside world was found to be.

The facts layer (`postwacht.facts`) learns them over DNS, HTTPS and RDAP; the core only
reads them. A fact that could not be learnt says so (`Method.FAILURE`, `ok=None`), so
that no rule ever takes "unknown" for "fine".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from postwacht.core.classify import Classification
from postwacht.core.nta7516 import Nta7516Claim, Nta7516Record
from postwacht.core.vocabulary import CheckName, Method


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """An MTA-STS policy (RFC 8461) as fetched from the domain's policy host."""

    mode: str
    mx: tuple[str, ...]
    max_age: int
    policy_id: str

    def matches(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                head, _, rest = host.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


@dataclass(frozen=True, slots=True)
class TransportFacts:
    """What one recipient domain offers for secure transport."""

    domain: str
    method: Method
    detail: str
    mx: tuple[str, ...] = ()
    dnssec: bool = False
    sts: StsPolicy | None = None

    @property
    def verified(self) -> bool:
        return self.method.verified


@dataclass(frozen=True, slots=True)
class Nta7516Facts:
    """What a domain announces with its `v=NTA7516-1` record, as discovery found it."""

    domain: str
    claim: Nta7516Claim | None
    """None when the lookup failed: never taken for "no record"."""
    dnssec: bool
    """The TXT answer was DNSSEC-validated."""
    failure: str = ""

    @property
    def record(self) -> Nta7516Record | None:
        """The record that counts today, if one does."""
        return self.claim.record if self.claim is not None else None

    def describe(self) -> str:
        if self.claim is None:
            return f"unknown: {self.failure}"
        signed = "DNSSEC-signed" if self.dnssec else "not DNSSEC-signed"
        if self.claim.record is None:
            return f"none counts: {self.claim.detail} ({signed})"
        return f"{self.claim.detail} ({signed})"


@dataclass(frozen=True, slots=True)
class Registration:
    """What RDAP says about a domain's registration."""

    registered: bool
    created: dt.datetime | None = None
    expires: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: CheckName
    ok: bool | None
    """None: unknown (the check could not be made)."""
    detail: str


@dataclass(frozen=True, slots=True)
class DomainReport:
    """The domain watch's findings for one owned or retired domain."""

    domain: str
    kind: str
    """owned or retired."""
    checks: tuple[CheckResult, ...]
    expires: dt.datetime | None = None
    expiring_soon: bool = False

    @property
    def control_ok(self) -> bool | None:
        if any(c.ok is False for c in self.checks):
            return False
        if any(c.ok is None for c in self.checks):
            return None
        return True


def control_lost(reports: list[DomainReport]) -> dict[str, str]:
    """Owned domains whose audit failed a check, with what failed: the decision's input."""
    return {
        r.domain: "; ".join(f"{c.name}: {c.detail}" for c in r.checks if c.ok is False)
        for r in reports if r.kind == "owned" and r.control_ok is False
    }


@dataclass(frozen=True, slots=True)
class Facts:
    """What was learnt before deciding (content, DNS); the decision itself does no I/O."""

    classification: Classification | None = None
    """None until the message content was seen: transport rules then wait."""
    transport: Mapping[str, TransportFacts] = field(default_factory=dict)
    """Discovery results for the domains `transport_domains` named."""
    control_lost: Mapping[str, str] = field(default_factory=dict)
    """Owned domains whose domain-watch check failed, with what failed."""
    known: frozenset[str] = frozenset()
    """Recipients (addresses in normal form) the first-recipient guard knows as
    correspondents of this sender (or the organisation, by the policy's scope)."""
    visible: tuple[str, ...] | None = ()
    """The addresses in the message's To and Cc headers (bounded), lower-cased; None when
    they could not be read (a header no parser takes, or a connection that carries no
    headers): the exposed-recipients rule then cannot vouch for the message."""
    relayhost: tuple[str, ...] | None = None
    """Postfix's relayhost as read from its configuration (empty: none); None when it
    could not be read: the policy's `delivery` section is then taken for it."""
    nta7516: Mapping[str, Nta7516Facts] = field(default_factory=dict)
    """The `v=NTA7516-1` claims of the domains in `transport`, when the policy accepts
    them; a domain missing here is a lookup that never answered."""
