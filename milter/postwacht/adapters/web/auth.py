"""Who is signing in, and how sure we are: passwords (argon2), the server-side session a
cookie names, the rate limit on failed sign-ins, CSRF tokens, and the name a trusted
proxy puts in a single sign-on header.

The cookie holds a random token; the store keeps only its SHA-256, so a copy of the
store opens no session. Every limit here is a named constant.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from postwacht.core.text import one_word, printable

IDLE = dt.timedelta(minutes=30)
LIFETIME = dt.timedelta(hours=12)
FAILURE_WINDOW = dt.timedelta(minutes=15)
FAILURES_PER_NAME = 5
FAILURES_PER_CLIENT = 20
"""Higher than per name: several people may sign in from one office address."""
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
"""Argon2 takes any length; a bound keeps a megabyte password from being hashed."""
NAME_MAX = 64
PROXY_SECRET_HEADER = "X-Postwacht-Proxy-Secret"  # noqa: S105 (a header name)
"""Sent by the reverse proxy on every request (its value only the proxy and the site
know): what tells the proxy from another local process on loopback."""
PROXY_SECRET_MIN = 32
EMAIL_MAX = 254
SESSION_COOKIE = "postwacht_session"
LOGIN_COOKIE = "postwacht_login"
TOKEN_MAX = 128
"""Longer cookie values are not ours: not even hashed."""
LOGIN_COOKIE_SECONDS = 900
"""How long a sign-in form stays usable (its CSRF token lives in this cookie)."""
CONFIRM_COOKIE = "postwacht_confirm"
CONFIRM_COOKIE_SECONDS = 3600
"""How long a sender's confirmation page stays usable (its CSRF token lives in this
cookie: the sender has no session)."""


class PasswordProblem(StrEnum):
    """Why a new password is refused (also the catalogue key of the message)."""

    TOO_SHORT = "password.too_short"
    TOO_LONG = "password.too_long"


def password_problem(password: str) -> PasswordProblem | None:
    if len(password) < PASSWORD_MIN:
        return PasswordProblem.TOO_SHORT
    if len(password) > PASSWORD_MAX:
        return PasswordProblem.TOO_LONG
    return None


def is_user_name(text: str) -> bool:
    """One printable word, as the audit trail keeps actors (the same test as the CLI's)."""
    return one_word(text, NAME_MAX)


def is_email(text: str) -> bool:
    """Loose on purpose: the digest's mail server decides; this only keeps out what
    cannot be one address (blanks, control characters, no @)."""
    return one_word(text, EMAIL_MAX) and "@" in text[1:-1]


class Passwords:
    """Hashing and checking, with one dummy hash so that a name that does not exist (or
    has no local password) costs as much to refuse as a wrong password."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """Whether `password` matches `stored` ('': never, at the same cost)."""
        try:
            self.hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(stored)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return False


def token_hash(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected token matches nothing."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                  expected.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True, slots=True)
class Refused:
    """A sign-in refused before its password was checked."""

    why: str
    retry_at: dt.datetime


def too_many_failures(per_name: int, per_client: int, now: dt.datetime) -> Refused | None:
    """`per_name` and `per_client`: failures in the last FAILURE_WINDOW. The oldest of
    them leaves the window within FAILURE_WINDOW at the latest, so that is when to retry."""
    if per_name >= FAILURES_PER_NAME:
        why = f"{per_name} failed sign-ins for this name in {_minutes(FAILURE_WINDOW)} min"
    elif per_client >= FAILURES_PER_CLIENT:
        why = f"{per_client} failed sign-ins from this address in " \
              f"{_minutes(FAILURE_WINDOW)} min"
    else:
        return None
    return Refused(why, now + FAILURE_WINDOW)


def _minutes(span: dt.timedelta) -> int:
    return int(span.total_seconds() // 60)


def safe_next(target: str) -> str:
    """Where to go after signing in: a path on this site only (never `//host` or a URL)."""
    if (target.startswith("/") and not target.startswith(("//", "/\\"))
            and printable(target, 512) == target and " " not in target):
        return target
    return "/held"
