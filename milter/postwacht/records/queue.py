"""Postfix's queue, and carrying out one review request on it.

`Postfix` runs the queue commands (postqueue, postcat, postsuper, postkick, postconf) for
one configuration directory; a queue id is checked for Postfix's shape before any
command sees it, so it is never an option, `ALL` or `-`.

`carry_out` is the privileged step of review, run by the release helper as root: it
trusts nothing it is handed. The request and its record are read from the store, and it
acts only on a pending request whose record is on this MTA and waits for it, on a
message that is in the hold queue and carries the record's key in its last
X-Postwacht-Quarantine header, the one the milter added (so a reused queue id never
makes it touch another message, and a header a sender wrote never counts).

`capture` is the helper's other step, under the same checks: it reads the held message
(bounded, `Postfix.message`) and stores what review may see of it (`records.content`),
so that review, unprivileged and elsewhere, never reads the queue.

Mail kept on hold for a fifth of its queue lifetime or more is released with `postsuper
-r` (Postfix's manual: otherwise one temporary failure bounces it as expired); that gives
it a new queue id, which is looked for and handed back. A routed release always uses
`-H`: `-r` sends the message through pickup and cleanup again, which drop the FILTER set
at hold time (checked with Postfix 3.7), so it would leave in the clear.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any

from postwacht import defaults
from postwacht.core.text import is_queue_id, printable
from postwacht.records.content import held_content
from postwacht.records.review import ReviewError, check_release, second_person
from postwacht.records.store import (
    MIGRATED_KEY,
    OPEN,
    QuarantineRecord,
    RecordsError,
    RecordStore,
    ReleaseMode,
    Request,
    Review,
    Status,
)

QUARANTINE_HEADER = "X-Postwacht-Quarantine"
COMMAND_TIMEOUT = 20.0
"""Seconds one Postfix command may take."""
FOLLOW_WINDOW = 15.0
"""Seconds to look for the new queue id of a message released with `postsuper -r`."""
OLD_HOLD_FRACTION = 5
"""Held for 1/5 of the queue lifetime or more: "a significant fraction" (postsuper(1))."""
_TIME = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PostfixError(Exception):
    """A Postfix command failed, or a queue id is not one; the message says which and why."""


def checked_queue_id(queue_id: str) -> str:
    """`queue_id`, if it has Postfix's shape; else PostfixError naming it."""
    if not is_queue_id(queue_id):
        raise PostfixError(f"{printable(queue_id, 64)!r} is not a Postfix queue id")
    return queue_id


@dataclass(frozen=True, slots=True)
class QueueEntry:
    queue_id: str
    queue_name: str
    arrival: dt.datetime | None
    sender: str
    recipients: tuple[str, ...]


class Postfix:
    """The Postfix commands review and the release helper need, for one configuration
    directory (None: Postfix's default)."""

    def __init__(self, config_dir: str | None = None,
                 timeout: float = COMMAND_TIMEOUT) -> None:
        self.config_dir = config_dir
        self._config = ["-c", config_dir] if config_dir else []
        self._timeout = timeout

    def _run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [command, *self._config, *args], capture_output=True, text=True,
                errors="replace", timeout=self._timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise PostfixError(f"{command} {args[0] if args else ''} gave no answer within "
                               f"{self._timeout:g} s") from None
        except OSError as exc:
            raise PostfixError(f"cannot run {command}: {exc.strerror}") from None

    def queue(self) -> list[dict[str, Any]]:
        """Every message in every queue, as `postqueue -j` describes it."""
        result = self._run("postqueue", "-j")
        if result.returncode != 0:
            raise PostfixError(f"postqueue -j failed: {_said(result)}")
        try:
            return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        except ValueError as exc:
            raise PostfixError(f"postqueue -j printed something that is not JSON: {exc}") from None

    def hold_queue(self) -> list[dict[str, Any]]:
        return [e for e in self.queue() if e.get("queue_name") == "hold"]

    def entries(self) -> list[QueueEntry]:
        return [_entry(e) for e in self.queue()]

    def held(self, queue_id: str) -> QueueEntry | None:
        """The message `queue_id` if it is in the hold queue."""
        checked_queue_id(queue_id)
        return next((_entry(e) for e in self.hold_queue() if e.get("queue_id") == queue_id),
                    None)

    def ensure_held(self, queue_id: str) -> None:
        if self.held(queue_id) is None:
            raise PostfixError(f"{queue_id} is not in the hold queue")

    def show(self, queue_id: str, body: bool) -> str:
        flags = ["-e", "-h"] + (["-b"] if body else [])
        return self._postcat(queue_id, *flags)

    def headers(self, queue_id: str) -> str:
        """The message's header as stored (`postcat -h`)."""
        return self._postcat(queue_id, "-h")

    def content_filters(self, queue_id: str) -> list[str]:
        """The FILTER (`content_filter`) records of the queue file: where the message goes
        instead of its ordinary transport. Read from the envelope records only, where a
        sender cannot write."""
        envelope = self._postcat(queue_id, "-e")
        return [line.partition(":")[2].strip() for line in envelope.splitlines()
                if line.startswith("content_filter:")]

    def message(self, queue_id: str, limit: int) -> tuple[bytes, bool]:
        """The message as its recipient would get it (`postcat -h -b`: header and body,
        none of the queue file's envelope records), at most `limit` bytes of it, and
        whether there was more. Read through a pipe and stopped at `limit`: a 50 MiB
        message never comes into memory whole."""
        args = ["postcat", *self._config, "-h", "-b", "-q", "--", checked_queue_id(queue_id)]
        try:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise PostfixError(f"cannot run postcat: {exc.strerror}") from None
        stalled = threading.Event()

        def stop() -> None:
            stalled.set()
            process.kill()

        watchdog = threading.Timer(self._timeout, stop)
        watchdog.start()
        try:
            read, more = _bounded_read(process, limit)
            said = b"" if more else _out(process.stderr).read(4096)
        finally:
            watchdog.cancel()
            process.kill()  # done with it, or not allowed to go on
            process.wait()
            _out(process.stdout).close()
            _out(process.stderr).close()
        if stalled.is_set():
            raise PostfixError(f"postcat {queue_id} gave no answer within {self._timeout:g} s")
        if not more and process.returncode != 0:
            why = printable(said.decode("utf-8", "replace").strip(), 300)
            raise PostfixError(f"postcat {queue_id}: {why or 'no such message'}")
        return read, more

    def _postcat(self, queue_id: str, *flags: str) -> str:
        result = self._run("postcat", *flags, "-q", "--", checked_queue_id(queue_id))
        if result.returncode != 0:
            raise PostfixError(f"postcat {queue_id}: {_said(result) or 'no such message'}")
        return result.stdout

    def postsuper(self, flag: str, queue_id: str) -> None:
        """`postsuper FLAG ID hold` on a message that must be in the hold queue, and must
        have left it afterwards."""
        self.ensure_held(queue_id)
        result = self._run("postsuper", flag, queue_id, "hold")
        if result.returncode != 0 or self.held(queue_id) is not None:
            raise PostfixError(f"postsuper {flag} {queue_id} did not take it out of the hold "
                               f"queue: {_said(result) or 'no reason given'}")

    def deliver_now(self, queue_id: str) -> None:
        """A released message waits in the deferred queue; ask for delivery now. Best
        effort: the queue manager gets to it on its own within queue_run_delay."""
        self._run("postqueue", "-i", checked_queue_id(queue_id))

    def wake_pickup(self) -> None:
        """postsuper -r leaves the message in maildrop; pickup looks there only once a
        minute unless woken."""
        self._run("postkick", "public", "pickup", "W")

    def lifetime(self, sender: str) -> dt.timedelta:
        """How long Postfix keeps trying a message of `sender`: bounce_queue_lifetime for
        the null sender (bounces), else maximal_queue_lifetime."""
        name = "bounce_queue_lifetime" if not sender else "maximal_queue_lifetime"
        return parse_time(name, self.setting(name))

    def setting(self, name: str) -> str:
        """A main.cf setting as Postfix uses it ($names expanded)."""
        result = self._run("postconf", "-x", "-h", name)
        if result.returncode != 0:
            raise PostfixError(f"postconf {name} failed: {_said(result)}")
        return result.stdout.strip()


def _out(stream: IO[bytes] | None) -> IO[bytes]:
    assert stream is not None  # made with PIPE
    return stream


def _bounded_read(process: subprocess.Popen[bytes], limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the process's output, and whether it had more."""
    stdout = _out(process.stdout)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stdout.read(65536)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


def _said(result: subprocess.CompletedProcess[str]) -> str:
    return printable(result.stderr.strip(), 300)


def _entry(raw: dict[str, Any]) -> QueueEntry:
    arrival = raw.get("arrival_time")
    return QueueEntry(
        str(raw.get("queue_id", "")), str(raw.get("queue_name", "")),
        dt.datetime.fromtimestamp(arrival, dt.UTC) if isinstance(arrival, int) else None,
        str(raw.get("sender", "")),
        tuple(str(r.get("address", "")) for r in raw.get("recipients", [])),
    )


def parse_time(name: str, value: str) -> dt.timedelta:
    """A Postfix time value (`5d`, `10s`; days when no unit is given, as for the queue
    lifetimes)."""
    match = _TIME.fullmatch(value)
    if match is None:
        raise PostfixError(f"{name} = {printable(value, 40)!r} is not a time Postfix uses "
                           "(a number and one of s, m, h, d, w)")
    return dt.timedelta(seconds=int(match[1]) * _UNITS[match[2] or "d"])


def quarantine_key(headers: str) -> str | None:
    """The `key=` of the last X-Postwacht-Quarantine header in `headers` ("" when it has
    none: held by a Postwacht from before keys; None without such a header) (as postcat
    prints them: folded lines go on with a blank). The last is the milter's: Postfix puts
    a header a milter adds after the message's own, so one a sender wrote never counts."""
    unfolded: list[str] = []
    for line in headers.splitlines():
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    prefix = QUARANTINE_HEADER.lower() + ":"
    ours = [h for h in unfolded if h.lower().startswith(prefix)]
    if not ours:
        return None
    for part in ours[-1][len(prefix):].split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "key" and value.strip():
            return value.strip()
    return ""


class Step(StrEnum):
    """What postsuper does to a held message."""

    DELETE = "-d"
    RETURN = "-f"
    """Forced expiry: released and returned to the sender as expired (Postfix 3.5+)."""
    RELEASE = "-H"
    REQUEUE = "-r"
    """Released through maildrop, pickup and cleanup: a new queue id and a new queue
    lifetime (not filtered again)."""


def step_for(request: Request, held_for: dt.timedelta, lifetime: dt.timedelta) -> Step:
    """The postsuper step for a request; ValueError naming a mode the action cannot take."""
    action, mode = request.action, request.mode
    if action is Review.DELETE:
        return Step.DELETE
    if action is Review.EXPIRE:
        if mode not in (ReleaseMode.PLAIN, ReleaseMode.RETURN):
            raise ValueError(f"an expiry deletes or returns the message, not {mode}")
        return Step.RETURN if mode is ReleaseMode.RETURN else Step.DELETE
    if mode is ReleaseMode.RETURN:
        raise ValueError("a release cannot return the message to its sender")
    if mode is ReleaseMode.ROUTE or held_for * OLD_HOLD_FRACTION < lifetime:
        return Step.RELEASE
    return Step.REQUEUE


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What became of a request: `queue_id` is the message's new queue id when it got one
    (`""` when it left before it could be seen), None when it kept its own."""

    ok: bool
    detail: str
    queue_id: str | None = None


class RefusedError(Exception):
    """A request the helper will not carry out; the message says why, for a reviewer."""


def carry_out(store: RecordStore, postfix: Postfix, mta: str, request_id: int,
              clock: Callable[[], float] = time.time) -> ActionResult:
    """Carry out request `request_id` on this MTA's hold queue, or say why not."""
    try:
        request, record = _trusted(store, mta, request_id)
        entry = _the_held_message(postfix, mta, record)
        if request.mode is ReleaseMode.ROUTE:
            _check_route(postfix, record)
        held_for = dt.timedelta(seconds=max(0.0, clock() - entry.arrival.timestamp())
                                ) if entry.arrival else dt.timedelta(0)
        lifetime = postfix.lifetime(entry.sender)
        try:
            step = step_for(request, held_for, lifetime)
        except ValueError as exc:
            return ActionResult(False, f"request {request_id}: {exc}: nothing done")
        return _act(postfix, record, entry, step, held_for, lifetime)
    except RefusedError as exc:
        return ActionResult(False, str(exc))
    except (RecordsError, PostfixError) as exc:
        return ActionResult(False, f"request {request_id} could not be carried out: {exc}")


def capture(store: RecordStore, postfix: Postfix, mta: str, record_id: int,
            read_max: int = defaults.CONTENT_READ_MAX) -> ActionResult:
    """Capture what review may see of the message held under record `record_id` on this
    MTA (`records.content`) into the store, or say why not. The same trust as for a
    request: the record is read from the store, is open and on this MTA, and the message
    read is the one in the hold queue under its queue id with its key (looked for in the
    very bytes read, so a message that changed between two looks is never captured)."""
    try:
        record = _capturable(store, mta, record_id)
        entry = _held_entry(postfix, mta, record)
        raw, truncated = postfix.message(record.queue_id, read_max)
        _check_key(quarantine_key(_header_of(raw)), entry, record, mta)
        content = held_content(raw, truncated)
        store.save_content(record_id, content)
    except RefusedError as exc:
        return ActionResult(False, str(exc))
    except (RecordsError, PostfixError) as exc:
        return ActionResult(False, f"the content of record {record_id} could not be captured: "
                                   f"{exc}")
    cut = f", cut at {read_max} bytes" if truncated else ""
    return ActionResult(True, f"captured what review may see of {record.queue_id} "
                              f"({len(raw)} bytes read{cut}, {len(content.attachments)} "
                              "attachment(s))")


def _capturable(store: RecordStore, mta: str, record_id: int) -> QuarantineRecord:
    record = store.record(record_id)
    _check_record(record, mta)
    if record.status not in OPEN:  # a requested one still waits in the hold queue
        raise RefusedError(f"the record of message {record.queue_id} is {record.status}, "
                           "no longer held: nothing captured")
    return record


def _header_of(raw: bytes) -> str:
    """The header of a message as postcat prints it: up to the first empty line."""
    header = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    return header.decode("latin-1")  # only X-Postwacht-Quarantine is read, and it is ASCII


def _the_held_message(postfix: Postfix, mta: str, record: QuarantineRecord) -> QueueEntry:
    """The held message the record is about: in the hold queue, with the record's key."""
    entry = _held_entry(postfix, mta, record)
    _check_key(quarantine_key(postfix.headers(record.queue_id)), entry, record, mta)
    return entry


def _held_entry(postfix: Postfix, mta: str, record: QuarantineRecord) -> QueueEntry:
    entry = postfix.held(record.queue_id)
    if entry is None:
        raise RefusedError(f"message {record.queue_id} is no longer in the hold queue on "
                           f"{mta} (released, deleted or expired outside Postwacht, or "
                           "already acted on): nothing done")
    return entry


def _check_key(found: str | None, entry: QueueEntry, record: QuarantineRecord,
               mta: str) -> None:
    if found == record.key:
        return
    if record.key.startswith(MIGRATED_KEY) and found == "" and entry.sender == record.sender:
        return  # held by a Postwacht from before keys, from the record's sender
    raise RefusedError(f"the message held as {record.queue_id} on {mta} is not the one "
                       "this record is about (its X-Postwacht-Quarantine header lacks the "
                       "record's key: the queue id was reused, or the record was written by "
                       "something other than Postfix's milter conversation): nothing done")


def _trusted(store: RecordStore, mta: str, request_id: int
             ) -> tuple[Request, QuarantineRecord]:
    request = store.request_of(request_id)
    if request.outcome:
        raise RefusedError(f"request {request_id} is finished already ({request.outcome}): "
                           "nothing done again")
    record = store.record(request.record_id)
    where = f"message {record.queue_id}"
    _check_record(record, mta)
    if record.status is not Status.REQUESTED:
        raise RefusedError(f"the record of {where} is {record.status}, not waiting for a "
                           "release or delete: nothing done")
    if record.request is not None and record.request.request_id != request_id:
        raise RefusedError(f"request {request_id} is not the newest on {where} (request "
                           f"{record.request.request_id} is): nothing done")
    if request.action is Review.RELEASE:
        try:
            check_release(record, request.mode)
        except ReviewError as exc:  # the same rules as review's, whoever wrote the request
            raise RefusedError(f"{exc}: nothing done") from None
        # Four eyes, judged again from the record, not from what the request says of itself.
        why = second_person(record, request.mode, request.actor)
        if why and (not request.approved_by or request.approved_by == request.actor):
            raise RefusedError(f"the release of {where} needs a second person ({why}) and "
                               "no other person approved it: nothing done")
    return request, record


def _check_record(record: QuarantineRecord, mta: str) -> None:
    """A record this MTA may act on: its own, with a queue id and a key to find it by."""
    where = f"message {printable(record.queue_id, 64)}"
    if record.mta != mta:
        raise RefusedError(f"{where} is held on MTA {record.mta!r}, not on this one ({mta!r}): "
                           "nothing done")
    if not is_queue_id(record.queue_id):
        raise RefusedError(f"the record's queue id {printable(record.queue_id, 64)!r} is not a "
                           "Postfix queue id: nothing done")
    if not record.key:
        raise RefusedError(f"the record of {where} has no key to recognise the message by: "
                           "nothing done")


def _check_route(postfix: Postfix, record: QuarantineRecord) -> None:
    filters = postfix.content_filters(record.queue_id)
    if not filters or (record.route and record.route not in filters):
        wanted = f" {record.route}" if record.route else ""
        raise RefusedError(f"message {record.queue_id} does not carry the secure route{wanted} "
                           "(Postfix would deliver it the ordinary way): nothing done")


def _act(postfix: Postfix, record: QuarantineRecord, entry: QueueEntry, step: Step,
         held_for: dt.timedelta, lifetime: dt.timedelta) -> ActionResult:
    queue_id = record.queue_id
    before = {e.queue_id for e in postfix.entries()} if step is Step.REQUEUE else set()
    postfix.postsuper(step.value, queue_id)
    # It took: whatever fails from here on, the answer is "done".
    if step is Step.DELETE:
        return ActionResult(True, f"deleted {queue_id} from the hold queue (postsuper -d)")
    if step is Step.RETURN:
        return ActionResult(True, f"expired {queue_id}: returned to the sender as expired "
                                  f"(postsuper -f){_nudged(postfix.deliver_now, queue_id)}")
    if step is Step.RELEASE:
        route = f" through the secure route {record.route}" if record.route else ""
        return ActionResult(True, f"released {queue_id}{route} (postsuper -H)"
                                  f"{_nudged(postfix.deliver_now, queue_id)}")
    age = f"held {_span(held_for)} of a {_span(lifetime)} queue lifetime: postsuper -r"
    nudge = _nudged(lambda _: postfix.wake_pickup(), queue_id)
    try:
        new = follow(postfix, record.key, entry.sender, before | {queue_id}, queue_id)
    except PostfixError as exc:
        return ActionResult(True, f"released {queue_id} ({age}); its new queue id could not "
                                  f"be looked for: {exc}", "")
    if new is None:
        return ActionResult(True, f"released {queue_id} ({age}); it left the queue before its "
                                  "new queue id could be seen", "")
    if new.queue_name == "maildrop":
        return ActionResult(True, f"released {queue_id} ({age}); it still waits in the "
                                  f"maildrop queue for Postfix's pickup{nudge}", "")
    if new.queue_name == "hold":
        return ActionResult(False, f"requeued {queue_id} as {new.queue_id} ({age}), but Postfix "
                                   "put it on hold again (a HOLD in header_checks?): still "
                                   "held", new.queue_id)
    return ActionResult(True, f"released {queue_id} as {new.queue_id} ({age} gives it a new "
                              "queue id and a fresh lifetime)", new.queue_id)


def _nudged(nudge: Callable[[str], None], queue_id: str) -> str:
    """Ask Postfix to get on with it; a failure only delays the mail, so it is a note."""
    try:
        nudge(queue_id)
    except PostfixError as exc:
        return f"; Postfix will get to it on its own ({exc})"
    return ""


def follow(postfix: Postfix, key: str, sender: str, known: set[str], old: str,
           window: float = FOLLOW_WINDOW) -> QueueEntry | None:
    """Message `old` after `postsuper -r`: the new entry of the same sender whose header
    carries `key`; the old entry if it still waits in maildrop after `window` seconds
    (pickup is not running); None when it left maildrop and no such entry was seen twice
    running (delivered at once)."""
    deadline = time.monotonic() + window
    pause = threading.Event()
    looked: set[str] = set()
    misses = 0
    while True:
        entries = postfix.entries()
        for entry in entries:
            if (entry.queue_id in known or entry.queue_id in looked or entry.sender != sender
                    or entry.queue_name == "maildrop" or not is_queue_id(entry.queue_id)):
                continue
            looked.add(entry.queue_id)
            try:
                if quarantine_key(postfix.headers(entry.queue_id)) == key:
                    return entry
            except PostfixError:
                continue  # it left while we looked
        waiting = next((e for e in entries
                        if e.queue_id == old and e.queue_name == "maildrop"), None)
        misses = 0 if waiting else misses + 1
        if misses >= 2:
            return None
        if time.monotonic() >= deadline:
            return waiting
        pause.wait(0.05)


def _span(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds} s"
