"""The addresses a message shows its recipients in To and Cc, read as the headers pass
(the milter translates header text into addresses; the core counts them).

Bounded whatever the message: at most `MAX_HEADER_CHARS` of To/Cc text are kept, and at
most `MAX_VISIBLE` addresses come out, so a header listing a million addresses costs no
more than one listing a thousand (the exposed-recipients rule needs only to know that the
count passed its limit).
"""

from __future__ import annotations

import email.utils

VISIBLE_HEADERS = frozenset({"to", "cc"})
MAX_HEADER_CHARS = 256 * 1024
MAX_VISIBLE = 10_000


class VisibleRecipients:
    """Collects To and Cc header values of one message."""

    def __init__(self) -> None:
        self._values: list[str] = []
        self._size = 0

    def header(self, name: str, value: str) -> None:
        if name.lower() not in VISIBLE_HEADERS or self._size >= MAX_HEADER_CHARS:
            return
        kept = value[:MAX_HEADER_CHARS - self._size]
        self._size += len(kept)
        self._values.append(kept)

    def addresses(self) -> tuple[str, ...] | None:
        """The distinct addresses (lower-cased, each with an '@'), in order of appearance;
        None when a value cannot be parsed (deeply nested comments make the standard
        library's parser recurse until it gives up): unknown, never "nobody"."""
        seen: dict[str, None] = {}
        for value in self._values:
            try:
                pairs = email.utils.getaddresses([value])
            except (RecursionError, ValueError, IndexError, TypeError):
                return None
            for _name, written in pairs:
                address = written.strip().lower()
                if "@" in address:
                    seen.setdefault(address, None)
                    if len(seen) >= MAX_VISIBLE:
                        return tuple(seen)
        return tuple(seen)
