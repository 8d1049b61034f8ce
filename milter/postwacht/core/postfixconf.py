"""What Postfix's configuration must say for the filter to see every message, and where
it contradicts the policy: a judgement over `postconf` output, for `postwacht doctor`.

The input is text Postfix printed (`postconf`, `postconf -M`, `postconf -P`) and the
policy; the output is a list of findings, each naming the setting, what is wrong, and the
`postconf` change that mends it when one can. Nothing here runs a command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from postwacht.core.nta7516 import TRANSPORT as NTA7516
from postwacht.core.policy import Policy
from postwacht.core.relay import HopError, hop_is_address, next_hops, relaying
from postwacht.core.vocabulary import Accepted, Mode, RelayTls

HEADER_CHECKS = "postwacht_header_checks"
"""The file in Postfix's configuration directory where `make install` puts
deploy/postfix/header_checks (routing by header)."""
SMTP_HEADER_CHECKS = "postwacht_smtp_header_checks"
"""... and deploy/postfix/smtp_header_checks (our headers stay inside)."""
RCPT_MACROS = "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"
"""Postfix's default `milter_rcpt_macros`."""
SUBMISSION_SERVICES = frozenset({"submission", "submissions", "smtps", "587", "465"})
"""master.cf names of the services a mail client submits through."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The filter's two sockets, as Postfix names them (`inet:127.0.0.1:8894`,
    `unix:postwacht/milter.sock`), and Postfix's configuration directory."""

    milter: str
    socketmap: str
    config: str = "/etc/postfix"

    @property
    def header_checks(self) -> str:
        return f"regexp:{self.config}/{HEADER_CHECKS}"

    @property
    def smtp_header_checks(self) -> str:
        return f"regexp:{self.config}/{SMTP_HEADER_CHECKS}"

    @property
    def transport_map(self) -> str:
        return f"socketmap:{self.socketmap}:transport"

    @property
    def tls_map(self) -> str:
        return f"socketmap:{self.socketmap}:tls"

    @property
    def nta7516_tls_map(self) -> str:
        return f"socketmap:{self.socketmap}:{NTA7516}"

    def nta7516_service(self, protocols: str) -> dict[str, str]:
        """The `-o` settings of the `nta7516` transport: verified TLS (`secure`) whatever
        the table answers or fails to, at least TLS `protocols`, DANE where it can, and
        no fallback relay after the NTA 7516 hosts."""
        return {"smtp_tls_security_level": "secure",
                "smtp_tls_mandatory_protocols": protocols,
                "smtp_tls_policy_maps": self.nta7516_tls_map,
                "smtp_dns_support_level": "dnssec",
                "smtp_fallback_relay": ""}

    def milter_entry(self, settings: Mapping[str, str] | None = None,
                     compact: bool = False) -> str:
        """The filter's `smtpd_milters` item: its settings with default_action=tempfail;
        `compact` without blanks, as master.cf's `-o` (and `postconf -P`) takes it."""
        given = {**(settings or {}), "default_action": "tempfail"}
        parts = [self.milter, *(f"{k}={v}" for k, v in given.items())]
        return "{" + ",".join(parts) + "}" if compact else "{ " + ", ".join(parts) + " }"


@dataclass(frozen=True, slots=True)
class Service:
    """One master.cf service: `name/type`, its command, and its `-o` settings."""

    name: str
    type: str
    command: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}/{self.type}"

    @property
    def port(self) -> str:
        """The port an inet service listens on: `submission`, `127.0.0.1:2525` -> 2525."""
        return self.name.rpartition(":")[2]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to mend (or, when not `must`, to know)."""

    where: str
    """`main.cf: smtpd_milters`, `master.cf: submission/inet`, `policy`, ..."""
    problem: str
    fix: str
    """What to do, for a person."""
    postconf: tuple[str, ...] = ()
    """The arguments to `postconf` that mend it (after `-c DIR`); empty: by hand."""
    must: bool = True
    """False: worth knowing, but the filter does what it promises without it."""
    needs_filter: bool = False
    """The change makes Postfix wait on the filter: apply it only while the filter answers."""
    needs_file: str = ""
    """A file the change names: apply it only once the file is there."""


def parse_main(text: str) -> dict[str, str]:
    """`postconf` output (`name = value` lines) as a dict."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            settings[name.strip()] = value.strip()
        elif line.rstrip().endswith(" ="):
            settings[line.rstrip()[:-2].strip()] = ""
    return settings


def parse_master(services: str, params: str) -> list[Service]:
    """`postconf -M` (one service a line) and `postconf -P` (`name/type/param = value`)."""
    overrides: dict[str, dict[str, str]] = {}
    for line in params.splitlines():
        key, sep, value = line.partition(" = ")
        if not sep:
            key, sep, value = line.rstrip().partition(" =")
        if not sep or key.count("/") < 2:
            continue
        name, kind, param = key.strip().rsplit("/", 2)
        overrides.setdefault(f"{name}/{kind}", {})[param] = value.strip()
    found = []
    for line in services.splitlines():
        fields = line.split()
        if len(fields) < 8 or line.startswith((" ", "\t", "#")):
            continue
        name, kind, command = fields[0], fields[1], fields[7]
        found.append(Service(name, kind, command, overrides.get(f"{name}/{kind}", {})))
    return found


def split_list(value: str) -> list[str]:
    """A Postfix list: items separated by commas or blanks, `{ ... }` kept whole."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        items.append("".join(current))
    return items


def milter_address(item: str) -> tuple[str, dict[str, str]]:
    """A `smtpd_milters` item as its address and its per-milter settings."""
    if not item.startswith("{"):
        return item, {}
    parts = item.strip("{} \t").replace(",", " ").split()
    settings = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        settings[name.strip()] = value.strip()
    return (parts[0] if parts else ""), settings


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[127.0.0.1]"})
"""Names of 127.0.0.1, where the filter listens (::1 is another address)."""


def same_socket(address: str, ours: str) -> bool:
    """Whether a milter address names our socket, however it is spelt (`inet:localhost:
    8894` is `inet:127.0.0.1:8894`)."""
    if address == ours:
        return True
    kind, _, where = address.partition(":")
    our_kind, _, our_where = ours.partition(":")
    if kind != our_kind or kind not in ("inet", "inet6"):
        return False
    host, _, port = where.rpartition(":")
    our_host, _, our_port = our_where.rpartition(":")
    return port == our_port and host in _LOOPBACK and our_host in _LOOPBACK


def _with_ours(items: list[str], ours: str, is_ours: str, sep: str = ", ") -> str:
    """The list with our entry in place of any earlier form of it, first."""
    rest = [i for i in items if not same_socket(milter_address(i)[0], is_ours)]
    return sep.join([ours, *rest])


def diagnose(main: Mapping[str, str], services: Sequence[Service], policy: Policy,
             endpoints: Endpoints, submission: frozenset[str] = frozenset()) -> list[Finding]:
    """Everything in Postfix's configuration that keeps the filter from seeing a message
    or from making its decision stick, and what mends it. `submission` names services
    (`name` or `name/type`) that mail clients submit through, beside the usual ones."""
    findings = [*_milters(main, services, endpoints), *_tables(main, policy, endpoints),
                *_services(main, services, policy, SUBMISSION_SERVICES | submission),
                *_service_relays(services, policy),
                *_nta7516(main, services, policy, endpoints)]
    findings += _macros(main, policy)
    if main.get("enable_long_queue_ids", "no") != "yes":
        findings.append(Finding(
            "main.cf: enable_long_queue_ids",
            "short queue ids are reused, so a queue id in a record, a log line or a review "
            "could name two messages",
            "turn long queue ids on (renames nothing that is queued)",
            ("-e", "enable_long_queue_ids = yes")))
    return findings


MACROS = (
    ("milter_rcpt_macros", RCPT_MACROS.split(), "the filter cannot tell a recipient smtpd "
     "refused itself (port 25 refuses a retired domain through the transport table) from "
     "one it accepted: it does not report such refusals, and may hold a message for a "
     "recipient it does not have"),
    ("milter_end_of_data_macros", ["i"], "the filter gets no queue id at the end of a "
     "message: every message it would hold is tempfailed instead"),
)
"""The macros the filter reads, by Postfix setting, and what is lost without them."""


def _macros(main: Mapping[str, str], policy: Policy) -> list[Finding]:
    wanted = [*MACROS]
    if policy.outbound.daemon_names:
        wanted.append(("milter_connect_macros", ["{daemon_name}"], "mail through a service "
                       "marked in outbound.daemon_names is not recognised as outbound"))
    if policy.outbound.authenticated:
        wanted.append(("milter_mail_macros", ["{auth_authen}"], "a sender who logged in is "
                       "not recognised as outbound"))
    found = []
    for name, needed, lost in wanted:
        if name not in main:
            continue  # Postfix's default, which has them all
        told = split_list(main[name])
        missing = [m for m in needed if m not in told]
        if missing:
            found.append(Finding(
                f"main.cf: {name}", f"lacks {' '.join(missing)}: {lost}", "add them",
                ("-e", f"{name} = {' '.join([*told, *missing])}")))
    return found


def _milters(main: Mapping[str, str], services: Sequence[Service], endpoints: Endpoints
             ) -> list[Finding]:
    found = []
    default = main.get("milter_default_action", "tempfail")
    for name, who in (("smtpd_milters", "mail submitted over SMTP"),
                      ("non_smtpd_milters", "mail submitted with sendmail(1)")):
        items = split_list(main.get(name, ""))
        mine = [milter_address(i)[1] for i in items
                if same_socket(milter_address(i)[0], endpoints.milter)]
        # Our entry keeps the settings it has (a timeout, say), with tempfail.
        entry = endpoints.milter_entry(mine[0] if mine else None)
        fixed = ("-e", f"{name} = {_with_ours(items, entry, endpoints.milter)}")
        if not mine:
            found.append(Finding(
                f"main.cf: {name}", f"{who} does not pass the filter ({endpoints.milter} "
                "is not listed)", "list the filter with default_action=tempfail", fixed,
                needs_filter=True))
        elif mine[0].get("default_action", default) != "tempfail":
            found.append(Finding(
                f"main.cf: {name}", f"{endpoints.milter} would be passed by (default_action="
                f"{mine[0].get('default_action', default)}) while the filter is down: mail "
                "would leave unchecked or bounce", "give it default_action=tempfail", fixed,
                needs_filter=True))
    if default != "tempfail":
        # Our own entry carries default_action=tempfail (above); this one is how other
        # milters fail, and making them fail closed could stop mail: a person decides.
        found.append(Finding(
            "main.cf: milter_default_action",
            f"is {default}: a milter listed without its own default_action lets mail "
            "through (or bounces it) when it cannot be reached",
            "give every milter that must not be passed by default_action=tempfail",
            must=False))
    overrides = [o for o in split_list(main.get("receive_override_options", ""))
                 if o != "no_milters"]
    if "no_milters" in split_list(main.get("receive_override_options", "")):
        found.append(Finding(
            "main.cf: receive_override_options", "holds no_milters: no milter sees any mail",
            "remove no_milters", ("-e", f"receive_override_options = {', '.join(overrides)}"),
            needs_filter=True))
    if main.get("smtpd_milter_maps", ""):
        found.append(Finding(
            "main.cf: smtpd_milter_maps", f"is {main['smtpd_milter_maps']}: it can turn the "
            "milters off (DISABLE) or replace them for some clients",
            "make sure it never does so for a client your users send through", must=False))
    for service in services:
        found += _service_milters(service, endpoints)
    return found


def _service_milters(service: Service, endpoints: Endpoints) -> list[Finding]:
    """A service's own `-o` settings that keep the filter away. A content filter's
    re-injection listener turns milters off on purpose (they saw the mail before): so
    these are notes for a person, never changed by `--apply`."""
    found = []
    where = f"master.cf: {service.key}"
    for name in ("smtpd_milters", "non_smtpd_milters"):
        value = service.params.get(name)
        if value is not None and not any(same_socket(milter_address(i)[0], endpoints.milter)
                                         for i in split_list(value)):
            listed = _with_ours(split_list(value), endpoints.milter_entry(compact=True),
                                endpoints.milter, ",")
            found.append(Finding(
                where, f"-o {name}={value} leaves the filter out of this service",
                f"if your users' mail can arrive here, list the filter (-o {name}={listed}); "
                "a content filter's re-injection listener is fine as it is", must=False))
    if "no_milters" in split_list(service.params.get("receive_override_options", "")):
        found.append(Finding(
            where, "-o receive_override_options holds no_milters: no milter sees mail here",
            "if your users' mail can arrive here, remove no_milters; a content filter's "
            "re-injection listener is fine as it is", must=False))
    value = service.params.get("smtpd_milters")
    action = service.params.get("milter_default_action")
    if value is not None and action not in (None, "tempfail"):
        mine = [milter_address(i)[1] for i in split_list(value)
                if same_socket(milter_address(i)[0], endpoints.milter)]
        if mine and mine[0].get("default_action", action) != "tempfail":
            found.append(Finding(
                where, f"-o milter_default_action={action}: mail here passes the filter "
                "while it cannot be reached", "give the filter's entry "
                "default_action=tempfail in this service's -o smtpd_milters"))
    return found


def _first_map(main: Mapping[str, str], name: str, ours: str, why: str) -> Finding | None:
    items = split_list(main.get(name, ""))
    if items[:1] == [ours]:
        return None
    rest = [i for i in items if i != ours]
    problem = (f"{ours} is not listed: {why}" if ours not in items else
               f"{ours} comes after {items[0]}, whose answer wins: {why}")
    return Finding(f"main.cf: {name}", problem, "list the filter's table first",
                   ("-e", f"{name} = {', '.join([ours, *rest])}"), needs_filter=True)


def _tables(main: Mapping[str, str], policy: Policy, endpoints: Endpoints) -> list[Finding]:
    found: list[Finding | None] = []
    if policy.retired:
        found.append(_first_map(
            main, "transport_maps", endpoints.transport_map,
            "mail that reaches a retired domain through an alias or a .forward is not "
            "stopped (the milter sees recipients before they are expanded)"))
    secure = policy.secure_transport
    if secure is not None or policy.delivery is not None:
        found.append(_first_map(
            main, "smtp_tls_policy_maps", endpoints.tls_map,
            "sensitive mail the filter let through as verified could still leave over "
            "unverified TLS or none"))
    dane = (secure is not None and Accepted.DANE in secure.accept) or (
        policy.delivery is not None and policy.delivery.tls is RelayTls.DANE)
    if dane and main.get("smtp_dns_support_level") != "dnssec":
        found.append(Finding(
            "main.cf: smtp_dns_support_level",
            f"is {main.get('smtp_dns_support_level') or 'empty'}: Postfix cannot use "
            "DANE, so the TLS table's dane-only answers defer such mail",
            "make it dnssec (and use a validating resolver)",
            ("-e", "smtp_dns_support_level = dnssec")))
    if secure is not None:
        checks = split_list(main.get("milter_header_checks", ""))
        routes = secure.route is not None or Accepted.NTA7516 in secure.accept
        if routes and not any(HEADER_CHECKS in i for i in checks):
            found.append(Finding(
                "main.cf: milter_header_checks",
                "does not turn X-Postwacht-Route into a next hop: sensitive mail the filter "
                "routes (or releases by route) to the secure-mail provider or to NTA 7516 "
                "hosts would leave directly instead", f"use {endpoints.header_checks} (make "
                "install puts it "
                "there)", ("-e", "milter_header_checks = "
                           + ", ".join([endpoints.header_checks, *checks])),
                needs_file=endpoints.header_checks.partition(":")[2]))
    found += _relay(main, policy)
    if not any("postwacht" in item for item in split_list(main.get("smtp_header_checks", ""))):
        found.append(Finding(
            "main.cf: smtp_header_checks",
            "does not drop X-Postwacht-* headers: released or routed mail would tell the "
            "world why it was held", f"use {endpoints.smtp_header_checks} (make install puts "
            "it there)", ("-e", "smtp_header_checks = " + ", ".join(
                [endpoints.smtp_header_checks, *split_list(main.get("smtp_header_checks", ""))])),
            needs_file=endpoints.smtp_header_checks.partition(":")[2]))
    return [f for f in found if f is not None]


def _relay(main: Mapping[str, str], policy: Policy) -> list[Finding]:
    """A relayhost is a decision the policy must share (`postwacht.core.relay`)."""
    return [*_other_relays(main, policy), *_relayhost(main, policy)]


OTHER_RELAYS = (
    ("default_transport", "sends outside mail to {}"),
    ("smtp_fallback_relay", "takes mail to {} when a domain's own servers do not answer"),
    ("sender_dependent_relayhost_maps", "sends some senders' mail through the relays in {}"),
    ("sender_dependent_default_transport_maps", "sends some senders' mail through the "
     "transports in {}"),
)
"""Settings that send mail through a relay the filter does not follow (it reads only
relayhost), and what they do."""


def _other_relays(main: Mapping[str, str], policy: Policy) -> list[Finding]:
    """Ways to a relay that the filter does not follow: Postfix asks the TLS table about
    the relay, and the filter takes the mail for delivered straight to the domain."""
    secure = policy.secure_transport
    if secure is None:
        return []
    found = []
    for name, does in OTHER_RELAYS:
        value = main.get(name, "")
        if name == "default_transport":
            value = _transport_nexthop(value)
        if value:
            found.append(_other_relay(f"main.cf: {name}", does.format(value), secure.mode))
    return found


def _transport_nexthop(value: str) -> str:
    """The next hop a `transport:nexthop` sends to; "" for none, or for a transport that
    delivers nothing outside (error, retry, discard)."""
    transport, _, nexthop = value.partition(":")
    return "" if transport.strip() in ("error", "retry", "discard") else nexthop.strip()


SERVICE_RELAYS = {"trivial-rewrite": ("relayhost", "default_transport"),
                  "smtp": ("smtp_fallback_relay",)}
"""The master.cf -o settings that send mail through a relay, by the daemon that reads
them: trivial-rewrite picks the next hop, smtp(8) falls back."""


def _service_relays(services: Sequence[Service], policy: Policy) -> list[Finding]:
    secure = policy.secure_transport
    if secure is None:
        return []
    found = []
    for service in services:
        for name in SERVICE_RELAYS.get(service.command, ()):
            value = service.params.get(name, "")
            if name == "default_transport":
                value = _transport_nexthop(value)
            if value:
                found.append(_other_relay(f"master.cf: {service.key}",
                                          f"-o {name} sends mail through {value}",
                                          secure.mode))
    return found


def _other_relay(where: str, does: str, mode: Mode) -> Finding:
    return Finding(
        where, f"{does}: Postfix then asks the TLS table about that relay, not the "
        "recipient's domain, and the filter, which follows only relayhost, would take "
        "sensitive mail for delivered over verified TLS to the domain",
        "deliver straight to the domains, or name the one relay in relayhost and in the "
        "policy's delivery section", must=mode is Mode.ENFORCE)


def _relayhost(main: Mapping[str, str], policy: Policy) -> list[Finding]:
    value = main.get("relayhost", "")
    try:
        hops = next_hops(value)
    except HopError:
        hops = (value,)  # matches no policy: the filter does not take it for verified
    delivery, secure = policy.delivery, policy.secure_transport
    if not hops:
        if delivery is None:
            return []
        return [Finding(
            "policy: delivery",
            f"names the relay {', '.join(delivery.relay)}, but Postfix has no relayhost: "
            "mail goes straight to each recipient's domain, and the section is not used",
            "remove the policy's delivery section, or give Postfix the relayhost",
            must=False)]
    problem = relaying(policy, hops).problem
    if secure is None or problem is None or (delivery is not None
                                             and set(delivery.relay) == set(hops)):
        return []  # a relay the policy names but does not trust: its warning says so
    if any(hop_is_address(hop) for hop in hops):
        fix = ("Postfix verifies a relay's certificate by its name, never an address: name "
               "the relay by its host name in relayhost (and in the policy's delivery "
               "section), or deliver directly (relayhost empty)")
    else:
        example = f'delivery: {{relay: "{value}", tls: secure, trusted_to_enforce: true}}'
        fix = (f"if the relay's operator guarantees delivery over verified TLS only, say so "
               f"in the policy ({example}); if not, deliver directly (relayhost empty)")
    return [Finding(
        "main.cf: relayhost",
        f"{problem}; the filter treats sensitive mail to outside domains as leaving "
        "without verified TLS (secure_transport.otherwise)", fix,
        must=secure.mode is Mode.ENFORCE)]


def _services(main: Mapping[str, str], services: Sequence[Service], policy: Policy,
              submission: frozenset[str]) -> list[Finding]:
    found = []
    names = sorted(policy.outbound.daemon_names)
    for service in services:
        if service.command != "smtpd" or service.type != "inet":
            continue
        submits = bool({service.port, service.name, service.key} & submission)
        if submits and names:
            marker = service.params.get("milter_macro_daemon_name",
                                        main.get("milter_macro_daemon_name", ""))
            if marker not in policy.outbound.daemon_names:
                found.append(Finding(
                    f"master.cf: {service.key}",
                    f"milter_macro_daemon_name is {marker or 'unset'!r}, not one of the "
                    f"policy's outbound.daemon_names ({', '.join(names)}): mail submitted "
                    "here counts as internal only if its sender logged in or its client is "
                    "in outbound.networks",
                    f"mark the service -o milter_macro_daemon_name={names[0]}",
                    ("-P", f"{service.key}/milter_macro_daemon_name={names[0]}")))
    return found


BCC_SETTINGS = ("always_bcc", "sender_bcc_maps", "recipient_bcc_maps")
"""Settings with which Postfix adds recipients after the filter decided."""


def _nta7516(main: Mapping[str, str], services: Sequence[Service], policy: Policy,
             endpoints: Endpoints) -> list[Finding]:
    """The transport the filter routes sensitive mail to NTA 7516 hosts through: without
    it that mail waits in the queue; with a weaker TLS level, a host the table does not
    answer for would get it unverified. A route takes the whole message: a copy Postfix
    adds after the filter decided (a Bcc for the archive) would go along."""
    secure = policy.secure_transport
    if secure is None or Accepted.NTA7516 not in secure.accept:
        return []
    enforced = secure.mode is Mode.ENFORCE
    bcc = [(f"main.cf: {name}", name) for name in BCC_SETTINGS if main.get(name)]
    bcc += [(f"master.cf: {service.key}", name) for service in services
            for name in BCC_SETTINGS if service.params.get(name)]
    found = [Finding(where, f"adds {name} recipients after the filter decided: a message "
                     "routed to another organisation's NTA 7516 hosts takes those copies "
                     "along, to hosts that are not theirs",
                     f"remove {name} (archive by another way, e.g. on the mail store), or "
                     "take nta7516 out of secure_transport.accept", must=enforced)
             for where, name in bcc]
    return found + _nta7516_transport(services, secure.protocols, endpoints, enforced)


def _nta7516_transport(services: Sequence[Service], protocols: str, endpoints: Endpoints,
                       enforced: bool) -> list[Finding]:
    wanted = endpoints.nta7516_service(protocols)
    entry = " ".join([f"{NTA7516} unix - - n - - smtp",
                      *(f"-o {name}={value}" for name, value in wanted.items())])
    where = f"master.cf: {NTA7516}/unix"
    service = next((s for s in services if s.key == f"{NTA7516}/unix"), None)
    if service is None or service.command != "smtp":
        problem = ("is missing" if service is None else f"runs {service.command}, not smtp")
        return [Finding(where, f"{problem}: sensitive mail the filter routes to a domain's "
                        "NTA 7516 hosts waits in the queue (unknown mail transport)",
                        "add the transport", ("-M", f"{NTA7516}/unix={entry}"),
                        must=enforced, needs_filter=True)]
    wrong = {name: value for name, value in wanted.items()
             if service.params.get(name) != value}
    if not wrong:
        return []
    return [Finding(where, "has " + ", ".join(
        f"{name}={service.params.get(name, '(unset)')}" for name in wrong)
        + f", not {', '.join(f'{n}={v}' for n, v in wrong.items())}: mail to NTA 7516 hosts "
        "must leave over verified TLS even where the filter's table does not answer",
        "set them", ("-P", *(f"{NTA7516}/unix/{n}={v}" for n, v in wrong.items())),
        must=enforced, needs_filter=True)]
