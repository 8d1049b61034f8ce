"""The `v=NTA7516-1` record: a domain announcing that it receives mail over an NTA 7516
mail service.

    v=NTA7516-1;startdate=YYYY-MM;enddate=YYYY-MM;provider=NAME;ntamx=PRIO HOST[;...]

The claim holds from the first day of the start month to the last day of the end month.
Without `ntamx`, the domain's own MX hosts receive such mail. Exactly one such record
counts: two, or one that cannot be read, are no claim at all (and say why). Pure: the
TXT strings and the day come in, a value goes out.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from postwacht.core.names import DomainError, to_ascii
from postwacht.core.text import ROUTE_MAX, printable

VERSION = "v=NTA7516-1"
TRANSPORT = "nta7516"
"""The Postfix transport (master.cf) that carries mail to a domain's NTA 7516 hosts: an
smtp(8) client whose own TLS level is `secure`, so that no host leaves unverified."""
_VERSION = re.compile(r"\s*v=NTA7516-1\s*(;.*)?", re.IGNORECASE | re.DOTALL)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_NTAMX = re.compile(r"([0-9]{1,5})[ \t]+(\S+)")
PROVIDER_LIMIT = 100
"""Characters of the provider's name that are shown (it comes from anyone's DNS)."""
NO_RECORD = "no v=NTA7516-1 record"
MAX_HOSTS = 16
"""More `ntamx` hosts than any service lists: a longer record is taken as malformed."""


class RecordError(ValueError):
    """A `v=NTA7516-1` record that cannot be read; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class NtaHost:
    preference: int
    host: str


@dataclass(frozen=True, slots=True)
class Nta7516Record:
    start: dt.date
    """The first day of the start month."""
    end: dt.date
    """The last day of the end month."""
    provider: str
    hosts: tuple[NtaHost, ...]
    """The `ntamx` hosts, most preferred first; empty: the domain's own MX hosts."""

    def valid_on(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def validity(self) -> str:
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


def nta7516_records(txts: Sequence[str]) -> list[str]:
    """The TXT strings that claim to be NTA 7516 records: exactly this version tag, alone
    or followed by `;` (not `v=NTA7516-10`)."""
    return [t for t in txts if _VERSION.fullmatch(t)]


def parse_record(text: str) -> Nta7516Record:
    """One record, read; `RecordError` says what is wrong with one that cannot be."""
    parts = [p.strip() for p in text.strip().split(";")]
    if parts[-1:] == [""]:
        parts.pop()  # a trailing ';'
    if not parts or parts[0].lower() != VERSION.lower():
        raise RecordError(f"does not start with {VERSION}")
    fields: dict[str, str] = {}
    hosts: list[NtaHost] = []
    for part in parts[1:]:
        name, equals, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not equals or not name:
            raise RecordError(f"{_shown(part)} is not name=value")
        if name == "ntamx":
            hosts.append(_host(value))
        elif name in fields:
            raise RecordError(f"{_shown(name)} is given twice")
        else:
            fields[name] = value
    if len(hosts) > MAX_HOSTS:
        raise RecordError(f"more than {MAX_HOSTS} ntamx hosts")
    missing = [n for n in ("startdate", "enddate", "provider") if not fields.get(n)]
    if missing:
        raise RecordError(f"no {' or '.join(missing)}")
    start = _month(fields["startdate"], "startdate")
    last = _month(fields["enddate"], "enddate")
    end = last.replace(day=calendar.monthrange(last.year, last.month)[1])
    if end < start:
        raise RecordError(f"enddate {fields['enddate']} is before startdate "
                          f"{fields['startdate']}")
    ordered = tuple(sorted(set(hosts), key=lambda h: (h.preference, h.host)))
    return Nta7516Record(start, end, printable(fields["provider"], PROVIDER_LIMIT), ordered)


def _shown(text: str) -> str:
    """Record text in a message: quoted, visible, bounded (it comes from anyone's DNS)."""
    return repr(printable(text, 60))


def _month(value: str, name: str) -> dt.date:
    found = _MONTH.fullmatch(value)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        raise RecordError(f"{name} {_shown(value)} is not YYYY-MM")
    return dt.date(int(found[1]), int(found[2]), 1)


def _host(value: str) -> NtaHost:
    found = _NTAMX.fullmatch(value)
    if found is None or int(found[1]) > 65535:
        raise RecordError(f"ntamx {_shown(value)} is not PREFERENCE HOST")
    try:
        host = to_ascii(found[2].rstrip("."))
    except DomainError as exc:
        raise RecordError(f"ntamx {_shown(value)}: {printable(str(exc), 120)}") from None
    return NtaHost(int(found[1]), host)


@dataclass(frozen=True, slots=True)
class Nta7516Claim:
    """What a domain's TXT records say about NTA 7516, on one day."""

    record: Nta7516Record | None
    """The one record that counts, valid on the day; None when none does."""
    detail: str
    """Why the record counts or does not, for a person."""


def nta7516_claim(txts: Sequence[str], day: dt.date) -> Nta7516Claim:
    """The claim of a domain's TXT strings: exactly one readable record, valid on `day`."""
    found = nta7516_records(txts)
    if not found:
        return Nta7516Claim(None, NO_RECORD)
    if len(found) > 1:
        return Nta7516Claim(None, f"{len(found)} v=NTA7516-1 records: none counts")
    try:
        record = parse_record(found[0])
    except RecordError as exc:
        return Nta7516Claim(None, f"a v=NTA7516-1 record that cannot be read: {exc}")
    hosts = (", ".join(f"{h.preference} {h.host}" for h in record.hosts)
             or "the domain's MX hosts")
    said = f"provider {record.provider}, valid {record.validity()}, hosts {hosts}"
    if day < record.start:
        return Nta7516Claim(None, f"not valid yet ({said})")
    if day > record.end:
        return Nta7516Claim(None, f"expired ({said})")
    return Nta7516Claim(record, said)


def route(hosts: Sequence[str]) -> str:
    """The next hop for mail to these hosts, tried in this order, each by its address
    records (no MX lookup), port 25: `nta7516:[h1]:25,[h2]:25`. The most preferred hosts
    that fit in ROUTE_MAX characters (always the first: a name is at most 253)."""
    hops: list[str] = []
    for host in hosts:
        if hops and len(f"{TRANSPORT}:") + len(",".join([*hops, f"[{host}]:25"])) > ROUTE_MAX:
            break
        hops.append(f"[{host}]:25")
    return f"{TRANSPORT}:" + ",".join(hops)


def route_host(hop: str) -> str | None:
    """The host of one of a route's hops (`[host]:25`), as the TLS table is asked it."""
    found = re.fullmatch(r"\[([a-z0-9.-]+)\]:(?:25|smtp)", hop.lower())
    return found[1] if found else None
