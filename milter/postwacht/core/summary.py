"""What review may know of a daemon's running policy and domain watch, as plain data.

The web review runs without access to the policy file or the DNS; each daemon publishes
these summaries to the records store, and review shows them as they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from postwacht.core.facts import DomainReport
from postwacht.core.policy import Policy

LISTED_MAX = 200
"""Domains named per list; a longer list is counted, not spelled out."""


def policy_summary(policy: Policy, loaded_at: dt.datetime) -> dict[str, Any]:
    st = policy.secure_transport
    return {
        "checksum": policy.checksum,
        "file": policy.source,
        "loaded_at": loaded_at.isoformat(timespec="seconds"),
        "summary": {
            "organisation": policy.organisation,
            "owned domains": _listed(policy.owned),
            "retired domains": _listed([
                f"{r.domain} ({r.action}" + (f", now {r.successor})" if r.successor else ")")
                for r in policy.retired]),
            "partners": _listed([f"{p.domain} ({p.transport})" for p in policy.partners]),
            "look-alikes": (f"{policy.lookalikes.action} within distance "
                            f"{policy.lookalikes.max_distance} of "
                            f"{len(policy.lookalikes.protect)} protected domains"),
            "secure transport": "not enforced" if st is None else (
                f"sensitive mail only over {', '.join(sorted(str(a) for a in st.accept))} "
                f"(TLS {st.min_tls} or newer); otherwise {st.otherwise}"
                + (f", or through {st.route}" if st.route else "")),
            "detectors": ", ".join(sorted(policy.sensitivity.detectors)) or "none",
            "domain watch": (f"every {policy.domain_watch.interval} s"
                             if policy.domain_watch.enabled else "off"),
            "quarantine": (f"kept {policy.quarantine.retention_days:g} days, then "
                           f"{policy.quarantine.on_expiry}"),
        },
    }


def domains_report(reports: Sequence[DomainReport], at: dt.datetime) -> dict[str, Any]:
    return {
        "at": at.isoformat(timespec="seconds"),
        "domains": [{
            "domain": r.domain,
            "kind": r.kind,
            "status": {True: "ok", False: "problem", None: "unknown"}[r.control_ok],
            "detail": "; ".join(f"{c.name}: {c.detail}" for c in r.checks
                                if c.ok is not True) or "all checks passed",
            "expires": r.expires.date().isoformat() if r.expires else None,
        } for r in reports],
    }


def _listed(names: Sequence[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:LISTED_MAX])
    return shown if len(names) <= LISTED_MAX else f"{shown} and {len(names) - LISTED_MAX} more"
