"""The daemon's log, written by a thread of its own.

Every outbound message makes one log line. Written from the milter threads through one
stream handler, each line waited for the handler's lock while another thread wrote (seen
in a profile under load: the largest share of the milter's time). Here a milter thread
only turns the record into its final text and puts it into a bounded queue; one thread
formats and writes what has gathered, many lines in one write. When the log cannot keep
up (a stalled journald pipe), records are dropped and counted rather than let the queue
grow or the milter wait, and the next line written says how many were lost.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TextIO

QUEUE_SIZE = 10_000
"""Log records waiting to be written; beyond, records are dropped and counted."""
BATCH = 512
"""Records written at most in one write (and one flush)."""
STOP_WAIT = 10.0
"""Seconds a stop waits for the writer to finish what is queued."""
GATHER = 0.05
"""Seconds the writer lets records gather after the first: under load a batch instead of a
wake-up per line, which cost a milter thread the lock of the interpreter each time (about
a tenth of the daemon's time per message, measured with bench/steady_state.py's client)."""
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Formatter(logging.Formatter):
    """FORMAT, with the date and time made once a second instead of once a line (a
    profile showed `time.strftime` as the writer's largest cost)."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._stamp = (-1, "")  # one tuple, so that two threads never mix two seconds

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second)))
            self._stamp = stamp
        return f"{stamp[1]},{int(record.msecs):03d}"


class _QueueHandler(logging.Handler):
    """Puts a record, its text made final, into the queue without waiting and without a
    lock shared with other threads (SimpleQueue is safe as it is); beyond `limit`
    waiting records it drops and counts."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | None],
                 limit: int) -> None:
        super().__init__()
        self._records = records
        self._limit = limit
        self._lock_dropped = threading.Lock()
        self.dropped = 0

    def handle(self, record: logging.LogRecord) -> bool:
        # logging.Handler.handle would take the handler's lock around `emit`.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._records.qsize() >= self._limit:
            with self._lock_dropped:
                self.dropped += 1
            return
        try:
            # The arguments and the traceback belong to this thread's moment: make the
            # text now. This handler is the only one, so the record can be changed.
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = _TRACEBACK.formatException(record.exc_info)
                record.exc_info = None
        except Exception:  # noqa: BLE001 - a bad format string: logging's way, on stderr
            self.handleError(record)
            return
        self._records.put(record)

    def take_dropped(self) -> int:
        with self._lock_dropped:
            dropped, self.dropped = self.dropped, 0
        return dropped


class _Writer(logging.StreamHandler):  # type: ignore[type-arg]
    """Formats and writes records, a batch at a time; first says how many records were
    lost before them."""

    def __init__(self, stream: TextIO, dropped: Callable[[], int]) -> None:
        super().__init__(stream)
        self.setFormatter(_Formatter())
        self._dropped = dropped

    def write(self, records: list[logging.LogRecord]) -> None:
        lost = self._dropped()
        if lost:
            records = [logging.LogRecord(
                "postwacht.log", logging.WARNING, __file__, 0,
                "%d log records were dropped: the log could not keep up", (lost,), None),
                *records]
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + self.terminator)
            except Exception:  # noqa: BLE001 - said on stderr; the writer must not die
                self.handleError(record)
        if not lines:
            return
        lock, stream = self.lock, self.stream  # a stop may replace both while this waits
        if lock is not None:
            lock.acquire()
        try:
            stream.write("".join(lines))
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream, as StreamHandler
            self.handleError(records[-1])
        finally:
            if lock is not None:
                lock.release()

    def emit(self, record: logging.LogRecord) -> None:
        self.write([record])


_TRACEBACK = logging.Formatter()


def _listen(records: queue.SimpleQueue[logging.LogRecord | None], writer: _Writer) -> None:
    """Write what gathers in the queue until None arrives: a line is written at most
    GATHER seconds after it was logged (stopping writes what is queued at once)."""
    while True:
        batch = [records.get()]
        if batch[0] is not None and records.qsize() < BATCH:
            time.sleep(GATHER)  # not when a full batch waits: then the writer is behind
        while len(batch) < BATCH:
            try:
                batch.append(records.get_nowait())
            except queue.Empty:
                break
        writer.write([record for record in batch if record is not None])
        if None in batch:
            return


def start(stream: TextIO, level: int = logging.INFO,
          queue_size: int = QUEUE_SIZE) -> Callable[[], None]:
    """Send the root logger's records through a queue to `stream`; returns what stops
    the writing thread after writing what is queued."""
    # The format asks for no source line, thread or process: the logging HOWTO's
    # optimisation ("Optimization") spares each record finding them.
    saved = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing,
             logging._srcfile)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    handler = _QueueHandler(records, queue_size)
    writer = _Writer(stream, handler.take_dropped)
    listener = threading.Thread(target=_listen, args=(records, writer), name="log",
                                daemon=True)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    listener.start()

    def stop() -> None:
        # The writer takes over first, so that nothing logged meanwhile is queued where
        # nobody reads it any more; then what is queued is written. A stalled stream
        # cannot hold the stop for ever; a record a thread queued after the end mark is
        # written here.
        root.handlers[:] = [writer]
        records.put(None)
        listener.join(timeout=STOP_WAIT)
        if listener.is_alive():
            # The stream is stalled and the writer stuck in it, holding its lock: leave
            # both behind, so that neither later logging nor the interpreter's exit
            # (logging.shutdown flushes every handler) waits on them.
            root.handlers[:] = []
            writer.createLock()
            writer.stream = io.StringIO()
        else:
            late = []
            while True:
                try:
                    late.append(records.get_nowait())
                except queue.Empty:
                    break
            writer.write([record for record in late if record is not None])
        (logging.logThreads, logging.logProcesses, logging.logMultiprocessing,
         logging._srcfile) = saved

    return stop
