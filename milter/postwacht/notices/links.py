"""The sender's two links for a first-recipient hold: "send it" and "cancel".

A link carries the record's number, what it does, and when it stops working, signed with
a key only Postwacht has (HMAC-SHA256 over those and the hold's own random key, which never
leaves Postwacht). So a link cannot be made for another record, changed to the other
action, kept alive longer, or used for a later hold under a reused number. Opening a link
only shows a page; the sender's button press on that page acts (mail scanners that follow
links must not release mail).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

SIGNATURE_CHARS = 32
"""Base64url characters of the signature kept in the link (192 bits)."""
_TOKEN = re.compile(r"([1-9][0-9]{0,17})\.(send|cancel)\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{32})")


class Confirm(StrEnum):
    """What a sender's link does with the held message."""

    SEND = "send"
    CANCEL = "cancel"


class LinkError(Exception):
    """A link that does not hold: `kind` is `tampered` or `expired`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Link:
    record_id: int
    action: Confirm
    expires: int
    """Unix time after which the link no longer works."""
    signature: str

    @property
    def token(self) -> str:
        return f"{self.record_id}.{self.action}.{self.expires}.{self.signature}"


def _signature(key: bytes, record_id: int, hold_key: str, action: Confirm,
               expires: int) -> str:
    message = f"postwacht-confirm\0{record_id}\0{hold_key}\0{action}\0{expires}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def sign(key: bytes, record_id: int, hold_key: str, action: Confirm, expires: int) -> Link:
    return Link(record_id, action, expires,
                _signature(key, record_id, hold_key, action, expires))


def url(review_url: str, link: Link) -> str:
    """The link as the sender's notice shows it (`review_url` ends in '/')."""
    return f"{review_url}confirm/{link.token}"


def parse(token: str) -> Link:
    """The parts of a token, before its record is read; `LinkError` when it has not the
    shape of one this module makes."""
    found = _TOKEN.fullmatch(token)
    if found is None:
        raise LinkError("tampered", "this link is damaged or was changed")
    return Link(int(found[1]), Confirm(found[2]), int(found[3]), found[4])


def check(key: bytes, link: Link, hold_key: str, now: float) -> None:
    """`LinkError` unless `link` was signed with `key` for the hold with `hold_key`, and
    is still valid at `now` (the signature first: an expired forgery says tampered)."""
    expected = _signature(key, link.record_id, hold_key, link.action, link.expires)
    if not hmac.compare_digest(expected, link.signature):
        raise LinkError("tampered", "this link is damaged or was changed")
    if now > link.expires:
        raise LinkError("expired", "this link has expired")
