"""Who has been mailed, read from a Postfix mail log: to seed the first-recipient guard.

Postfix logs a message's sender once qmgr takes it in (`QUEUEID: from=<...>, size=...`,
again each time a deferred message comes back to the active queue) and each delivery
by the SMTP or LMTP client (`QUEUEID: to=<...>, ..., status=sent (...)`); qmgr's
`QUEUEID: removed` ends the message. So a delivered recipient is joined to its sender by
the queue id (and the host that logged it: a central log holds several MTAs). Both the
traditional syslog time (`Nov 23 10:00:00`) and ISO 8601 (Postfix's own `maillog_file`,
rsyslog's high-precision form) are read, with any instance name (`postfix-out/smtp`) or
service name (`postfix/relay/smtp`).

Only what an internal sender delivered to an outside recipient counts: never the null
sender (bounces, delivery notices), never a deferral or a bounce. Memory stays bounded
whatever the file: the open messages remembered are at most `QUEUE_MAX` (the oldest
forgotten first), and a line longer than `LINE_MAX` is skipped (`lines` reads a file so
that such a line is never held whole). Text that was not UTF-8 arrives replaced (open
the file with errors="replace"), and an address holding such a character is not learnt:
it could never match what the milter sees.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from postwacht.core.text import is_queue_id

LINE_MAX = 8192
"""Characters of a log line read at most (Postfix's own lines are far shorter)."""
QUEUE_MAX = 100_000
"""Messages whose sender is remembered while their deliveries are awaited."""
DELIVERING = frozenset({"smtp", "lmtp"})
REPLACED = "\ufffd"

_LINE = re.compile(
    r"(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}"  # Nov 23 10:00:00
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"  # ISO 8601
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)"
    r" (?P<host>\S+) (?P<program>[^\s\[:]+)(?:\[[0-9]+\])?: (?P<text>.*)")
_EVENT = re.compile(r"(?P<queue_id>[0-9A-Za-z]+): (?P<event>.*)")
_FROM = re.compile(r"from=<(?P<address>.*)>, size=[0-9]+, nrcpt=[0-9]+ \(queue active\)")
_TO = re.compile(
    r"to=<(?P<address>.*?)>, (?:orig_to=<.*?>, )?relay=\S+, (?:conn_use=[0-9]+, )?"
    r"delay=[0-9.]+, delays=[0-9./]+, dsn=[0-9.]+, status=(?P<status>[a-z]+)(?: |\Z)")


@dataclass
class Tally:
    """What a reading found, for the person who asked for it."""

    lines: int = 0
    skipped: int = 0
    """Lines too long, not shaped as a log line, or naming an address that was garbled."""
    delivered: int = 0
    """Deliveries yielded: from an internal sender to an outside recipient."""


class MailLog:
    """A reader that keeps the open messages between calls of `pairs` (a rotated log
    and its successor, read one after the other, join across the rotation)."""

    def __init__(self, internal: Callable[[str], bool], outside: Callable[[str], bool],
                 *, queue_max: int = QUEUE_MAX) -> None:
        self._internal = internal
        self._outside = outside
        self._queue_max = queue_max
        self._senders: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.tally = Tally()

    def pairs(self, lines: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(sender, recipient) of each delivery, in the log's order, as the log wrote
        them."""
        for line in lines:
            self.tally.lines += 1
            found = self._read(line)
            if found is not None:
                self.tally.delivered += 1
                yield found

    def _read(self, line: str) -> tuple[str, str] | None:
        line = line.rstrip("\r\n")
        shaped = _LINE.fullmatch(line) if len(line) <= LINE_MAX else None
        if shaped is None:
            self.tally.skipped += 1
            return None
        program = shaped["program"].split("/")
        event = _EVENT.fullmatch(shaped["text"])
        if len(program) < 2 or event is None or not is_queue_id(event["queue_id"]):
            return None  # another program, or a line about no one message
        message = (shaped["host"], event["queue_id"])
        if program[-1] == "qmgr":
            self._qmgr(message, event["event"])
            return None
        if program[-1] not in DELIVERING:
            return None
        sent = _TO.match(event["event"])
        if sent is None or sent["status"] != "sent" or message not in self._senders:
            return None
        sender, recipient = self._senders[message], sent["address"]
        if REPLACED in recipient:
            self.tally.skipped += 1
            return None
        if not recipient or not self._outside(recipient):
            return None
        return sender, recipient

    def _qmgr(self, message: tuple[str, str], event: str) -> None:
        if event == "removed":
            self._senders.pop(message, None)
            return
        taken = _FROM.fullmatch(event)
        if taken is None:
            return
        self._senders.pop(message, None)  # what this line says replaces what was known
        sender = taken["address"]
        if REPLACED in sender:
            self.tally.skipped += 1
            return
        if not sender or not self._internal(sender):
            return  # the null sender (a bounce, a notice), or someone else's mail
        self._senders[message] = sender
        while len(self._senders) > self._queue_max:
            self._senders.popitem(last=False)


def pairs(lines: Iterable[str], internal: Callable[[str], bool],
          outside: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """(sender, recipient) for every recipient the SMTP or LMTP client delivered
    (status=sent), from an `internal` sender (never the null sender) to an `outside`
    recipient, as the log wrote them."""
    return MailLog(internal, outside).pairs(lines)


def lines(stream: TextIO) -> Iterator[str]:
    """The lines of `stream`, never more than LINE_MAX + 1 characters of one held: the
    start of a longer line is yielded (for `pairs` to skip) and the rest passed over."""
    while line := stream.readline(LINE_MAX + 1):
        yield line
        while len(line) > LINE_MAX and not line.endswith("\n"):
            line = stream.readline(LINE_MAX + 1)
