"""The text of notices: a sender's notice of a hold, and the reviewers' digest.

Pure: values in, a finished message out; the templates ship with the package, one set per
language (`templates/<language>/`). What a notice may say is decided here, once: the
recipient domains, the rule in plain words, the reason, what happens next and a link to
the review. It is never handed the held message's subject, body or attachments, so it
cannot leak them.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from functools import cache
from importlib import resources

from postwacht.core.names import to_unicode
from postwacht.core.policy import (
    DigestPeriod,
    Language,
    NoticeSettings,
    OnExpiry,
    QuarantineSettings,
)
from postwacht.core.text import printable
from postwacht.core.vocabulary import Rule

MAX_DOMAINS_SHOWN = 5
"""Recipient domains a subject or entry names; the rest are counted."""
MAX_DIGEST_ENTRIES = 200
"""Held messages a digest lists; the rest are counted (the review shows them all)."""
MAX_REASON = 400
"""Characters of a hold's reason in a notice."""


class Standing(StrEnum):
    """Where a waiting message stands, as a digest tells it."""

    HELD = "held"
    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting-approval"


@dataclass(frozen=True, slots=True)
class Held:
    """What a notice may know of a held message (never its content)."""

    record_id: int
    sender: str
    rule: Rule
    reason: str
    domains: tuple[str, ...]
    held_at: dt.datetime
    standing: Standing = Standing.HELD
    key: str = ""
    """The hold's own random key: the sender's links are signed over it."""
    confirm: tuple[str, ...] = ()
    """The recipients the sender is asked to confirm (a first-recipient hold)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A finished notice: the envelope and the message as sendmail(1) takes it."""

    sender: str
    recipient: str
    data: bytes


@dataclass(frozen=True, slots=True)
class _Template:
    subject: string.Template
    body: string.Template


@cache
def _read(language: Language, name: str) -> str:
    return (resources.files("postwacht.notices").joinpath("templates", language.value, name)
            .read_text(encoding="utf-8"))


@cache
def _template(language: Language, name: str) -> _Template:
    """A template file: a `Subject:` line, an empty line, the body (or only a body)."""
    text = _read(language, name)
    first, _, rest = text.partition("\n\n")
    if first.startswith("Subject: ") and "\n" not in first:
        return _Template(string.Template(first.removeprefix("Subject: ")),
                         string.Template(rest))
    return _Template(string.Template(""), string.Template(text))


@cache
def words(language: Language) -> Mapping[str, str]:
    """The language's `words.txt`: `key = text` lines, `#` lines are comments."""
    found: dict[str, str] = {}
    for line in _read(language, "words.txt").splitlines():
        key, sep, text = line.partition(" = ")
        if sep and not line.startswith("#"):
            found[key.strip()] = text.strip()
    return found


def _word(language: Language, key: str, **fields: object) -> str:
    return string.Template(words(language)[key]).substitute(fields)


def _counted(language: Language, unit: str, n: int) -> str:
    one, _, many = words(language)[f"unit.{unit}"].partition("|")
    return one if n == 1 else string.Template(many).substitute(n=n)


def age(language: Language, seconds: float) -> str:
    """How long a message has waited, in whole minutes, hours or days."""
    minutes = max(0, int(seconds // 60))
    if minutes < 120:
        return _counted(language, "minute", minutes)
    if minutes < 48 * 60:
        return _counted(language, "hour", minutes // 60)
    return _counted(language, "day", minutes // (24 * 60))


def domain_list(language: Language, domains: Sequence[str]) -> str:
    """Recipient domains as a person reads them, at most `MAX_DOMAINS_SHOWN`."""
    shown = [printable(to_unicode(d), 256) for d in domains[:MAX_DOMAINS_SHOWN]]
    text = ", ".join(shown) or "-"
    rest = len(domains) - len(shown)
    return f"{text} {_word(language, 'more', n=rest)}" if rest > 0 else text


def rule_text(language: Language, rule: Rule) -> str:
    return words(language)[f"rule.{rule.value}"]


def _retention(language: Language, quarantine: QuarantineSettings) -> tuple[str, str]:
    seconds = quarantine.retention_seconds
    unit, size = (("day", 86400) if seconds >= 2 * 86400 else
                  ("hour", 3600) if seconds >= 2 * 3600 else ("minute", 60))
    expiry = "expiry.return" if quarantine.on_expiry is OnExpiry.RETURN else "expiry.delete"
    return _counted(language, unit, round(seconds / size)), words(language)[expiry]


def sender_notice(held: Held, to: str, settings: NoticeSettings, organisation: str,
                  quarantine: QuarantineSettings, now: dt.datetime) -> Outgoing:
    """The notice to `to` (the held message's sender, checked by the caller) that its
    message was held, why, and where to follow it. `now` is aware, in local time."""
    language = settings.language
    retention, expiry = _retention(language, quarantine)
    template = _template(language, "sender.txt")
    fields = {
        "domains": domain_list(language, held.domains),
        "held_at": held.held_at.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M"),
        "organisation": printable(organisation, 200),
        "rule_text": rule_text(language, held.rule),
        "reason": printable(held.reason, MAX_REASON),
        "retention": retention,
        "expiry": expiry,
        "link": settings.link(held.record_id),
        "record_id": held.record_id,
    }
    return _message(settings.sender_address, to, template.subject.substitute(fields),
                    template.body.substitute(fields), now)


def confirm_notice(held: Held, to: str, settings: NoticeSettings, organisation: str,
                   links: tuple[str, str], expires: dt.datetime, now: dt.datetime) -> Outgoing:
    """The notice to `to` (the sender) that its message waits for it to confirm the new
    recipients: `links` are its signed "send it" and "cancel" links, valid until
    `expires`. It names the addresses the sender wrote, never the message's content."""
    language = settings.language
    template = _template(language, "sender-confirm.txt")
    shown = [printable(a, 320) for a in held.confirm[:MAX_DOMAINS_SHOWN]]
    rest = len(held.confirm) - len(shown)
    recipients = "\n".join(f"  {a}" for a in shown) + (
        f"\n  {_word(language, 'more', n=rest)}" if rest > 0 else "")
    fields = {
        "recipients": recipients,
        "domains": domain_list(language, held.domains),
        "held_at": held.held_at.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M"),
        "expires": expires.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M"),
        "organisation": printable(organisation, 200),
        "send_link": links[0],
        "cancel_link": links[1],
        "record_id": held.record_id,
    }
    return _message(settings.sender_address, to, template.subject.substitute(fields),
                    template.body.substitute(fields), now)


def digest(waiting: Sequence[Held], to: str, settings: NoticeSettings, organisation: str,
           period: DigestPeriod, now: dt.datetime) -> Outgoing:
    """The reviewers' list of what waits (oldest first), for one reviewer `to`."""
    language = settings.language
    entry = _template(language, "digest-entry.txt").body
    shown = sorted(waiting, key=lambda h: (h.held_at, h.record_id))[:MAX_DIGEST_ENTRIES]
    entries = [entry.substitute(
        record_id=h.record_id, standing=words(language)[f"standing.{h.standing.value}"],
        age=age(language, (now - h.held_at).total_seconds()),
        domains=domain_list(language, h.domains), rule_text=rule_text(language, h.rule),
        link=settings.link(h.record_id)) for h in shown]
    if len(waiting) > len(shown):
        entries.append(_word(language, "more", n=len(waiting) - len(shown)) + "\n")
    template = _template(language, "digest.txt")
    fields = {"count": len(waiting), "organisation": printable(organisation, 200),
              "entries": "\n".join(entries), "review_url": settings.review_url,
              "period": words(language)[f"period.{period.value}"]}
    return _message(settings.sender_address, to, template.subject.substitute(fields),
                    template.body.substitute(fields), now)


def _message(sender: str, to: str, subject: str, body: str, now: dt.datetime) -> Outgoing:
    # Lines end in LF, as sendmail(1) reads a message; a line break in a header value
    # raises instead of starting a header of its own.
    message = EmailMessage(policy=email.policy.default)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(now)
    domain = sender.rpartition("@")[2]
    message["Message-ID"] = f"<postwacht.{secrets.token_hex(12)}@{domain}>"
    # RFC 3834: automatic, so that auto-responders and vacation replies stay silent.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    # 8bit keeps the text readable as it is; quoted-printable only where a line would
    # be longer than SMTP allows.
    longest = max((len(line.encode()) for line in body.splitlines()), default=0)
    message.set_content(body, charset="utf-8",
                        cte="8bit" if longest <= 990 else "quoted-printable")
    return Outgoing(sender, to, message.as_bytes())
