"""Who may do what with held mail, and which releases need a second person.

Roles grow: each may do what the one before it may, and more. A `viewer` sees the held
list and the decisions, never a message's content; a `reviewer` also reads content and
releases or deletes ordinary holds; an `approver` is the second pair of eyes a dangerous
release needs; an `admin` also manages the accounts.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from postwacht.core.vocabulary import Rule


class Role(StrEnum):
    VIEWER = "viewer"
    REVIEWER = "reviewer"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Permission(StrEnum):
    LIST = "list"
    """The held list, each message's envelope and decision, the audit trail, reports."""
    READ = "read"
    """A held message's headers and text."""
    ACT = "act"
    """Release or delete; ask for a release that needs a second person."""
    APPROVE = "approve"
    """Approve or decline another person's release."""
    ACCOUNTS = "accounts"


_LEAST = {
    Permission.LIST: Role.VIEWER,
    Permission.READ: Role.REVIEWER,
    Permission.ACT: Role.REVIEWER,
    Permission.APPROVE: Role.APPROVER,
    Permission.ACCOUNTS: Role.ADMIN,
}


def allows(role: Role, permission: Permission) -> bool:
    return role.rank >= _LEAST[permission].rank


def least_role(permission: Permission) -> Role:
    return _LEAST[permission]


def needs_second_person(rules: Iterable[Rule], detected: str, override: bool) -> str:
    """Why this release needs a request by one person and approval by another ('' when it
    does not): it overrides a rule (an insecure-transport hold sent the ordinary way, an
    unreadable address), or a detector found the message sensitive. (A sender's own
    confirmation of a first recipient is judged by `records.review.second_person`.)"""
    if override:
        return f"it overrides the {', '.join(sorted({str(rule) for rule in rules}))} hold"
    if detected:
        return f"a detector found the message sensitive ({detected})"
    return ""
