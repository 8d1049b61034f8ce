"""A relay between Postfix and the world: when outside mail may still count as verified.

With a `relayhost`, Postfix takes every outside message to the relay and asks its TLS
table about the relay (`[smtp.example]:587`), never about the recipient's domain. What
the filter found about a domain (DANE, MTA-STS) then protects the mail only if the relay
demands it in turn. So the policy must name the relay (`delivery`), the hop to it must be
verified, and the policy must trust the relay to enforce verified TLS onward; else
sensitive mail counts as leaving without verified TLS.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from postwacht.core.names import DomainError, to_ascii
from postwacht.core.policy import Delivery, Policy

_HOP = re.compile(r"^(?:\[(?P<bracketed>[^\[\]]+)\]|(?P<bare>[^\[\]:]+))"
                  r"(?::(?P<port>[a-z0-9][a-z0-9-]{0,31}))?$", re.IGNORECASE | re.ASCII)
"""Postfix's next-hop forms; the port is a number or a service name (`submission`)."""


class HopError(ValueError):
    """A next hop Postfix would not take as a relay."""


UNREADABLE: tuple[str, ...] = ("<unreadable>",)
"""The relayhost of a main.cf that postconf could not read: some relay, perhaps, that no
policy names (no hop is written so), so sensitive mail never counts as verified by it."""


def next_hops(value: str) -> tuple[str, ...]:
    """A `relayhost` value (one or more next hops, by comma or space) in normal form:
    lower-case, A-labels, otherwise as written. Postfix asks its TLS table with the hop
    as written (`[relay]:25` and `[relay]` are different keys), so no default port is
    added or taken away. Raises `HopError` naming the hop that is wrong."""
    return tuple(_hop(item) for item in value.replace(",", " ").split())


def _hop(text: str) -> str:
    found = _HOP.match(text)
    if found is None:
        raise HopError(f"{text!r} is not a next hop ([host]:port, host:port, [host] or host)")
    port = found["port"]
    if port is not None and port.isdigit() and not 0 < int(port) < 65536:
        raise HopError(f"{text!r}: port {port} is out of range")
    port = port.lower() if port is not None else None
    host = found["bracketed"] or found["bare"]
    if not hop_is_address(f"[{host}]"):
        try:
            host = to_ascii(host)
        except DomainError as exc:
            raise HopError(f"{text!r}: {exc}") from None
    elif found["bare"] is not None:
        raise HopError(f"{text!r}: an address must be in brackets ([{host}])")
    hop = f"[{host}]" if found["bracketed"] is not None else host
    return f"{hop}:{port}" if port is not None else hop


def hop_is_address(hop: str) -> bool:
    """Whether a hop names an IP address: no certificate can be verified for it."""
    host = hop[1:].partition("]")[0] if hop.startswith("[") else ""
    try:
        ipaddress.ip_address(host.removeprefix("ipv6:"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Relaying:
    """How outside mail leaves, as far as verified TLS is concerned."""

    relayhost: tuple[str, ...]
    """Postfix's relayhost (empty: straight to each domain's MX)."""
    problem: str | None
    """Why verified TLS to the recipient cannot be claimed through this relay; None when
    it can (or when there is no relay)."""

    @property
    def relayed(self) -> bool:
        return bool(self.relayhost)

    def describe(self) -> str:
        if not self.relayed:
            return "straight to each recipient domain's mail servers (no relayhost)"
        if self.relayhost == UNREADABLE:
            return f"by a way not known: {self.problem}"
        through = f"through the relay {', '.join(self.relayhost)}"
        if self.problem is None:
            return f"{through}, which the policy trusts to enforce verified TLS onward"
        return f"{through}: {self.problem}"


def relaying(policy: Policy, relayhost: tuple[str, ...] | None) -> Relaying:
    """What `relayhost` (as read from Postfix; None: unknown, the policy's `delivery` is
    taken for it) means for the claim that sensitive mail leaves over verified TLS."""
    delivery = policy.delivery
    if relayhost is None:
        relayhost = delivery.relay if delivery is not None else ()
    return Relaying(relayhost, _problem(delivery, relayhost) if relayhost else None)


def _problem(delivery: Delivery | None, relayhost: tuple[str, ...]) -> str | None:
    if relayhost == UNREADABLE:
        return ("Postfix's relayhost could not be read from its main.cf, so verified TLS "
                "to the recipient cannot be claimed")
    shown = ", ".join(relayhost)
    if delivery is None:
        return (f"Postfix hands outside mail to the relayhost {shown}, which the policy's "
                "delivery section does not name, so verified TLS to the recipient cannot "
                "be claimed")
    if set(delivery.relay) != set(relayhost):
        return (f"Postfix's relayhost is {shown}, but the policy's delivery.relay is "
                f"{', '.join(delivery.relay)}, so verified TLS to the recipient cannot be "
                "claimed")
    return delivery.shortfall
