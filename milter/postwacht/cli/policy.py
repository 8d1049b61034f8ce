"""`postwacht check`, `explain` and `tls`: what a policy says, and what it decides."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
from dataclasses import asdict, replace
from typing import Any

from postwacht.app import command_facts, relayhost_of
from postwacht.cli.common import ExitCode, UsageError, load_policy
from postwacht.core.address import AddressError, parse_recipient
from postwacht.core.classify import Classification, Classifier
from postwacht.core.decide import Envelope, RecipientVerdict, nta7516_route_of
from postwacht.core.facts import Facts, Nta7516Facts, TransportFacts
from postwacht.core.names import DomainError, to_ascii
from postwacht.core.nta7516 import TRANSPORT
from postwacht.core.outcome import Explained, explain
from postwacht.core.policy import Policy
from postwacht.core.relay import HopError, Relaying, next_hops, relaying
from postwacht.core.tables import tls_policy
from postwacht.core.vocabulary import Accepted, Action, Method, Mode


def add_parsers(sub: Any) -> None:
    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("policy", metavar="POLICY", help="policy file (YAML)")
    _relay_options(check)
    check.set_defaults(run=_check)

    explain_ = sub.add_parser(
        "explain",
        help="show what the policy decides for an envelope",
        description=(
            "Show the verdict for one envelope. Without --client-ip, --authenticated or "
            "--daemon-name the sender is taken to be internal (outbound mail)."
        ),
    )
    explain_.add_argument("--policy", required=True, metavar="POLICY", help="policy file")
    explain_.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    explain_.add_argument("--to", dest="recipients", action="append", required=True,
                          metavar="ADDR", help="recipient; repeat for more")
    explain_.add_argument("--authenticated", metavar="USER", help="SASL login of the sender")
    explain_.add_argument("--client-ip", metavar="IP", help="address of the SMTP client")
    explain_.add_argument("--daemon-name", metavar="NAME",
                          help="Postfix milter_macro_daemon_name of the receiving smtpd")
    explain_.add_argument("--subject", help="Subject, for sensitivity markers")
    explain_.add_argument("--body-file", metavar="FILE",
                          help="message body, for sensitivity detectors")
    explain_.add_argument("--content", action="store_true",
                          help="apply the content rules (sensitivity, secure transport) even "
                               "without --subject or --body-file: an empty message")
    known = explain_.add_mutually_exclusive_group()
    known.add_argument("--assume-known", dest="known", action="store_true",
                       help="every recipient is a known correspondent of the sender "
                            "(first-recipient guard)")
    known.add_argument("--assume-new", dest="known", action="store_false",
                       help="no recipient was mailed before (the default)")
    explain_.add_argument("--bcc", action="store_true",
                          help="the recipients are in Bcc: the message shows none of them "
                               "to each other (default: all are in To)")
    explain_.add_argument("--json", action="store_true", help="print one JSON object")
    _relay_options(explain_)
    explain_.set_defaults(run=_explain, known=False)

    tls = sub.add_parser("tls", help="what discovery finds for one recipient domain")
    tls.add_argument("domain", metavar="DOMAIN")
    tls.add_argument("--policy", required=True, metavar="POLICY",
                     help="policy file (its dns settings and partners are used)")
    tls.add_argument("--json", action="store_true", help="print one JSON object")
    _relay_options(tls)
    tls.set_defaults(run=_tls)


def _relay_options(parser: argparse.ArgumentParser) -> None:
    relay = parser.add_mutually_exclusive_group()
    relay.add_argument("--postfix-config", metavar="DIR",
                       help="read Postfix's relayhost from this configuration directory "
                            "(default: take the policy's delivery section for it)")
    relay.add_argument("--relayhost", metavar="HOPS",
                       help="Postfix's relayhost as main.cf writes it ('' for none)")


def _relayhost(args: argparse.Namespace) -> tuple[str, ...] | None:
    """Postfix's relayhost as the command line gives it, or None: the policy's."""
    if args.relayhost is not None:
        try:
            return next_hops(args.relayhost)
        except HopError as exc:
            raise UsageError(f"--relayhost: {exc}") from None
    if args.postfix_config is None:
        return None
    hops, problem = relayhost_of(args.postfix_config)
    if hops is None:
        raise UsageError(f"--postfix-config {args.postfix_config}: {problem}")
    return hops


def _check(args: argparse.Namespace) -> int:
    relayhost = _relayhost(args)
    policy = load_policy(args.policy)
    if policy is None:
        return ExitCode.FAILED
    print(f"{args.policy}: valid: {policy.summary()}")
    warnings = policy.warnings()
    standing = relaying(policy, relayhost)
    problem = standing.problem
    if problem is not None and policy.secure_transport is not None:
        if not any(problem in warning for warning in warnings):  # else the policy's own
            warnings.append(f"{problem}: sensitive mail to outside domains never counts "
                            "as verified")
    elif relayhost is not None or policy.delivery is not None:
        print(f"{args.policy}: outside mail leaves {standing.describe()}")
    for warning in warnings:
        print(f"{args.policy}: warning: {warning}")
    return ExitCode.OK


def _explain(args: argparse.Namespace) -> int:
    recipients = []
    for raw in args.recipients:
        try:
            recipients.append(parse_recipient(raw))
        except AddressError as exc:
            raise UsageError(f"--to {raw!r}: {exc}") from None
    client_ip = None
    if args.client_ip is not None:
        try:
            client_ip = ipaddress.ip_address(args.client_ip)
        except ValueError:
            raise UsageError(f"--client-ip {args.client_ip!r} is not an IP address") from None
    relayhost = _relayhost(args)
    policy = load_policy(args.policy)
    if policy is None:
        return ExitCode.FAILED
    assumed = client_ip is None and not args.authenticated and not args.daemon_name
    envelope = Envelope(
        sender=args.sender,
        recipients=tuple(recipients),
        client_ip=client_ip,
        authenticated=args.authenticated,
        daemon_name=args.daemon_name,
        internal=True if assumed else None,
    )
    classification, facts = _content_facts(args, policy, envelope, relayhost)
    explained = explain(envelope, policy, facts)
    sender_reason = (
        "assumed internal: no --client-ip, --authenticated or --daemon-name given"
        if assumed else explained.sender_reason
    )
    if args.json:
        out = _verdict_json(explained, policy, sender_reason, facts)
        if classification is not None:
            out["classification"] = asdict(classification)
        print(json.dumps(out, ensure_ascii=False))
        return ExitCode.OK
    _print_verdict(explained, args.sender, sender_reason)
    _print_content(args, policy, classification, facts)
    return ExitCode.OK


def _content_facts(args: argparse.Namespace, policy: Policy, envelope: Envelope,
                   relayhost: tuple[str, ...] | None) -> tuple[Classification | None, Facts]:
    """What the content rules need, when the command line gives content."""
    with_content = args.content or args.subject is not None or args.body_file is not None
    if not policy.classifies or not with_content:
        return None, Facts(relayhost=relayhost)
    classification = _classify(policy, args.sender, args.subject, args.body_file)
    visible = () if args.bcc else tuple(r.address.lower() for r in envelope.recipients)
    gatherer = command_facts(relayhost)
    try:
        facts = gatherer.for_message(envelope, policy, classification, visible)
    finally:
        gatherer.close()
    if args.known:
        facts = replace(facts, known=frozenset(r.address for r in envelope.recipients))
    return classification, facts


def _print_content(args: argparse.Namespace, policy: Policy,
                   classification: Classification | None, facts: Facts) -> None:
    if classification is not None:
        kind = "sensitive" if classification.sensitive else "not sensitive"
        print(f"\nclassification: {kind} ({classification.reason})")
        for domain, found in sorted(facts.transport.items()):
            print(f"transport {domain}: {found.method} ({found.detail})")
        for domain, nta in sorted(facts.nta7516.items()):
            print(f"NTA 7516 record {domain}: {nta.describe()}")
        if policy.secure_transport is not None:
            print(f"delivery: outside mail leaves "
                  f"{relaying(policy, facts.relayhost).describe()}")
        if policy.first_recipient is not None:
            print("first recipients: "
                  + ("assumed known (--assume-known)" if args.known
                     else "assumed new, never mailed before (--assume-known to change)"))
    elif policy.classifies:
        rules = [name for name, on in (
            ("secure transport", policy.secure_transport is not None),
            ("misaddressing", policy.first_recipient is not None
             or policy.exposed_recipients is not None)) if on]
        they = "they depend" if len(rules) > 1 else "it depends"
        print(f"\n{' and '.join(rules)}: not evaluated; {they} on the content "
              "(give --subject, --body-file or --content)")


def _classify(policy: Policy, sender: str, subject: str | None, body_file: str | None
              ) -> Classification:
    classifier = Classifier(policy.sensitivity, sender)
    if subject is not None:
        classifier.header("Subject", subject)
    if body_file is not None:
        try:
            with open(body_file, "rb") as body:
                while chunk := body.read(65536):
                    classifier.body(chunk)
        except OSError as exc:
            raise UsageError(f"--body-file {body_file!r}: {exc.strerror}") from None
    return classifier.result()


def _facts_json(facts: TransportFacts) -> dict[str, object]:
    return {
        "domain": facts.domain, "method": facts.method.value, "verified": facts.verified,
        "detail": facts.detail, "mx": list(facts.mx), "dnssec": facts.dnssec,
        "mta_sts": None if facts.sts is None else {
            "mode": facts.sts.mode, "mx": list(facts.sts.mx), "max_age": facts.sts.max_age,
            "id": facts.sts.policy_id},
    }


def _tls(args: argparse.Namespace) -> int:
    try:
        domain = to_ascii(args.domain)
    except DomainError as exc:
        raise UsageError(str(exc)) from None
    relayhost = _relayhost(args)
    policy = load_policy(args.policy)
    if policy is None:
        return ExitCode.FAILED
    gatherer = command_facts()
    try:
        facts = gatherer.transport({domain}, policy)[domain]
        nta = gatherer.nta7516(domain, policy, dt.date.today())  # the MTA's own day
        route, why_not = _nta7516_standing(domain, facts, nta, policy,
                                           relaying(policy, relayhost))
        hops = route.removeprefix(f"{TRANSPORT}:").split(",") if route else []
        host_tls = {hop: str(gatherer.nta7516_tls(hop, policy)) for hop in hops}
    finally:
        gatherer.close()
    table = tls_policy(domain, policy, facts)
    monitored = policy.secure_transport is not None and (
        policy.secure_transport.mode is Mode.MONITOR)
    if args.json:
        print(json.dumps({**_facts_json(facts), "tls_policy": table,
                          "nta7516": {**_nta_json(nta), "route": route,
                                      "not_used": why_not or None, "monitored": monitored,
                                      "host_tls": host_tls or None}}))
        return ExitCode.OK
    print(f"{domain}: {facts.method}{' (verified)' if facts.verified else ''}")
    print(f"  {facts.detail}")
    if facts.mx:
        print(f"  mx: {', '.join(facts.mx)} (DNSSEC: {'yes' if facts.dnssec else 'no'})")
    if facts.sts is not None:
        print(f"  MTA-STS: mode {facts.sts.mode}, mx {', '.join(facts.sts.mx)}, "
              f"max_age {facts.sts.max_age}")
    print(f"  Postfix TLS policy: {table or 'none served (Postfix default)'}")
    print(f"  NTA 7516 record: {nta.describe()}")
    if route:
        would = " (monitor mode: only logged, not taken)" if monitored else ""
        print(f"  sensitive mail to it alone goes to {route}{would}; the nta7516 table "
              "answers for each host:")
        for hop, answer in host_tls.items():
            print(f"    {hop}: {answer}")
    elif why_not:
        print(f"  not used: {why_not}")
    return ExitCode.OK


def _nta7516_standing(domain: str, found: TransportFacts, nta: Nta7516Facts, policy: Policy,
                      relay: Relaying) -> tuple[str | None, str]:
    """The route sensitive mail to `domain` alone takes by its NTA 7516 record, as the
    milter decides it; else why the record is not used ("" when there is none)."""
    if nta.record is None:
        return None, ""
    rules = policy.secure_transport
    if rules is None or Accepted.NTA7516 not in rules.accept:
        return None, "the policy does not accept it (add nta7516 to secure_transport.accept)"
    if relay.problem is not None:
        return None, relay.problem
    if relay.relayed:
        return None, (f"outside mail leaves through the relay {', '.join(relay.relayhost)}, "
                      "never to hosts directly")
    if found.method is Method.FAILURE:
        return None, f"the domain's MX could not be looked up ({found.detail}): mail waits"
    facts = Facts(transport={domain: found}, nta7516={domain: nta})
    standing = nta7516_route_of(domain, found, policy, facts, relay)
    return standing.hop, standing.note


def _nta_json(nta: Nta7516Facts) -> dict[str, object]:
    record = nta.record
    return {
        "counts": record is not None, "dnssec": nta.dnssec, "failure": nta.failure or None,
        "detail": nta.claim.detail if nta.claim is not None else None,
        "record": None if record is None else {
            "provider": record.provider, "start": record.start.isoformat(),
            "end": record.end.isoformat(),
            "hosts": [{"preference": h.preference, "host": h.host} for h in record.hosts]},
    }


def _verdict_json(
    explained: Explained, policy: Policy, sender_reason: str, facts: Facts
) -> dict[str, object]:
    recipients = []
    for r in explained.recipients:
        row: dict[str, object] = {**_decision_json(r), "mode": r.mode.value,
                                  "monitored": [_decision_json(m) for m in r.monitored]}
        found = facts.transport.get(r.domains[0]) if r.domains else None
        if found is not None:
            row["transport"] = _facts_json(found)
        nta = facts.nta7516.get(r.domains[0]) if r.domains else None
        if nta is not None:
            row["nta7516"] = _nta_json(nta)
        recipients.append(row)
    standing = relaying(policy, facts.relayhost)
    return {
        "action": explained.action.value,
        "route": explained.message.route if explained.message else None,
        "internal": explained.internal,
        "sender_reason": sender_reason,
        "policy": {"file": policy.source, "checksum": policy.checksum},
        "delivery": {"relayhost": list(standing.relayhost), "problem": standing.problem},
        "recipients": recipients,
    }


def _decision_json(verdict: RecipientVerdict) -> dict[str, object]:
    return {"address": verdict.address, "domains": list(verdict.domains),
            "action": verdict.action.value, "rule": verdict.rule.value,
            "reason": verdict.reason, "matched": verdict.matched, "hop": verdict.hop}


def _print_verdict(explained: Explained, sender: str, sender_reason: str) -> None:
    refused = len(explained.refused)
    note = f" ({refused} of {len(explained.recipients)} recipients refused)" if refused else ""
    print(f"message: {explained.action.value}{note}")
    route = explained.message.route if explained.message else None
    if route is not None:
        held = explained.action is not Action.ROUTE
        print(f"route:   {route}{' (a release leaves through it)' if held else ''}")
    print(f"sender:  {sender or '<>'} ({sender_reason})")
    for r in explained.recipients:
        rule = f"{r.rule} ({r.matched})" if r.matched else r.rule
        print(f"\n  {r.address}")
        print(f"    domains: {', '.join(r.domains) or '-'}")
        print(f"    action:  {r.action.value}")
        print(f"    rule:    {rule}")
        print(f"    reason:  {r.reason}")
        print(f"    mode:    {r.mode.value}")
        for m in r.monitored:
            print(f"    monitored: {m.rule} would {m.action.value}: {m.reason}")
