"""Envelope recipients as Postfix hands them over, turned into every domain they could reach.

An address can carry more than one destination: a source route names relays, the percent
hack (`user%old.example@relay.example`) and bang paths (`old.example!user@relay.example`)
name a next domain inside the local part, and a relay that unquotes `"x@old.example"@relay`
may send it on. A rule must see all of them, so a `Recipient` lists every domain, the final
one first. A string that is not an address raises `AddressError`; it is never "allowed".

A route in a local part must be written plainly, because readers disagree about anything
else: Postfix, when the final domain is its own, unquotes `"x@old.example "@ours`, drops
the blank and routes to old.example, but keeps a comment (`(c)`) as text; another relay
may drop comments, join `old . example`, or take a full-width at sign (U+FF20) for `@`.
So a local part with a route (`@`, `%` or `!`, or a compatibility form of one) that also
holds a blank, a comment, a quote, a backslash, `:`, `,`, `;`, brackets, a control or an
invisible character, or that routes to something almost a domain (`old.example..`, an
IP address), raises `AddressError`: no mailbox needs that, and a guess could miss.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from dataclasses import dataclass

from postwacht.core.names import DomainError, to_ascii

MAX_ADDRESS_LENGTH = 1024
_ROUTING = re.compile(r"([@%!])")
_SPECIALS_UNQUOTED = frozenset('<>()[]\\,;:"')
_PLAIN_ASCII = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.@")
"""RFC 5322 atext, the dot and '@': all an ASCII local part with a route may hold."""
_PLAIN_CATEGORIES = frozenset("LNMPS")
"""Non-ASCII letters, digits, marks, punctuation, symbols; not blanks, controls, format
characters (zero-width ones), private-use or unassigned code points."""
_DOTS = frozenset(".\u3002\uff0e\uff61")


class AddressError(ValueError):
    """A recipient string that is not an address; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """A normalised envelope recipient."""

    local: str
    domain: str | None
    """The domain after the last '@', as A-labels; None for a literal or a bare local part."""
    domains: tuple[str, ...]
    """Every domain the mail could reach: the final one first, then relays and embedded ones."""
    literal: str | None = None
    """The address literal after '@' (`192.0.2.1`, `IPv6:2001:db8::1`), if any."""

    @property
    def address(self) -> str:
        """The address in normal form: local part as written, domain as A-labels."""
        if self.literal is not None:
            return f"{self.local}@[{self.literal}]"
        return f"{self.local}@{self.domain}" if self.domain else self.local


def parse_recipient(raw: str) -> Recipient:
    """Normalise one envelope recipient (with or without angle brackets)."""
    text = raw.strip()
    if len(text) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"address is longer than {MAX_ADDRESS_LENGTH} characters")
    if text.startswith("<") or text.endswith(">"):
        if not (text.startswith("<") and text.endswith(">") and len(text) >= 2):
            raise AddressError(f"unbalanced angle brackets in {raw!r}")
        text = text[1:-1]
    if not text:
        raise AddressError("empty address (the null sender <> is not a recipient)")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise AddressError(f"control character in address {raw!r}")

    route: list[str] = []
    if text.startswith("@"):
        route_text, text = _split_source_route(text, raw)
        route = [d for hop in route_text.split(",") if (d := _route_domain(hop, raw))]

    local, at_domain = _split_mailbox(text, raw)
    literal: str | None = None
    final: list[str] = []
    if at_domain is not None:
        if at_domain.startswith("["):
            literal = _address_literal(at_domain, raw)
        else:
            final.append(_domain(at_domain, raw))
    embedded = _domains_in_local_part(local, raw)
    if at_domain is None and not embedded and route:
        raise AddressError(f"source route without a mailbox domain in {raw!r}")
    domains = _unique([*final, *route, *embedded])
    return Recipient(
        local=local,
        domain=final[0] if final else None,
        domains=domains,
        literal=literal,
    )


def _split_source_route(text: str, raw: str) -> tuple[str, str]:
    depth = 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == ":" and depth == 0:
            if i + 1 == len(text):
                raise AddressError(f"source route without a mailbox in {raw!r}")
            return text[:i], text[i + 1 :]
    raise AddressError(f"source route without ':' before the mailbox in {raw!r}")


def _route_domain(hop: str, raw: str) -> str | None:
    """A relay named in a source route; an address literal there names no domain."""
    hop = hop.strip()
    if not hop.startswith("@") or len(hop) == 1:
        raise AddressError(f"source route hop {hop!r} is not '@domain' in {raw!r}")
    if hop.startswith("@["):
        _address_literal(hop[1:], raw)
        return None
    return _domain(hop[1:], raw)


def _split_mailbox(text: str, raw: str) -> tuple[str, str | None]:
    """Split at the last '@' outside a quoted string; check the local part's syntax."""
    in_quotes = False
    escaped = False
    at = -1
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif in_quotes and c == "\\":
            escaped = True
        elif c == '"':
            in_quotes = not in_quotes
        elif c == "@" and not in_quotes:
            at = i
    if in_quotes or escaped:
        raise AddressError(f"unterminated quoted string in {raw!r}")
    local, domain = (text, None) if at < 0 else (text[:at], text[at + 1 :])
    if at >= 0 and not local:
        raise AddressError(f"empty local part in {raw!r}")
    if domain == "":
        raise AddressError(f"empty domain after '@' in {raw!r}")
    if not local.startswith('"'):
        bad = sorted({c for c in local if c in _SPECIALS_UNQUOTED or c.isspace()})
        if bad:
            raise AddressError(
                f"character {bad[0]!r} is not allowed in an unquoted local part in {raw!r}"
            )
    elif not (local.endswith('"') and len(local) >= 2 and _is_one_quoted_string(local)):
        raise AddressError(f"quoted local part must be one quoted string in {raw!r}")
    return local, domain


def _is_one_quoted_string(local: str) -> bool:
    escaped = False
    for c in local[1:-1]:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            return False
    return not escaped


def _unquote(local: str) -> str:
    if not local.startswith('"'):
        return local
    out: list[str] = []
    escaped = False
    for c in local[1:-1]:
        if escaped or c != "\\":
            out.append(c)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def _domains_in_local_part(local: str, raw: str) -> list[str]:
    """Domains a relay could route to from the local part: `@`, `%` and `!` forms.

    Read as written and in NFKC form (where a full-width at sign is `@`). A name that is
    not a domain counts for nothing (`100%pure` is no route), unless it has a dot: then it
    is almost a domain (`old.example..`, `192.0.2.1`) and the address is refused.
    """
    text = _unquote(local)
    readings = list(dict.fromkeys([text, unicodedata.normalize("NFKC", text)]))
    if not any(_ROUTING.search(reading) for reading in readings):
        return []
    for reading in readings:
        hiding = next((c for c in reading if not _plain_next_to_a_route(c)), None)
        if hiding is not None:
            raise AddressError(
                f"local part names a route ('@', '%' or '!') beside {hiding!r}, which no "
                f"mailbox needs and relays read differently, in {raw!r}"
            )
    out: list[str] = []
    for reading in readings:
        for candidate in _route_candidates(reading):
            try:
                out.append(to_ascii(candidate))
            except DomainError:
                if _DOTS.intersection(candidate):
                    raise AddressError(
                        f"local part routes to {candidate!r}, which is not a valid domain "
                        f"name, in {raw!r}"
                    ) from None
    return out


def _plain_next_to_a_route(c: str) -> bool:
    if c.isascii():
        return c in _PLAIN_ASCII
    return unicodedata.category(c)[0] in _PLAIN_CATEGORIES


def _route_candidates(text: str) -> list[str]:
    """`host!user` names the host before the '!'; `user@host`, `user%host` after."""
    parts = _ROUTING.split(text)
    tokens, separators = parts[0::2], parts[1::2]
    named = (tokens[i] if sep == "!" else tokens[i + 1] for i, sep in enumerate(separators))
    return [name for name in named if name]


def _domain(text: str, raw: str) -> str:
    try:
        return to_ascii(text)
    except DomainError as exc:
        raise AddressError(f"{exc} (in {raw!r})") from None


def _address_literal(text: str, raw: str) -> str:
    if not (text.startswith("[") and text.endswith("]")):
        raise AddressError(f"address literal must be written as [address] in {raw!r}")
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return "IPv6:" + str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        raise AddressError(f"{text!r} is not an IPv4 or IPv6 address literal in {raw!r}") from None


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
