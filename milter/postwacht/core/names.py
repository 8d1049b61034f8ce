"""Domain names in the one form the policy and the decision compare: lower-case A-labels.

Every spelling of a name (upper case, a trailing root dot, U-labels, full-width dots)
maps to the same string here, so that no spelling can slip past a rule.
"""

from __future__ import annotations

import ipaddress
import re

import idna

_LDH_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LDH_NAME = re.compile(rf"(?:{_LDH_LABEL}\.)*{_LDH_LABEL}\Z")
_DOTTED_QUAD = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+\Z")
MAX_DOMAIN_LENGTH = 253


class DomainError(ValueError):
    """A string that is not a usable domain name; the message says why."""


def to_ascii(name: str) -> str:
    """Return `name` as lower-case A-labels (UTS-46), without a trailing root dot."""
    if not name or name == ".":
        raise DomainError("empty domain name")
    if name.isascii():
        lowered = (name[:-1] if name.endswith(".") else name).lower()
        if (
            len(lowered) <= MAX_DOMAIN_LENGTH
            and _LDH_NAME.match(lowered)
            and "xn--" not in lowered
        ):
            _refuse_bare_ip(lowered)
            return lowered
        name = name.lower()  # punycode reads upper case as a case hint: A-labels are lower
    try:
        encoded = idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise DomainError(f"{name!r} is not a valid domain name: {exc}") from None
    if encoded.endswith("."):
        encoded = encoded[:-1]
    if not encoded or ".." in encoded or encoded.endswith("."):
        raise DomainError(f"{name!r} is not a valid domain name: empty label")
    if len(encoded) > MAX_DOMAIN_LENGTH:
        raise DomainError(f"{name!r} is longer than {MAX_DOMAIN_LENGTH} characters")
    _refuse_bare_ip(encoded)
    return encoded


def _refuse_bare_ip(name: str) -> None:
    if not _DOTTED_QUAD.match(name):
        return
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return
    raise DomainError(
        f"{name!r} is an IP address, not a domain name (write it as an address literal [{name}])"
    )


def to_unicode(ascii_name: str) -> str:
    """The U-label form of an A-label name, for people to read; unchanged if undecodable."""
    if "xn--" not in ascii_name:
        return ascii_name
    try:
        return idna.decode(ascii_name)
    except (idna.IDNAError, UnicodeError):
        return ascii_name


def parents(domain: str) -> list[str]:
    """The domain and every parent, longest first: the suffix walk behind every domain rule."""
    out = [domain]
    dot = domain.find(".")
    while dot >= 0:
        domain = domain[dot + 1 :]
        out.append(domain)
        dot = domain.find(".")
    return out


def parse_nameserver(spec: str) -> tuple[str, int]:
    """`127.0.0.1`, `127.0.0.1:5354` or `[::1]:53` -> (address, port); ValueError if not."""
    host, port = spec, "53"
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    ipaddress.ip_address(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return host, int(port)
