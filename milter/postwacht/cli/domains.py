"""`postwacht domains audit`: is every owned domain still ours, has a retired one moved?"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from postwacht.cli.common import ExitCode, load_policy
from postwacht.core.facts import DomainReport
from postwacht.core.policy import Policy
from postwacht.core.vocabulary import Mode, Rule
from postwacht.facts.dnscache import DnsCache, ResolverConfig
from postwacht.facts.domainwatch import DomainAuditor
from postwacht.facts.rdap import RdapError


def add_parsers(sub: Any) -> None:
    domains = sub.add_parser("domains", help="watch owned and retired domains")
    actions = domains.add_subparsers(dest="domains", required=True, metavar="ACTION")
    audit = actions.add_parser(
        "audit", help="check delegation, MX and registration of every policy domain",
        description="Exit 0 when every check passed, 3 when one failed or could not be "
                    "made (unknown), 1 for an invalid policy.")
    audit.add_argument("--policy", required=True, metavar="POLICY")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(run=_audit)


def _audit(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    if policy is None:
        return ExitCode.FAILED
    dns = DnsCache(ResolverConfig(policy.dns.resolvers, policy.dns.timeout))
    try:
        reports = DomainAuditor(policy, dns).audit()
    except RdapError as exc:
        print(f"postwacht domains audit: {exc}", file=sys.stderr)
        return ExitCode.ATTENTION
    if args.json:
        print(json.dumps([{**_json(r), "mode": _mode(policy, r).value} for r in reports]))
    else:
        for report in reports:
            _print(report, _mode(policy, report))
    fine = all(r.control_ok is True and not r.expiring_soon for r in reports)
    return ExitCode.OK if fine else ExitCode.ATTENTION


def _json(report: DomainReport) -> dict[str, object]:
    return {
        "domain": report.domain,
        "kind": report.kind,
        "control_ok": report.control_ok,
        "expires": report.expires.isoformat() if report.expires else None,
        "expiring_soon": report.expiring_soon,
        "checks": [{"check": c.name.value, "ok": c.ok, "detail": c.detail}
                   for c in report.checks],
    }


def _mode(policy: Policy, report: DomainReport) -> Mode:
    """Whether the rule that acts on this domain's mail (retired, or control lost) is
    enforced or only monitored."""
    if report.kind == "retired":
        return policy.mode(Rule.RETIRED, report.domain)
    return policy.mode(Rule.CONTROL_LOST)


_MAIL = {
    ("retired", Mode.ENFORCE): "mail to it is refused or held",
    ("retired", Mode.MONITOR): "MONITOR MODE: mail to it LEAVES (only logged and counted)",
    ("owned", Mode.ENFORCE): "",
    ("owned", Mode.MONITOR): "monitor mode: mail to it is not held when control is in doubt",
}


def _print(report: DomainReport, mode: Mode) -> None:
    state = {True: "ok", False: "PROBLEM", None: "UNKNOWN"}[report.control_ok]
    if report.control_ok and report.expiring_soon:
        state = "EXPIRING"
    print(f"{report.domain} ({report.kind}): {state}")
    for check in report.checks:
        mark = {True: "ok", False: "FAIL", None: "??"}[check.ok]
        print(f"  {mark:<4} {check.name:<12} {check.detail}")
    if mail := _MAIL.get((report.kind, mode), ""):
        print(f"  {mail}")
