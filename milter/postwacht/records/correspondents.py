"""Who has been mailed: what the first-recipient guard knows, kept as keyed hashes only.

Mail that left makes its recipients known, four ways at once: to its sender, by address
and by domain, and to the whole organisation, by address and by domain. Each is an
HMAC-SHA256, under the key `records.secret.derive(secret, "correspondents")`, of the
kind (a prefix of its own) and the normalised addresses, separated by NUL, which no
address can hold: no two kinds, and no two pairs, share a hash. The store keeps the hash
and when it was last used, nothing else, so a copy of the store names nobody; without
the key a guessed address cannot be tested against it. Every MTA that shares the store
needs the same key: `check_key` refuses a store whose hashes another key made (they
would all look unknown, and every recipient would be held).

Addresses are compared in one form: lower-case, the domain as A-labels
(`core.names.to_ascii`), or lower-case as written when it is no domain name (an address
literal); angle brackets and blanks around an address are dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from postwacht.core.names import DomainError, to_ascii
from postwacht.core.vocabulary import Match, Scope
from postwacht.records.secret import KEY_FILE
from postwacht.records.store import CORRESPONDENTS_MAX, RecordsError, RecordStore

Kind = tuple[Scope, Match]
KINDS: tuple[Kind, ...] = ((Scope.SENDER, Match.ADDRESS), (Scope.SENDER, Match.DOMAIN),
                           (Scope.ORGANISATION, Match.ADDRESS),
                           (Scope.ORGANISATION, Match.DOMAIN))
FINGERPRINT_LENGTH = 16


def normal_address(address: str) -> str:
    """An address in the form every hash is made of: `Jan@Zorg.Example` and
    `<jan@zorg.example>` are one address."""
    local, at, domain = _bare(address).rpartition("@")
    if not at:
        return domain.lower()  # no domain: a bare local part
    return f"{local.lower()}@{_normal_domain(domain)}"


def domain_of(address: str) -> str:
    """The domain of an address in normal form ('' when it has none)."""
    _, at, domain = _bare(address).rpartition("@")
    return _normal_domain(domain) if at else ""


def _bare(address: str) -> str:
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


def _normal_domain(domain: str) -> str:
    try:
        return to_ascii(domain)
    except DomainError:
        return domain.lower()


class Correspondents:
    """The first-recipient guard's memory in a `RecordStore`. Errors of the store are its
    `RecordsError`; they are never taken for "unknown" or "known" here."""

    def __init__(self, store: RecordStore, key: bytes, *, key_file: Path | None = None) -> None:
        """`key`: `derive(secret, "correspondents")`; `key_file`: where the secret lies
        (named when the store's hashes were made with another one)."""
        self._store = store
        self._key = key
        self._key_file = key_file

    def hashes(self, sender: str, recipient: str) -> dict[Kind, str]:
        """The four hashes of mail from `sender` to `recipient`, by scope and match."""
        who = normal_address(sender)
        to = normal_address(recipient)
        domain = domain_of(recipient)
        return {
            (Scope.SENDER, Match.ADDRESS): self._hash("sender-address", who, to),
            (Scope.SENDER, Match.DOMAIN): self._hash("sender-domain", who, domain),
            (Scope.ORGANISATION, Match.ADDRESS): self._hash("organisation-address", to),
            (Scope.ORGANISATION, Match.DOMAIN): self._hash("organisation-domain", domain),
        }

    def _hash(self, kind: str, *parts: str) -> str:
        # NUL never occurs in an address (neither SMTP nor the milter protocol carries
        # one); one that did is hashed as U+FFFD rather than let it shift a field.
        text = "\0".join((kind, *(p.replace("\0", "\ufffd") for p in parts)))
        return hmac.new(self._key, text.encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()

    def learn(self, sender: str, recipients: Iterable[str], at: dt.datetime) -> None:
        """Mail from `sender` to `recipients` left at `at`: all four kinds, for each."""
        self.learn_pairs(((sender, r) for r in recipients), at)

    def learn_pairs(self, pairs: Iterable[tuple[str, str]], at: dt.datetime) -> None:
        """Mail left at `at` from each sender to each recipient of `pairs`, in as few
        calls of the store as its bound allows."""
        for chunk in _chunks((h for sender, recipient in pairs
                              for h in self.hashes(sender, recipient).values()),
                             CORRESPONDENTS_MAX):
            self._store.remember_correspondents(chunk, at)

    def known(self, sender: str, recipients: Sequence[str], scope: Scope, match: Match,
              since: dt.datetime) -> frozenset[str]:
        """The recipients (as given) that `scope` has mailed since `since`, compared by
        `match`."""
        wanted: dict[str, list[str]] = {}
        for recipient in recipients:
            wanted.setdefault(self.hashes(sender, recipient)[scope, match], []).append(recipient)
        found: set[str] = set()
        for chunk in _chunks(iter(wanted), CORRESPONDENTS_MAX):
            found |= self._store.known_correspondents(chunk, since)
        return frozenset(r for h in found for r in wanted.get(h, ()))

    def forget(self, sender: str | None, recipient: str) -> int:
        """Unlearn a recipient (mail that went to the wrong address); how many entries
        were removed. With `sender`: what that sender's mail taught, the address and its
        domain. Without: what the whole organisation's mail taught, the address and its
        domain. The domain goes too, so that a mistyped domain is not trusted by a policy
        that matches domains; a right one becomes known again with the next mail that is
        let through. What other senders' mail taught stays: their entries cannot be found
        without their addresses (that is what the hashing is for)."""
        every = self.hashes(sender or "", recipient)
        scope = Scope.SENDER if sender is not None else Scope.ORGANISATION
        return self._store.forget_correspondents(
            [every[scope, Match.ADDRESS], every[scope, Match.DOMAIN]])

    def expire(self, before: dt.datetime) -> int:
        """Remove what was last used before `before`; how many entries."""
        return self._store.expire_correspondents(before)

    def count(self) -> int:
        """How many entries (each delivered recipient makes up to four)."""
        return self._store.correspondents_count()

    def fingerprint(self) -> str:
        """Names the key without revealing it: alike on every MTA with the same key."""
        return hmac.new(self._key, b"fingerprint", hashlib.sha256).hexdigest()[
            :FINGERPRINT_LENGTH]

    def check_key(self) -> None:
        """RecordsError when the store's hashes were made with another key; the first
        store to be checked keeps this key's fingerprint."""
        if not self._store.correspondents_key(self.fingerprint()):
            where = (str(self._key_file) if self._key_file is not None
                     else f"{KEY_FILE} in the state directory")
            raise RecordsError("the records store's correspondents were hashed with another "
                               f"key: copy {where} from the MTA that made it")


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
