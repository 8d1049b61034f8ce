"""Text from outside made safe to keep and to show, and the shape of a Postfix queue id.

Everything a sender or a client on the milter port chooses (addresses, macros, a queue
id) ends up in a log line, a record or on a reviewer's terminal. A line break there forges
a log line; an escape sequence rewrites the terminal; a byte that was not UTF-8 (pymilter
hands it over as a lone surrogate) cannot be written to a database at all. `printable`
makes such text one line of visible characters, reversibly enough to read what was sent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Control, format (bidi overrides, zero widths), surrogate and line/paragraph separators."""
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
CUT = "..."

_SAFE51 = "0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y"
"""Postfix's vowel-free alphabet for long queue ids, without 'z' (the inode's base 51)."""
QUEUE_ID_MAX = 32
ROUTE_MAX = 1000
"""Characters of a route (`relay:[provider]:587`, `nta7516:[h1]:25,[h2]:25`): what the
filter writes into a message's header and a hold's record keeps whole, well inside
Postfix's line_length_limit (2048)."""
_QUEUE_ID = re.compile(
    r"[0-9A-F]{6,21}"  # short: 5 hex digits of microseconds, then the inode in hex
    rf"|[{_SAFE51}z]{{10,16}}z[{_SAFE51}]{{1,13}}"  # long: time (base 52), 'z', inode
)


def is_queue_id(text: str) -> bool:
    """Whether `text` has the shape of a Postfix queue id, short or long
    (`enable_long_queue_ids`): only the characters Postfix uses, bounded length."""
    return len(text) <= QUEUE_ID_MAX and _QUEUE_ID.fullmatch(text) is not None


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _visible(char: str) -> str:
    return _escape(char) if unicodedata.category(char) in _HIDDEN else char


def _shown(char: str) -> str:
    return char if char in "\n\t" else _visible(char)


def one_word(text: str, limit: int) -> bool:
    """Whether `text` can name someone or something in records and logs as it is: one
    printable word of 1 to `limit` characters."""
    return 0 < len(text) <= limit and printable(text, limit) == text and text.split() == [text]


def printable(text: str, limit: int = 512) -> str:
    """`text` as one line of visible characters, at most `limit` of them (then `...`).

    Control and format characters, line separators and undecodable bytes are written as
    escapes (`\\n`, `\\x1b`, `\\u202e`, `\\xe9`); printable text, backslashes included,
    is left as it is. So the result is safe to log, store and print, and escaping it again
    changes nothing: each layer may escape what it is handed without garbling it.
    """
    if text.isascii() and text.isprintable():  # the common case, without a look per char
        return text if len(text) <= limit else text[:limit] + CUT
    return _bounded(map(_visible, text), limit)


def terminal_text(text: str, limit: int = 1_000_000) -> str:
    """Like `printable`, but keeps line breaks and tabs: for multi-line output such as a
    message's headers, so that what a sender wrote cannot drive the reviewer's terminal."""
    return _bounded(map(_shown, text), limit)


def _bounded(pieces: Iterable[str], limit: int) -> str:
    out: list[str] = []
    length = 0
    for piece in pieces:
        length += len(piece)
        if length > limit:
            out.append(CUT)
            break
        out.append(piece)
    return "".join(out)
