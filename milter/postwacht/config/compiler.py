"""Compiling a policy file into the core's `Policy`.

`load()` reads a file (see `policyfile`), checks what the schema cannot (valid IDN,
duplicates, a domain both owned and retired, a successor that is not owned, CIDR
networks, reply placeholders), and compiles an immutable `Policy`. Either every problem
is reported, or a complete policy comes back; there is no half-loaded state. Every
default comes from the JSON Schema (`_default`), nowhere else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import hashlib
import ipaddress
import string
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import re2

from postwacht.config.policyfile import (
    KeyPath,
    PolicyDocument,
    PolicyError,
    Problem,
    format_path,
    read,
    schema,
)
from postwacht.core.classify import Marker, SenderGroup, Sensitivity, TextPattern
from postwacht.core.lookalike import LookalikeIndex
from postwacht.core.names import DomainError, parents, parse_nameserver, to_ascii
from postwacht.core.policy import (
    REPLY_FIELDS,
    Delivery,
    DigestPeriod,
    DnsSettings,
    DomainRule,
    DomainWatch,
    ExposedRecipients,
    FirstRecipient,
    IPNetwork,
    Language,
    LookalikeRule,
    NoticeSettings,
    NoticeSwitch,
    OnExpiry,
    Outbound,
    OwnedDomain,
    Partner,
    Policy,
    QuarantineSettings,
    RetiredDomain,
    SecureTransport,
)
from postwacht.core.relay import HopError, hop_is_address, next_hops
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


def load(path: str | Path) -> Policy:
    """Read, check and compile a policy file; raise `PolicyError` listing every problem."""
    with _no_cyclic_gc():
        document = read(path)
        problems = list(document.problems)
        compiled = _compile(document, problems) if isinstance(document.data, dict) else None
        del document  # nothing compiled refers to it: the index reuses its memory
        if problems or compiled is None:
            raise PolicyError(problems)
        return compiled.policy()


@dataclass(frozen=True)
class _Compiled:
    """A checked policy but for its look-alike index, the largest part of a large one:
    built last, once the document is gone, and only for a policy without problems."""

    fields: functools.partial[Policy]
    protected: list[str]
    lookalikes: LookalikeRule

    def policy(self) -> Policy:
        rule = self.lookalikes
        index = LookalikeIndex(self.protected, rule.max_distance, rule.min_length)
        return self.fields(_lookalike_index=index)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cycle collector while a policy is built.

    Building allocates millions of small objects for a large policy and none of them
    form cycles; each collection would walk them all again (seen: 100,000 domains
    loading several times slower with it on).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.cache
def _default(*keys: str) -> Any:
    """The schema's default at a key path (`[]` steps into a list's items)."""
    node: Any = schema()
    for key in keys:
        node = node["items"] if key == "[]" else node["properties"][key]
    return node["default"]


class _Compiler:
    """Checks and normalises one document, collecting problems as it goes.

    It also runs on a document the schema found fault with, so that one `check` shows
    every problem; values of the wrong shape are skipped (the schema reported them).
    """

    def __init__(self, document: PolicyDocument, problems: list[Problem]) -> None:
        self.document = document
        self.problems = problems
        self.seen: dict[str, KeyPath] = {}
        self.recurring: dict[str, str] = {}
        """Successors and hosts already converted: each may recur thousands of times."""
        self.under_owned: dict[str, bool] = {}
        self.mode = Mode.ENFORCE
        """The policy's top-level mode: every rule's unless it sets its own."""

    def mode_of(self, data: Any) -> Mode:
        """A rule section's `mode`, else the policy's."""
        value = data.get("mode") if isinstance(data, dict) else None
        return _enum(Mode, value) or self.mode

    def report(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.document.problem(path, message))

    def domain(self, value: Any, path: KeyPath, recurs: bool = False) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        known = self.recurring.get(value) if recurs else None
        if known is not None:
            return known
        try:
            name = to_ascii(value)
        except DomainError as exc:
            self.report(path, f"{exc}")
            return None
        if recurs:
            self.recurring[value] = name
        return name

    def listed(self, name: str, path: KeyPath, kind: str) -> bool:
        """Register a listed domain; report it when another entry has it already."""
        first = self.seen.get(name)
        if first is None:
            self.seen[name] = path
            return True
        where = f"{format_path(first)}, line {self.document.line(first)}"
        first_kind = str(first[0])
        if {kind, first_kind} == {"owned_domains", "retired_domains"}:
            message = f"{name} is both owned and retired ({where}); expected one or the other"
        else:
            message = f"{name} is listed twice (also at {where})"
        self.report(path, message)
        return False


def _list(data: Any, key: str) -> list[Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


def _entries(data: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    return [(i, e) for i, e in enumerate(_list(data, key)) if isinstance(e, dict)]


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _bool(value: Any, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def _choice(value: Any, default: Action) -> Action:
    found = _enum(Action, value)
    return default if found is None else found


_E = TypeVar("_E", Action, PartnerTransport, Accepted, Rule, Language, DigestPeriod, Mode,
             Scope, Match, RelayTls)


def _enum(kind: type[_E], value: Any) -> _E | None:
    """The member named by `value`, or None; a dict lookup, as `kind(value)` without the
    exception it raises for a wrong or absent value (100,000 times in a large policy)."""
    try:
        found: _E | None = _members(kind).get(value)
    except TypeError:  # unhashable: a list or a mapping where a name belongs
        return None
    return found


@functools.cache
def _members(kind: type[StrEnum]) -> dict[Any, Any]:
    return {member.value: member for member in kind.__members__.values()}


def _compile(document: PolicyDocument, problems: list[Problem]) -> _Compiled:
    c = _Compiler(document, problems)
    data: dict[str, Any] = document.data
    c.mode = _enum(Mode, data.get("mode", _default("mode"))) or Mode.ENFORCE
    table: dict[str, DomainRule] = {}

    owned: list[str] = []
    for i, value in enumerate(_list(data, "owned_domains")):
        path: KeyPath = ("owned_domains", i)
        entry = value if isinstance(value, dict) else {"domain": value}
        name = c.domain(entry.get("domain"), (*path, "domain") if value is entry else path)
        if name and c.listed(name, path, "owned_domains"):
            owned.append(name)
            table[name] = OwnedDomain(
                name,
                _hosts(c, entry, "nameservers", path),
                _hosts(c, entry, "mx", path),
            )
    owned_names = frozenset(owned)
    retired = [_retired(c, i, entry, owned, owned_names)
               for i, entry in _entries(data, "retired_domains")]
    partners = [_partner(c, i, entry) for i, entry in _entries(data, "partners")]
    for rule in (*retired, *partners):
        if rule is not None:
            table[rule.domain] = rule
    _check_nesting(c, table)

    lookalikes = _lookalike_rule(c, _mapping(data, "lookalikes"))
    literals = data.get("address_literals")
    literals_action = literals.get("action") if isinstance(literals, dict) else literals
    notices = _notices(c, data.get("notices"), owned)
    sensitivity = _sensitivity(c, _mapping(data, "sensitive"))
    protect = lookalikes.protect
    protected = [
        *(owned if "owned" in protect else []),
        *(r.domain for r in retired if r is not None and "retired" in protect),
        *(p.domain for p in partners if p is not None and "partners" in protect),
    ]
    fields = functools.partial(
        Policy,
        source=document.file,
        checksum=hashlib.sha256(document.raw).hexdigest(),
        organisation=str(data.get("organisation", "")),
        owned=tuple(owned),
        retired=tuple(r for r in retired if r is not None),
        partners=tuple(p for p in partners if p is not None),
        lookalikes=lookalikes,
        outbound=_outbound(c, _mapping(data, "outbound")),
        address_literals=_choice(literals_action, Action(_default("address_literals"))),
        address_literals_mode=c.mode_of(literals),
        on_dns_failure=_choice(data.get("on_dns_failure"), Action(_default("on_dns_failure"))),
        local_on_reject=(
            Action.REJECT
            if _mapping(data, "local_submissions").get(
                "on_reject", _default("local_submissions", "on_reject")) == "bounce"
            else Action.QUARANTINE
        ),
        log_local_parts=_mapping(data, "logging").get(
            "local_parts", _default("logging", "local_parts")) is True,
        sensitivity=sensitivity,
        secure_transport=_secure_transport(c, data.get("secure_transport")),
        delivery=_delivery(c, data.get("delivery"), _mapping(data, "secure_transport")),
        dns=_dns(c, _mapping(data, "dns")),
        domain_watch=_domain_watch(c, data.get("domain_watch")),
        quarantine=_quarantine(_mapping(data, "quarantine")),
        notices=notices,
        first_recipient=_first_recipient(c, _mapping(data, "misaddressing"), notices,
                                         sensitivity.senders),
        exposed_recipients=_exposed_recipients(c, _mapping(data, "misaddressing")),
        _table=MappingProxyType(table),
    )
    return _Compiled(fields, protected, lookalikes)


def _retired(
    c: _Compiler, i: int, entry: dict[str, Any], owned: list[str], owned_names: frozenset[str]
) -> RetiredDomain | None:
    path: KeyPath = ("retired_domains", i, "domain")
    name = c.domain(entry.get("domain"), path)
    successor = c.domain(entry.get("successor"), ("retired_domains", i, "successor"), True)
    if successor and not _under_owned(c, successor, owned_names):
        c.report(
            ("retired_domains", i, "successor"),
            f"successor {successor} is not an owned domain "
            f"(expected one of owned_domains: {', '.join(owned)})",
        )
    reply = entry.get("reply")
    if isinstance(reply, str):
        _check_reply(c, reply, ("retired_domains", i, "reply"))
    since = None
    if "since" in entry:
        with contextlib.suppress(TypeError, ValueError):  # the schema reported a bad date
            since = dt.date.fromisoformat(entry["since"])
    if not name or not c.listed(name, path, "retired_domains"):
        return None
    action = _choice(entry.get("action"), _default_action("retired_domains", "[]", "action"))
    return RetiredDomain(name, since, successor, action, reply if isinstance(reply, str) else None,
                         c.mode_of(entry))


def _under_owned(c: _Compiler, name: str, owned_names: frozenset[str]) -> bool:
    known = c.under_owned.get(name)
    if known is None:
        known = c.under_owned[name] = any(p in owned_names for p in parents(name))
    return known


@functools.cache
def _default_action(*keys: str) -> Action:
    return Action(_default(*keys))


def _partner(c: _Compiler, i: int, entry: dict[str, Any]) -> Partner | None:
    path: KeyPath = ("partners", i, "domain")
    name = c.domain(entry.get("domain"), path)
    transport = _enum(PartnerTransport, entry.get("transport"))
    if not name or not c.listed(name, path, "partners") or transport is None:
        return None  # a missing or unknown transport: the schema reported it
    return Partner(name, transport)


def _hosts(c: _Compiler, entry: dict[str, Any], key: str, path: KeyPath) -> frozenset[str]:
    hosts = set()
    for j, value in enumerate(_list(entry, key)):
        name = c.domain(value, (*path, key, j), True)
        if name:
            hosts.add(name)
    return frozenset(hosts)


def _check_nesting(c: _Compiler, table: dict[str, DomainRule]) -> None:
    """An owned or partner domain under a retired one is controlled by whoever holds that."""
    retired = {name for name, rule in table.items() if isinstance(rule, RetiredDomain)}
    if not retired:
        return
    for name, rule in table.items():
        if isinstance(rule, RetiredDomain):
            continue
        dot = name.find(".")
        while dot >= 0:  # each parent, longest first, as `parents` gives them
            parent = name[dot + 1 :]
            if parent in retired:
                kind = "owned" if isinstance(rule, OwnedDomain) else "partner"
                c.report(
                    c.seen[name],
                    f"{kind} domain {name} lies under retired domain {parent}: whoever "
                    f"holds {parent} controls it (remove one of them)",
                )
                break
            dot = name.find(".", dot + 1)


def _check_reply(c: _Compiler, reply: str, path: KeyPath) -> None:
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(reply)
                  if f is not None]
    except ValueError as exc:
        c.report(path, f"reply is not a valid template: {exc} (write {{{{ and }}}} for braces)")
        return
    for name, spec, conversion in fields:
        if name not in REPLY_FIELDS:
            allowed = ", ".join("{" + f + "}" for f in REPLY_FIELDS)
            c.report(path, f"unknown placeholder {{{name}}} (expected one of {allowed})")
            return
        if spec or conversion:
            # `{domain:>99999999}` would build 100 MB for every refusal.
            c.report(path, f"placeholder {{{name}}} takes no format or conversion "
                     f"(write {{{name}}})")
            return
    try:
        reply.format(**dict.fromkeys(REPLY_FIELDS, "example"))
    except (ValueError, IndexError, KeyError) as exc:
        c.report(path, f"reply cannot be filled in: {exc} (write placeholders as {{domain}})")


def _lookalike_rule(c: _Compiler, data: dict[str, Any]) -> LookalikeRule:
    ignore: set[str] = set()
    for i, value in enumerate(_list(data, "ignore")):
        name = c.domain(value, ("lookalikes", "ignore", i))
        if name:
            ignore.add(name)
    protect = data.get("protect", _default("lookalikes", "protect"))
    return LookalikeRule(
        protect=frozenset(p for p in protect if isinstance(p, str))
        if isinstance(protect, list) else frozenset(),
        max_distance=_whole(data, "max_distance", 0, 2),
        min_length=_whole(data, "min_length", 1, 63),
        action=_choice(data.get("action"), Action(_default("lookalikes", "action"))),
        ignore=frozenset(ignore),
        mode=c.mode_of(data),
    )


def _whole(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    default: int = _default("lookalikes", key)
    return default


def _outbound(c: _Compiler, data: dict[str, Any]) -> Outbound:
    networks: list[IPNetwork] = []
    for i, value in enumerate(_list(data, "networks")):
        if not isinstance(value, str):
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            hint = ""
            try:
                hint = f" (did you mean {ipaddress.ip_network(value, strict=False)}?)"
            except ValueError:
                hint = " (expected a network such as 10.0.0.0/8 or 2001:db8::/32)"
            c.report(("outbound", "networks", i), f"{exc}{hint}")
    authenticated = data.get("authenticated", _default("outbound", "authenticated"))
    return Outbound(
        authenticated=authenticated is True,
        networks=tuple(networks),
        daemon_names=frozenset(str(n) for n in _list(data, "daemon_names")),
    )


def _marker_pattern(c: _Compiler, pattern: str, path: KeyPath) -> TextPattern | None:
    """Compile with RE2: matching time grows linearly with the header, whatever the
    pattern. Python's `re` backtracks: `^(a+)+$` against one crafted Subject would hold
    every milter thread for minutes."""
    options = re2.Options()
    options.log_errors = False  # the problem is reported below, for a person
    try:
        compiled: TextPattern = re2.compile(pattern, options=options)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        c.report(path, f"{pattern!r} is not a regular expression this filter can use: {why} "
                 "(RE2 syntax: no look-around, no back-references)")
        return None
    return compiled


def _sensitivity(c: _Compiler, data: dict[str, Any]) -> Sensitivity:
    markers: list[Marker] = []
    for i, entry in _entries(data, "markers"):
        path: KeyPath = ("sensitive", "markers", i)
        means = entry.get("means") == "sensitive"  # required: no default
        if "subject" in entry and "header" not in entry and "pattern" not in entry:
            header, pattern = "subject", entry["subject"]
            label = f"subject /{pattern}/"
        elif "header" in entry and "pattern" in entry and "subject" not in entry:
            header, pattern = str(entry["header"]).lower(), entry["pattern"]
            label = f"header {header} /{pattern}/"
        else:
            c.report(path, "a marker needs 'subject', or 'header' and 'pattern'")
            continue
        compiled = _marker_pattern(c, str(pattern), path)
        if compiled is None:
            continue
        markers.append(Marker(means, compiled, header, label))
    senders: list[SenderGroup] = []
    for i, entry in _entries(data, "senders"):
        senders.append(_address_group(
            c, _list(entry, "addresses"), ("sensitive", "senders", i, "addresses"),
            entry.get("means") == "sensitive", str(entry.get("name", i))))
    scan = data.get("max_scan_bytes")
    default_scan: int = _default("sensitive", "max_scan_bytes")
    return Sensitivity(
        default_sensitive=data.get("default", _default("sensitive", "default")) == "sensitive",
        markers=tuple(markers),
        senders=tuple(senders),
        detectors=tuple(str(d) for d in _list(data, "detectors")),
        max_scan_bytes=scan if isinstance(scan, int) and scan >= 1024 else default_scan,
    )


def _address_group(c: _Compiler, values: list[Any], path: KeyPath, means: bool = False,
                   label: str = "") -> SenderGroup:
    """Addresses and @domains listed at `path`."""
    addresses: set[str] = set()
    domains: set[str] = set()
    for j, value in enumerate(values):
        local, at, domain = str(value).rpartition("@")
        name = c.domain(domain, (*path, j)) if at else None
        if name is None:
            if not at:
                c.report((*path, j), f"{value!r} is neither an address nor an @domain")
            continue
        if local:
            addresses.add(f"{local.lower()}@{name}")
        else:
            domains.add(name)
    return SenderGroup(means, frozenset(addresses), frozenset(domains), label)


def _first_recipient(c: _Compiler, data: dict[str, Any], notices: NoticeSettings | None,
                     groups: tuple[SenderGroup, ...]) -> FirstRecipient | None:
    section = data.get("first_recipient")
    if not isinstance(section, dict):
        return None
    keys = ("misaddressing", "first_recipient")
    path: KeyPath = keys
    mode = c.mode_of(section)
    if mode is Mode.ENFORCE and "notices" not in c.document.data:
        c.report(path, "the sender confirms a first recipient by a link in the notice: add "
                       "a notices section (from, review_url), or set mode: monitor")
    elif (mode is Mode.ENFORCE and notices is not None
          and not notices.notifies_sender(Rule.FIRST_RECIPIENT)):
        c.report(path, "the sender confirms a first recipient by a link in the notice, but "
                       "notices.sender (or notices.rules.first-recipient.sender) is false")
    return FirstRecipient(
        scope=_enum(Scope, section.get("scope")) or Scope(_default(*keys, "scope")),
        match=_enum(Match, section.get("match")) or Match(_default(*keys, "match")),
        known=_address_group(c, _list(section, "known"), (*path, "known")),
        exempt=_exempt(c, _list(section, "exempt_senders"), (*path, "exempt_senders"), groups),
        forget_after_days=float(_number(section, "forget_after_days", *keys,
                                        "forget_after_days")),
        link_valid_hours=float(_number(section, "link_valid_hours", *keys,
                                       "link_valid_hours")),
        mode=mode,
    )


def _exempt(c: _Compiler, values: list[Any], path: KeyPath,
            groups: tuple[SenderGroup, ...]) -> SenderGroup:
    """Addresses, @domains, and the names of `sensitive.senders` groups."""
    named = {group.label: group for group in groups}
    listed = _address_group(c, [v for v in values if "@" in str(v)], path)
    addresses, domains = set(listed.addresses), set(listed.domains)
    for i, value in enumerate(values):
        if "@" in str(value):
            continue
        group = named.get(str(value))
        if group is None:
            c.report((*path, i), f"{value!r} is neither an address, an @domain nor the name "
                     f"of a sensitive.senders group (expected one of: "
                     f"{', '.join(sorted(named)) or 'no groups are defined'})")
            continue
        addresses |= group.addresses
        domains |= group.domains
    return SenderGroup(False, frozenset(addresses), frozenset(domains), "exempt_senders")


def _exposed_recipients(c: _Compiler, data: dict[str, Any]) -> ExposedRecipients | None:
    section = data.get("exposed_recipients")
    if not isinstance(section, dict):
        return None
    path = ("misaddressing", "exposed_recipients")
    most = _number(section, "max_outside", *path, "max_outside")
    reply = section.get("reply")
    return ExposedRecipients(
        max_outside=int(most) if isinstance(most, int) and most >= 1 else int(
            _default(*path, "max_outside")),
        action=Action.REJECT if section.get("action") == "reject" else Action.QUARANTINE,
        reply=reply if isinstance(reply, str) else None,
        mode=c.mode_of(section),
    )


def _secure_transport(c: _Compiler, data: Any) -> SecureTransport | None:
    if not isinstance(data, dict):
        return None
    accept = _list(data, "accept") or _default("secure_transport", "accept")
    otherwise = _choice(data.get("otherwise"), Action(_default("secure_transport", "otherwise")))
    route = data.get("route")
    if otherwise is Action.ROUTE and not isinstance(route, str):
        c.report(("secure_transport", "otherwise"),
                 "otherwise: route needs a 'route' next hop (e.g. relay:[securemail.example]:587)")
    reply = data.get("reply")
    nta = data.get("nta7516")
    return SecureTransport(
        accept=frozenset(a for a in (_enum(Accepted, v) for v in accept) if a is not None),
        min_tls=str(data.get("min_tls", _default("secure_transport", "min_tls"))),
        otherwise=otherwise,
        route=route if isinstance(route, str) else None,
        reply=reply if isinstance(reply, str) else None,
        mode=c.mode_of(data),
        nta7516_require_dnssec=_bool(
            nta.get("require_dnssec") if isinstance(nta, dict) else None,
            _default("secure_transport", "nta7516", "require_dnssec")),
    )


def _delivery(c: _Compiler, data: Any, secure: dict[str, Any]) -> Delivery | None:
    if not isinstance(data, dict) or not isinstance(data.get("relay"), str):
        return None
    try:
        relay = next_hops(data["relay"])
    except HopError as exc:
        c.report(("delivery", "relay"), str(exc))
        relay = ()
    else:
        if not relay:
            c.report(("delivery", "relay"), "names no next hop (expected e.g. [smtp.example]:587)")
    tls = _enum(RelayTls, data.get("tls")) or RelayTls(_default("delivery", "tls"))
    addresses = [hop for hop in relay if hop_is_address(hop)]
    if addresses and tls.verified:
        c.report(("delivery", "tls"),
                 f"{tls} cannot be had from {', '.join(addresses)}: Postfix verifies a "
                 "certificate against a name, never an address (name the relay by its host "
                 "name, or say tls: encrypt, which never counts as verified)")
    looked_up = [hop for hop in relay if not hop.startswith("[")]
    if looked_up and tls is RelayTls.VERIFY:
        c.report(("delivery", "tls"),
                 f"verify trusts the MX names DNS gives for {', '.join(looked_up)}, which "
                 "anyone on the path can forge: use secure or dane, or write the relay in "
                 "brackets ([host]:port) so that no MX is looked up")
    route = secure.get("route")
    hop = route.partition(":")[2] if isinstance(route, str) else ""
    try:
        route_hops = next_hops(hop)
    except HopError:
        route_hops = ()
    if any(h in relay for h in route_hops):
        c.report(("delivery", "relay"),
                 f"{hop} is also secure_transport.route, the secure-mail provider: the TLS "
                 "table must answer for it at the level the route needs, not the relay's")
    return Delivery(
        relay=relay, tls=tls,
        trusted_to_enforce=data.get("trusted_to_enforce") is True,
        min_tls=str(secure.get("min_tls", _default("secure_transport", "min_tls"))),
    )


def _dns(c: _Compiler, data: dict[str, Any]) -> DnsSettings:
    resolvers: list[tuple[str, int]] = []
    for i, value in enumerate(_list(data, "resolvers")):
        try:
            host, port = parse_nameserver(str(value))
        except ValueError:
            c.report(("dns", "resolvers", i),
                     f"{value!r} is not ADDRESS or ADDRESS:PORT (e.g. 127.0.0.1:53)")
            continue
        resolvers.append((host, port))
    timeout = _number(data, "timeout", "dns", "timeout")
    sts_port = _number(data, "mta_sts_port", "dns", "mta_sts_port")
    return DnsSettings(resolvers=tuple(resolvers), timeout=float(timeout),
                       mta_sts_port=int(sts_port))


def _number(data: dict[str, Any], key: str, *schema_path: str) -> int | float:
    """A number the schema allows at `key`, else the schema's default."""
    value = data.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    default: int | float = _default(*schema_path)
    return default


def _quarantine(data: dict[str, Any]) -> QuarantineSettings:
    days = _number(data, "retention_days", "quarantine", "retention_days")
    if not 0 < days <= 3650:  # the schema (or the reader, for NaN) reported it
        days = _default("quarantine", "retention_days")
    on_expiry = data.get("on_expiry", _default("quarantine", "on_expiry"))
    return QuarantineSettings(
        retention_days=float(days),
        on_expiry=OnExpiry.DELETE if on_expiry == "delete" else OnExpiry.RETURN,
    )


def _domain_watch(c: _Compiler, section: Any) -> DomainWatch:
    """Settings for `postwacht domains audit` even without the section; the daemon runs
    the watch only when the policy has it."""
    data = section if isinstance(section, dict) else {}
    rdap = _mapping(data, "rdap")
    base, bootstrap = rdap.get("base_url"), rdap.get("bootstrap_file")
    return DomainWatch(
        enabled=isinstance(section, dict),
        rdap_base_url=base if isinstance(base, str) else None,
        bootstrap_file=bootstrap if isinstance(bootstrap, str) else None,
        rdap_timeout=float(_number(rdap, "timeout", "domain_watch", "rdap", "timeout")),
        interval=int(_number(data, "interval", "domain_watch", "interval")),
        expiry_warning_days=int(_number(data, "expiry_warning_days", "domain_watch",
                                        "expiry_warning_days")),
        hold_on_control_loss=data.get(
            "hold_on_control_loss", _default("domain_watch", "hold_on_control_loss")) is True,
        mode=c.mode_of(data),
    )


_LOCAL_PART = re2.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
"""A dot-atom local part (RFC 5322): nothing that needs quoting on a command line or in
a header."""


def _notices(c: _Compiler, section: Any, owned: list[str]) -> NoticeSettings | None:
    if not isinstance(section, dict):
        return None  # absent (no notices), or of the wrong shape (the schema reported it)
    sender_address = _notice_from(c, section.get("from"), owned)
    review_url = _review_url(c, section.get("review_url"))
    rules: dict[Rule, NoticeSwitch] = {}
    sender = section.get("sender", _default("notices", "sender")) is True
    for name, entry in _mapping(section, "rules").items():
        rule = _enum(Rule, name)
        if rule is None or not isinstance(entry, dict):
            continue  # the schema named the unknown rule, or the wrong shape
        rules[rule] = NoticeSwitch(
            sender=entry["sender"] is True if "sender" in entry else sender,
            digest=entry.get("digest", _default_switch("digest")) is True)
    if sender_address is None or review_url is None:
        return None
    language = _enum(Language, section.get("language", _default("notices", "language")))
    period = section.get("digest", _default("notices", "digest"))
    # YAML 1.1 reads an unquoted `off` as false; the schema allows both.
    digest = DigestPeriod.OFF if period is False else _enum(DigestPeriod, period)
    return NoticeSettings(
        sender_address=sender_address,
        language=language or Language(_default("notices", "language")),
        review_url=review_url, sender=sender,
        digest=digest or DigestPeriod(_default("notices", "digest")),
        rules=MappingProxyType(rules))


def _default_switch(key: str) -> Any:
    return schema()["definitions"]["notice_switch"]["properties"][key]["default"]


def _notice_from(c: _Compiler, value: Any, owned: list[str]) -> str | None:
    path: KeyPath = ("notices", "from")
    if not isinstance(value, str) or "@" not in value:
        return None  # the schema reported it
    local, _, domain = value.rpartition("@")
    if _LOCAL_PART.fullmatch(local) is None:
        c.report(path, f"{value!r}: the part before @ must be plain (letters, digits, "
                 "dots and !#$%&'*+/=?^_`{|}~-; no spaces or quotes)")
        return None
    name = c.domain(domain, path)
    if name is None:
        return None
    if not any(p in owned for p in parents(name)):
        c.report(path, f"{value} is not in an owned domain (expected an address at one "
                 f"of owned_domains: {', '.join(owned)}); notices must never leave the "
                 "organisation")
        return None
    return f"{local}@{name}"


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _review_url(c: _Compiler, value: Any) -> str | None:
    path: KeyPath = ("notices", "review_url")
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        return None  # the schema reported it
    try:
        url = urllib.parse.urlsplit(value)
        host = url.hostname or ""
        _ = url.port  # a port that is not a number raises here
    except ValueError as exc:
        c.report(path, f"{value!r} is not a URL: {exc} (expected https://HOST/PATH/)")
        return None
    if not host:
        c.report(path, f"{value!r} is not a web address (expected https://HOST/PATH/)")
        return None
    if url.username is not None or url.query or url.fragment or any(
            ch.isspace() or not ch.isprintable() for ch in value):
        c.report(path, f"{value!r} must be a plain base URL: no user name, query (?), "
                 "fragment (#) or spaces (expected https://HOST/PATH/)")
        return None
    if url.scheme == "http" and not _loopback(host):
        c.report(path, f"{value!r}: links sent by mail must use https (http only for a "
                 "loopback host such as 127.0.0.1, for a test)")
        return None
    return value if value.endswith("/") else value + "/"


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
