"""Is this message sensitive? Markers, sender groups and content detectors.

The answer names what decided (a marker, a sender group, a detector), never the matched
content. Content is scanned while it streams by, up to a byte cap, keeping only a small
window between chunks, so a large message does not grow memory. Parts sent as base64
text (attachments) are decoded line by line before scanning.

Precedence: a detector hit makes the message sensitive whatever a marker says (content
is evidence, a subject tag is a claim); then the first matching marker; then a sender
group; then the policy's default.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

CONTEXT = re.compile(
    rb"(?i)(?<![a-z])(bsn|burger\s?service\s?nummer|burgerservice-nummer|sofi-?nummer)(?![a-z])"
)
NINE_DIGITS = re.compile(
    rb"(?<![\d.,])(?<!\d-)"  # not the tail of a longer number; "BSN-123456782" is fine
    rb"(\d{8,9}|\d{3}[ .-]\d{3}[ .-]\d{3}|\d{4}[ .-]\d{2}[ .-]\d{3})"
    rb"(?![\d]|[.,-]\d)"
)
CONTEXT_WORDS = (b"bsn", b"burger", b"sofi")
"""Every context word starts with one of these: a fast look before the pattern's."""
SPACES = re.compile(rb"\xc2\xa0|\xa0|&nbsp;|&#160;|&#xa0;", re.IGNORECASE)
CONTEXT_WINDOW = 120
"""Bytes either side of a number searched for a context word (a table header row)."""
CARRY = 256


def passes_eleven_test(digits: str) -> bool:
    """The BSN 11-test: 9*d1 + 8*d2 + ... + 2*d8 - d9 is a multiple of 11 (and not 0)."""
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    total = sum((9 - i) * int(d) for i, d in enumerate(digits[:8])) - int(digits[8])
    return total % 11 == 0


def find_bsn(text: bytes) -> bool:
    """A number passing the 11-test with a BSN context word near it.

    Eight digits count too: spreadsheets drop a BSN's leading zero.
    """
    lowered = text.lower()  # ASCII only, as the pattern's (?i) on bytes
    if not any(word in lowered for word in CONTEXT_WORDS):
        return False  # most text: no context word, so no number needs the 11-test
    text = SPACES.sub(b" ", text)  # before the context pattern: "burger&nbsp;service"
    if CONTEXT.search(text) is None:
        return False
    for match in NINE_DIGITS.finditer(text):
        digits = re.sub(rb"\D", b"", match.group(1)).decode().rjust(9, "0")
        if not passes_eleven_test(digits):
            continue
        window = text[max(0, match.start() - CONTEXT_WINDOW) : match.end() + CONTEXT_WINDOW]
        if CONTEXT.search(window):
            return True
    return False


_SEPARATOR = r"(?:[ \t.\-\u00a0]|&nbsp;|&#160;|&#xa0;)"
_NUMBER_IN_TEXT = re.compile(
    # The detector's shapes, on text, with the spaces it normalises (a non-breaking space,
    # as a character or an HTML entity) and tabs as separators; but looser bounds: only a
    # digit next to it makes it part of something longer (a BSN in CSV, in a file name
    # after a date, or after a dot is masked too: masking more costs a reviewer little).
    r"(?<!\d)"
    rf"(\d{{8,9}}|\d{{3}}{_SEPARATOR}\d{{3}}{_SEPARATOR}\d{{3}}"
    rf"|\d{{4}}{_SEPARATOR}\d{{2}}{_SEPARATOR}\d{{3}})"
    r"(?!\d)",
    re.IGNORECASE,
)
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
"""Characters that show as nothing: between a BSN's digits they would keep it readable
and unmatched."""
MASK_VISIBLE = 2
"""Digits left readable at the end of a masked number: enough to tell two apart."""


def _masked(match: re.Match[str]) -> str:
    number = match.group(0)
    # Any script's decimal digits count: a number typed in full-width digits is still a BSN.
    digits = "".join(str(int(c)) for c in number if c.isdecimal())
    if not passes_eleven_test(digits.rjust(9, "0")):
        return number
    hide = len(digits) - MASK_VISIBLE
    out: list[str] = []
    for char in number:
        if char.isdecimal() and hide > 0:
            out.append("*")
            hide -= 1
        else:
            out.append(char)
    return "".join(out)


def mask_bsn(text: str) -> str:
    """`text` with every number that could be a BSN (the detector's shapes, passing the
    11-test) masked but for its last two digits (`*******82`), separators kept.

    Unlike the detector, no context word is needed: what review shows must not carry a
    BSN, and a masked order number costs a reviewer little.
    """
    return _NUMBER_IN_TEXT.sub(_masked, _INVISIBLE.sub("", text))


DETECTORS = {"bsn": find_bsn}


class TextPattern(Protocol):
    """A compiled pattern; the policy compiles markers with a linear-time engine."""

    def search(self, text: str) -> object: ...


@dataclass(frozen=True, slots=True)
class Marker:
    means_sensitive: bool
    pattern: TextPattern
    header: str
    """Lower-case header name the pattern is matched against ("subject" for subject markers)."""
    label: str


@dataclass(frozen=True, slots=True)
class SenderGroup:
    means_sensitive: bool
    addresses: frozenset[str]
    domains: frozenset[str]
    label: str

    def has(self, sender: str) -> bool:
        sender = sender.lower()
        return sender in self.addresses or sender.rpartition("@")[2] in self.domains


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """The compiled `sensitive:` section of a policy."""

    default_sensitive: bool
    markers: tuple[Marker, ...]
    senders: tuple[SenderGroup, ...]
    detectors: tuple[str, ...]
    max_scan_bytes: int

    @property
    def reads_headers(self) -> bool:
        return bool(self.markers or self.detectors)

    @property
    def reads_body(self) -> bool:
        return bool(self.detectors)


@dataclass(frozen=True, slots=True)
class Classification:
    sensitive: bool
    reason: str
    detector: str = ""
    """The detector that found the message sensitive ('' when none did)."""


def _encodable(value: str) -> str:
    """Bytes that were not UTF-8 arrive as lone surrogates, which the pattern engine
    cannot encode: show them as escapes so the marker still runs."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Classifier:
    """Classifies one message as its headers and body stream by.

    `sees_headers` and `sees_body` say whether the caller will pass them at all: a milter
    connection negotiated under an older policy may not carry the content this policy
    reads, and content that was never seen cannot vouch for a message.
    """

    rules: Sensitivity
    sender: str
    sees_headers: bool = True
    sees_body: bool = True
    _marker: Marker | None = None
    _hit: str | None = None
    _scanned: int = 0
    _carry: bytes = b""
    _scanner: _MimeScanner = field(init=False)

    def __post_init__(self) -> None:
        self._scanner = _MimeScanner(self._scan)

    def header(self, name: str, value: str) -> None:
        lowered = name.lower()
        if self._marker is None:
            for marker in self.rules.markers:
                if marker.header == lowered and marker.pattern.search(_encodable(value)):
                    self._marker = marker
                    break
        self._scanner.top_header(lowered, value)
        if self.rules.detectors and self._hit is None:
            self._scan_text(value.encode("utf-8", "replace"))

    def body(self, chunk: bytes) -> None:
        if self._hit is None and self.rules.detectors and self._scanned < self.rules.max_scan_bytes:
            room = self.rules.max_scan_bytes - self._scanned
            self._scanned += min(len(chunk), room)
            self._scanner.feed(chunk[:room])

    def _scan(self, data: bytes) -> None:
        if self._hit is None:
            self._scan_text(self._carry + data)
            self._carry = (self._carry + data)[-CARRY:]

    def _scan_text(self, text: bytes) -> None:
        for name in self.rules.detectors:
            if DETECTORS[name](text):
                self._hit = name
                return

    def result(self) -> Classification:
        if self._hit is not None:
            return Classification(True, f"detector {self._hit}", self._hit)
        unseen = ((self.rules.reads_headers and not self.sees_headers)
                  or (self.rules.reads_body and not self.sees_body))
        if unseen:
            return Classification(True, "content not seen on this connection (it opened "
                                        "before the policy asked for it): treated as sensitive")
        if self._marker is not None:
            return Classification(self._marker.means_sensitive, f"marker {self._marker.label}")
        for group in self.rules.senders:
            if group.has(self.sender):
                return Classification(group.means_sensitive, f"sender group {group.label}")
        if self.rules.default_sensitive:
            return Classification(True, "sensitive by default")
        return Classification(False, "not sensitive by default")


_LINE_END = re.compile(rb"\r+\n")
"""A line end with the carriage returns a line-by-line reading strips."""


def _unix_lines(text: bytes) -> bytes:
    """`text` with each line's carriage returns gone, as `_LINE_END` says; a plain replace
    first, since nearly every line ends in exactly one (and the pattern costs more)."""
    text = text.replace(b"\r\n", b"\n")
    return _LINE_END.sub(b"\n", text) if b"\r\n" in text else text


_BOUNDARY = re.compile(rb'(?i)boundary\s*=\s*"?([^";\s]+)"?')


class _MimeScanner:
    """Feeds body text to `scan`, decoding base64 parts line by line and joining
    quoted-printable soft line breaks.

    Only what is needed to find the text is parsed: boundaries, and each part's
    Content-Type and Content-Transfer-Encoding. Memory stays one line plus a few bytes.
    """

    def __init__(self, scan: Callable[[bytes], None]) -> None:
        self._scan = scan
        self._line = b""
        self._boundaries: set[bytes] = set()
        self._base64 = False
        self._qp = False
        self._in_headers = False
        self._header = b""
        self._part_type = b""
        self._part_encoding = b""
        self._pending = b""
        self._text: list[bytes] = []
        """Plain text lines not yet scanned: scanned together, once per chunk fed."""

    def top_header(self, name: str, value: str) -> None:
        raw = value.encode("utf-8", "replace")
        if name == "content-transfer-encoding":
            self._base64 = raw.strip().lower() == b"base64"
            self._qp = raw.strip().lower() == b"quoted-printable"
        elif name == "content-type":
            self._note_boundary(raw)

    def _note_boundary(self, content_type: bytes) -> None:
        found = _BOUNDARY.search(content_type)
        if found:
            self._boundaries.add(found.group(1))

    def feed(self, chunk: bytes) -> None:
        data, pos = self._line + chunk, 0
        while True:
            if self._in_headers or data.startswith(b"--", pos):
                # A boundary or a part header: one line at a time.
                end = data.find(b"\n", pos)
                if end < 0:
                    break
                self._take(data[pos:end].rstrip(b"\r"))
                pos = end + 1
                continue
            # Up to the next line that could be a boundary, the part's text is taken
            # whole (most of a large attachment), not line by line.
            candidate = data.find(b"\n--", pos)
            stop = candidate + 1 if candidate >= 0 else data.rfind(b"\n", pos) + 1
            if stop <= pos:
                break
            self._flush()
            if not self._whole(data[pos:stop]):
                for line in data[pos:stop - 1].split(b"\n"):
                    self._take(line.rstrip(b"\r"))
            pos = stop
        self._line = data[pos:]
        if len(self._line) > 4096:  # no line structure: scan it raw, keep memory flat
            self._take(self._line)
            self._line = b""
        self._flush()

    def _whole(self, text: bytes) -> bool:
        """Scan complete lines of the current part at once; False when they need the
        line-by-line way (base64 with padding inside, which ends a decoder's run)."""
        if self._base64:
            if b"=" in text:
                return False
            self._decode(text.translate(None, b" \t\r\n"))
        elif self._qp:
            self._scan(_unix_lines(text).replace(b"=\n", b""))
        else:
            # Line ends as the line-by-line reading leaves them (no CR): a word wrapped
            # across lines, and the context window, stay what they were.
            self._scan(_unix_lines(text))
        return True

    def _flush(self) -> None:
        """Scan what this chunk gave: text as it is, base64 decoded in whole quanta (the
        rest waits for the next chunk)."""
        if not self._text:
            return
        if self._base64:
            # Padding inside the text ends a decoder's run: such lines go one by one, as
            # each may start a new run (a BSN after it must not hide there).
            padded = any(b"=" in line for line in self._text)
            for part in (self._text if padded else [b"".join(self._text)]):
                self._decode(part)
        else:
            self._scan(b"".join(self._text))
        self._text.clear()

    def _decode(self, data: bytes) -> None:
        self._pending += data
        usable = len(self._pending) - len(self._pending) % 4
        try:
            decoded = base64.b64decode(self._pending[:usable])
        except (binascii.Error, ValueError):
            decoded = b""
        self._pending = self._pending[usable:]
        self._scan(decoded)

    def _take(self, line: bytes) -> None:
        if line.startswith(b"--") and line[2:].rstrip().removesuffix(b"--") in self._boundaries:
            self._flush()
            self._in_headers, self._base64, self._qp, self._pending = True, False, False, b""
            self._header = self._part_type = self._part_encoding = b""
            return
        if self._in_headers:
            self._part_header(line)
            return
        if not self._base64:
            if self._qp and line.endswith(b"="):
                self._text.append(line[:-1])  # a soft line break: the text goes on
            else:
                self._text.append(line + b"\n")
            return
        self._text.append(line.strip())

    def _part_header(self, line: bytes) -> None:
        if not line:
            self._in_headers = False
            self._note_boundary(self._part_type)
            # Text, spreadsheets and documents: decode; pictures and sound carry no BSN
            # worth the cost and the false matches.
            media = self._part_type.lower()
            self._base64 = (self._part_encoding == b"base64"
                            and not media.startswith((b"image/", b"audio/", b"video/")))
            self._qp = self._part_encoding == b"quoted-printable"
            return
        if line[:1] in (b" ", b"\t"):
            line = self._header + b" " + line.strip()
        self._header = line
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            self._part_type = value.strip()  # boundaries are case-sensitive
        elif name.strip().lower() == b"content-transfer-encoding":
            self._part_encoding = value.strip().lower()
