"""The daemon's log, written by a thread of its own.

Every message makes one log line. Written from the milter threads through one stream
handler, each line waited for the handler's lock while another thread wrote (seen in a
profile under load: the largest share of the milter's time). Here a milter thread only
puts the record into a bounded queue; one listener thread formats and writes. When the
log cannot keep up (a stalled journald pipe), records are dropped and counted rather than
let the queue grow or the milter wait, and the next line written says how many were lost.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
from collections.abc import Callable
from typing import TextIO

QUEUE_SIZE = 10_000
"""Log records waiting to be written; beyond, records are dropped and counted."""
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Enqueues without waiting (a SimpleQueue: no condition variable to wake, the
    cheapest hand-over there is); beyond `limit` waiting records it drops and counts."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], limit: int) -> None:
        super().__init__(records)
        self._records = records
        self._limit = limit
        self._lock_dropped = threading.Lock()
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        if self._records.qsize() >= self._limit:
            with self._lock_dropped:
                self.dropped += 1
            return
        self._records.put(record)

    def take_dropped(self) -> int:
        with self._lock_dropped:
            dropped, self.dropped = self.dropped, 0
        return dropped


class _Writer(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes for the listener; first says how many records were lost before this one."""

    def __init__(self, stream: TextIO, dropped: Callable[[], int]) -> None:
        super().__init__(stream)
        self._dropped = dropped

    def emit(self, record: logging.LogRecord) -> None:
        lost = self._dropped()
        if lost:
            super().emit(logging.LogRecord(
                "postwacht.log", logging.WARNING, __file__, 0,
                "%d log records were dropped: the log could not keep up", (lost,), None))
        super().emit(record)


def start(stream: TextIO, level: int = logging.INFO,
          queue_size: int = QUEUE_SIZE) -> Callable[[], None]:
    """Send the root logger's records through a queue to `stream`; returns what stops
    the listener after writing what is queued."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _DroppingQueueHandler(records, queue_size)
    writer = _Writer(stream, handler.take_dropped)
    writer.setFormatter(logging.Formatter(FORMAT))
    listener = logging.handlers.QueueListener(records, writer)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    listener.start()

    def stop() -> None:
        # The writer takes over first, so that nothing logged meanwhile is queued where
        # nobody reads it any more; then what is queued is written.
        root.handlers[:] = [writer]
        listener.stop()

    return stop
