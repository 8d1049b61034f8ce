"""The `postwacht` command: one subcommand per job, one exit code per outcome.

Exit codes: 0 done, 1 the policy is invalid, 2 the command line (or an address on it)
is wrong.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TextIO

from postwacht import __version__, cli_daemon, cli_domains, cli_review
from postwacht.address import AddressError, parse_recipient
from postwacht.classify import Classification, Classifier
from postwacht.decide import (
    Envelope,
    Facts,
    Verdict,
    decide,
    end_of_message_action,
    transport_domains,
)
from postwacht.discovery import TransportFacts, discovery_for, tls_policy
from postwacht.domains import DomainError, to_ascii
from postwacht.policy import Action, Policy, load
from postwacht.policyfile import PolicyError

_CONTENT_RULES = ("insecure-transport", "dns-failure")
"""Rules decided at end of message: their refusals refuse the whole message."""
EXIT_OK = 0
EXIT_POLICY = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command-line value that cannot be used; the message names it."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except UsageError as exc:
        print(f"postwacht {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postwacht",
        description="Outbound mail policy filter for Postfix.",
    )
    parser.add_argument("--version", action="version", version=f"postwacht {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("policy", metavar="POLICY", help="policy file (YAML)")
    check.set_defaults(run=_check)

    explain = sub.add_parser(
        "explain",
        help="show what the policy decides for an envelope",
        description=(
            "Show the verdict for one envelope. Without --client-ip, --authenticated or "
            "--daemon-name the sender is taken to be internal (outbound mail)."
        ),
    )
    explain.add_argument("--policy", required=True, metavar="POLICY", help="policy file")
    explain.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    explain.add_argument("--to", dest="recipients", action="append", required=True,
                         metavar="ADDR", help="recipient; repeat for more")
    explain.add_argument("--authenticated", metavar="USER", help="SASL login of the sender")
    explain.add_argument("--client-ip", metavar="IP", help="address of the SMTP client")
    explain.add_argument("--daemon-name", metavar="NAME",
                         help="Postfix milter_macro_daemon_name of the receiving smtpd")
    explain.add_argument("--subject", help="Subject, for sensitivity markers")
    explain.add_argument("--body-file", metavar="FILE",
                         help="message body, for sensitivity detectors")
    explain.add_argument("--content", action="store_true",
                         help="apply the content rules (sensitivity, secure transport) even "
                              "without --subject or --body-file: an empty message")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    explain.set_defaults(run=_explain)

    tls = sub.add_parser("tls", help="what discovery finds for one recipient domain")
    tls.add_argument("domain", metavar="DOMAIN")
    tls.add_argument("--policy", required=True, metavar="POLICY",
                     help="policy file (its dns settings and partners are used)")
    tls.add_argument("--json", action="store_true", help="print one JSON object")
    tls.set_defaults(run=_tls)
    cli_daemon.add_parsers(sub)
    cli_domains.add_parsers(sub)
    cli_review.add_parsers(sub)
    return parser


def _load(path: str, out: TextIO) -> Policy | None:
    try:
        return load(path)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=out)
        count = len(exc.problems)
        print(f"{path}: invalid policy ({count} problem{'s' if count != 1 else ''})", file=out)
        return None


def _check(args: argparse.Namespace) -> int:
    policy = _load(args.policy, sys.stderr)
    if policy is None:
        return EXIT_POLICY
    print(f"{args.policy}: valid: {policy.summary()}")
    return EXIT_OK


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
    policy = _load(args.policy, sys.stderr)
    if policy is None:
        return EXIT_POLICY
    assumed = client_ip is None and not args.authenticated and not args.daemon_name
    envelope = Envelope(
        sender=args.sender,
        recipients=tuple(recipients),
        client_ip=client_ip,
        authenticated=args.authenticated,
        daemon_name=args.daemon_name,
        internal=True if assumed else None,
    )
    verdict = decide(envelope, policy)
    classification, transport = None, {}
    with_content = args.content or args.subject is not None or args.body_file is not None
    if policy.secure_transport is not None and with_content:
        classification = _classify(policy, args.sender, args.subject, args.body_file)
        discovery = discovery_for(policy.dns)
        transport = {d: discovery.facts(d) for d in transport_domains(envelope, policy)}
        verdict = decide(envelope, policy, Facts(classification, transport))
        kept = tuple(r for r in verdict.recipients if r.rule in _CONTENT_RULES
                     or r.action not in (Action.REJECT, Action.TEMPFAIL))
        verdict = replace(verdict, action=end_of_message_action(kept, policy, local=False))
    sender_reason = (
        "assumed internal: no --client-ip, --authenticated or --daemon-name given"
        if assumed else verdict.sender_reason
    )
    if args.json:
        out = _verdict_json(verdict, policy, sender_reason, transport)
        if classification is not None:
            out["classification"] = asdict(classification)
        print(json.dumps(out, ensure_ascii=False))
    else:
        _print_verdict(verdict, args.sender, sender_reason)
        if classification is not None:
            kind = "sensitive" if classification.sensitive else "not sensitive"
            print(f"\nclassification: {kind} ({classification.reason})")
            for domain, found in sorted(transport.items()):
                print(f"transport {domain}: {found.method} ({found.detail})")
        elif policy.secure_transport is not None:
            print("\nsecure transport: not evaluated; it depends on the content "
                  "(give --subject, --body-file or --content)")
    return EXIT_OK


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
        "domain": facts.domain, "method": facts.method, "verified": facts.verified,
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
    policy = _load(args.policy, sys.stderr)
    if policy is None:
        return EXIT_POLICY
    facts = discovery_for(policy.dns).facts(domain)
    table = tls_policy(domain, policy, facts)
    if args.json:
        print(json.dumps({**_facts_json(facts), "tls_policy": table}))
        return EXIT_OK
    print(f"{domain}: {facts.method}{' (verified)' if facts.verified else ''}")
    print(f"  {facts.detail}")
    if facts.mx:
        print(f"  mx: {', '.join(facts.mx)} (DNSSEC: {'yes' if facts.dnssec else 'no'})")
    if facts.sts is not None:
        print(f"  MTA-STS: mode {facts.sts.mode}, mx {', '.join(facts.sts.mx)}, "
              f"max_age {facts.sts.max_age}")
    print(f"  Postfix TLS policy: {table or 'none served (Postfix default)'}")
    return EXIT_OK


def _verdict_json(
    verdict: Verdict, policy: Policy, sender_reason: str,
    transport: dict[str, TransportFacts] | None = None,
) -> dict[str, object]:
    transport = transport or {}
    recipients = []
    for r in verdict.recipients:
        row: dict[str, object] = {**asdict(r), "domains": list(r.domains),
                                  "action": r.action.value}
        found = transport.get(r.domains[0]) if r.domains else None
        if found is not None:
            row["transport"] = _facts_json(found)
        recipients.append(row)
    return {
        "action": verdict.action.value,
        "internal": verdict.internal,
        "sender_reason": sender_reason,
        "policy": {"file": policy.source, "checksum": policy.checksum},
        "recipients": recipients,
    }


def _print_verdict(verdict: Verdict, sender: str, sender_reason: str) -> None:
    refused = len(verdict.refused)
    note = f" ({refused} of {len(verdict.recipients)} recipients refused)" if refused else ""
    print(f"message: {verdict.action.value}{note}")
    print(f"sender:  {sender or '<>'} ({sender_reason})")
    for r in verdict.recipients:
        rule = f"{r.rule} ({r.matched})" if r.matched else r.rule
        print(f"\n  {r.address}")
        print(f"    domains: {', '.join(r.domains) or '-'}")
        print(f"    action:  {r.action.value}")
        print(f"    rule:    {rule}")
        print(f"    reason:  {r.reason}")


if __name__ == "__main__":
    sys.exit(main())
