"""The daemon's log through a queue: nothing waits for the writer, nothing grows."""

from __future__ import annotations

import io
import logging
import threading

from postwacht.adapters import logqueue

from tests.labs.util import poll


class Stalled(io.StringIO):
    """A log stream that blocks its writer until released (a stalled journald pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def write(self, text: str) -> int:
        self.go.wait(timeout=30)
        return super().write(text)


def test_lines_are_written_by_the_listener_in_order() -> None:
    out = io.StringIO()
    stop = logqueue.start(out, queue_size=100)
    try:
        for i in range(10):
            logging.getLogger("postwacht.milter").info("id=%d stage=eom", i)
    finally:
        stop()
    lines = out.getvalue().splitlines()
    assert [line.rsplit("id=", 1)[1] for line in lines] == [f"{i} stage=eom" for i in range(10)]
    assert " INFO postwacht.milter: " in lines[0]


def test_a_stalled_log_drops_and_counts_instead_of_growing_or_waiting() -> None:
    out = Stalled()
    stop = logqueue.start(out, queue_size=5)
    try:
        log = logging.getLogger("postwacht.milter")
        for i in range(50):  # returns at once although nothing can be written
            log.info("line %d", i)
        out.go.set()
        poll(lambda: "could not keep up" in out.getvalue(), "the queued lines written")
        log.info("after")
    finally:
        stop()
    text = out.getvalue()
    assert "log records were dropped: the log could not keep up" in text
    assert text.count("line ") <= 7
    assert "after" in text
