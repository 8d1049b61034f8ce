"""What review may see of a held message, made from the message as Postfix holds it.

Review runs unprivileged and far from the queue, and shows what it is given to a person in
a browser; so the MTA makes a safe view once, and review never touches the message:
every header decoded into one printable line, the first plain-text part as text, and of
each attachment only its name, type and size. HTML is never rendered: an HTML-only
message is shown as its source text, which the web page escapes like any other text.
Every BSN is masked, wherever a sender put it.

The message is untrusted and may be damaged or cut short (the MTA reads at most a few MiB
of it): whatever the `email` package cannot make sense of becomes a note on the view,
never an exception, and every list and text is bounded.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import re
from dataclasses import dataclass, field
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import Message
from email.parser import BytesParser

from postwacht import defaults
from postwacht.core.classify import mask_bsn
from postwacht.core.text import printable, terminal_text
from postwacht.records.store import Attachment, HeldContent

TEXT_MAX = 256 * 1024
"""Characters of text shown; the rest is left out, with a note."""
HEADERS_MAX = 200
HEADER_VALUE_MAX = 990
"""Characters of one header's value as shown (a DKIM signature is about 500), with the
cut mark within the 1000 the records store keeps."""
HEADER_RAW_MAX = 16 * HEADER_VALUE_MAX
"""Characters of a header's raw value decoded at all: enough for any value shown whole."""
ATTACHMENTS_MAX = 100
PARTS_MAX = 1000
"""MIME parts looked at; a message of more is a note."""
NAME_MAX = 200
TYPE_MAX = 100
_MARGIN = 64
"""Characters decoded past TEXT_MAX, so that a number across the cut is still masked."""
_UNSAFE_CODECS = frozenset({"punycode", "idna", "unicode_escape", "raw_unicode_escape"})
"""Charsets a sender may name that are slow on large input or turn escapes into
characters; the text is decoded as UTF-8 instead."""
_FOLD = re.compile(r"\r?\n[ \t]+")


@dataclass
class _View:
    """The view being made: what the walk over the parts found so far."""

    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    more_attachments: int = 0
    other_texts: int = 0
    html_beside_text: bool = False
    notes: list[str] = field(default_factory=list)
    damage: set[str] = field(default_factory=set)


def held_content(raw: bytes, truncated: bool) -> HeldContent:
    """The view of `raw` (the message's header and body, as `postcat -h -b` prints them)
    that review may show; `truncated`: there was more than `raw` holds."""
    view = _View()
    if truncated:
        view.notes.append(f"the message is larger than the {_mib(defaults.CONTENT_READ_MAX)} "
                          "read for review: the rest is missing (a part cut there shows what "
                          "arrived of it)")
    try:
        message = _parsed(raw)
    except Exception as exc:  # noqa: BLE001 - an unreadable message is a note, not a crash
        # Its parts nested too deep, say: the headers alone can still be read.
        view.notes.append(f"the message's parts could not be read ({_why(exc)}): only its "
                          "headers are shown")
        try:
            top = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
        except Exception as again:  # noqa: BLE001
            view.notes.append(f"nor could its headers ({_why(again)})")
            return HeldContent((), "", (), tuple(view.notes))
        return HeldContent(_headers(top, view), "", (), tuple(view.notes))
    headers = _headers(message, view)
    try:
        _walk(message, view)
    except Exception as exc:  # noqa: BLE001 - the email package's bugs too: a note
        view.notes.append(f"the message's parts could not all be read ({_why(exc)}): shown "
                          "as far as they could")
    return HeldContent(headers, _text(view), tuple(view.attachments), tuple(_notes(view)))


def _parsed(raw: bytes) -> Message:
    """The message with its parts; ValueError when it has more than review reads: the
    parser's cost grows with the parts, whatever is later shown of them, and thousands
    of tiny parts would hold the release helper for a minute."""
    boundaries = raw.count(b"\n--")
    if boundaries > PARTS_MAX:
        raise ValueError(f"about {boundaries} part boundaries, more than the {PARTS_MAX} "
                         "review reads")
    return email.message_from_bytes(raw, policy=email.policy.default)


def _headers(message: Message, view: _View) -> tuple[tuple[str, str], ...]:
    registry = HeaderRegistry(default_class=UnstructuredHeader, use_default_map=False)
    shown: list[tuple[str, str]] = []
    try:
        items = list(message.raw_items())
    except Exception as exc:  # noqa: BLE001 - the email package's bugs too: a note
        view.notes.append(f"the headers could not be read ({_why(exc)})")
        return ()
    for name, value in items[:HEADERS_MAX]:
        shown.append((_safe(str(name), NAME_MAX),
                      _safe(_header_value(registry, str(value)), HEADER_VALUE_MAX)))
    if len(items) > HEADERS_MAX:
        view.notes.append(f"{len(items) - HEADERS_MAX} more headers are not shown (only the "
                          f"first {HEADERS_MAX})")
    return tuple(shown)


def _header_value(registry: HeaderRegistry, raw: str) -> str:
    """The value decoded for a person: encoded words decoded, 8-bit text read as UTF-8,
    folded lines joined. Every header is read as unstructured text: an address header
    whose syntax is broken still shows what the sender wrote."""
    raw = _FOLD.sub(" ", raw[:HEADER_RAW_MAX])
    try:
        return str(registry("X-Shown", raw))
    except Exception:  # noqa: BLE001 - the raw value still says what was sent
        return raw


def _walk(message: Message, view: _View) -> None:
    """Each part in document order, without recursion (a sender chooses the depth)."""
    stack = [message]
    seen = 0
    while stack:
        part = stack.pop()
        seen += 1
        if seen > PARTS_MAX:
            view.notes.append(f"the message has more than {PARTS_MAX} parts: the rest are "
                              "not looked at")
            return
        view.damage.update(type(d).__name__ for d in part.defects)
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(c for c in reversed(children) if isinstance(c, Message))
            continue
        try:
            _take(part, view)
        except Exception as exc:  # noqa: BLE001 - the email package's bugs too: a note
            view.notes.append(f"a part could not be read ({_why(exc)})")


def _take(part: Message, view: _View) -> None:
    """One leaf part (a forwarded message counts as one: its content is not shown)."""
    ctype = part.get_content_type()
    name = part.get_filename()
    if name is not None or part.get_content_disposition() == "attachment" or \
            part.get_content_maintype() != "text":
        _attach(part, ctype, name or "", view)
    elif ctype == "text/plain" and view.text is None:
        view.text = _decoded(part, view)
    elif ctype == "text/html" and view.html is None:
        view.html = _decoded(part, view)
    else:
        view.other_texts += 1


def _attach(part: Message, ctype: str, name: str, view: _View) -> None:
    if len(view.attachments) >= ATTACHMENTS_MAX:
        view.more_attachments += 1
        return
    if part.is_multipart():  # a forwarded message: its size as it is written
        inner = part.get_payload()
        size = sum(len(m.as_bytes()) for m in inner if isinstance(m, Message)) \
            if isinstance(inner, list) else 0
    else:
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
    view.attachments.append(Attachment(_safe(name, NAME_MAX), _safe(ctype, TYPE_MAX), size))


def _decoded(part: Message, view: _View) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = data.decode(_codec(charset), errors="replace")
    except (LookupError, ValueError):  # unknown, or a codec not for text (base64, zlib)
        view.notes.append(f"a text part names the charset {_safe(charset, 40)!r}, which is "
                          "unknown here: read as UTF-8")
        text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _codec(charset: str) -> str:
    """The codec for `charset`; LookupError when there is none, or it is unsafe."""
    name = codecs.lookup(charset).name
    if name in _UNSAFE_CODECS:
        raise LookupError(f"{name} is not decoded here")
    return name


def _text(view: _View) -> str:
    text = view.text if view.text is not None else view.html or ""
    if view.text is None and view.html is not None:
        view.notes.append("only an HTML body: shown as its source text")
    elif view.text is not None and view.html is not None:
        view.html_beside_text = True
    cut = len(text) > TEXT_MAX
    # Every escape is at most 10 characters: nothing is cut before the cut below.
    shown = terminal_text(mask_bsn(text[:TEXT_MAX + _MARGIN]), 10 * (TEXT_MAX + _MARGIN))
    if cut or len(shown) > TEXT_MAX:
        shown = shown[:TEXT_MAX]
        view.notes.append(f"the text is longer than review shows: only its first "
                          f"{TEXT_MAX // 1024} KiB characters")
    return shown


def _notes(view: _View) -> list[str]:
    notes = list(view.notes)
    if view.html_beside_text:
        notes.append("an HTML version of the text is not shown (review never renders HTML)")
    if view.other_texts:
        notes.append(f"{view.other_texts} more text part(s) not shown")
    if view.more_attachments:
        notes.append(f"{view.more_attachments} more attachment(s) not listed (only the first "
                     f"{ATTACHMENTS_MAX})")
    if view.damage:
        found = ", ".join(sorted(view.damage)[:10])
        notes.append(f"the message's MIME structure is damaged ({found}): shown as far as it "
                     "could be read")
    return notes


def _safe(text: str, limit: int) -> str:
    """One printable line without a BSN: masked before the cut, so no cut leaves a
    number's first digits readable."""
    return printable(mask_bsn(text), limit)


def _why(exc: Exception) -> str:
    return printable(f"{type(exc).__name__}: {exc}", 200)


def _mib(size: int) -> str:
    return f"{size / 1048576:g} MiB"
