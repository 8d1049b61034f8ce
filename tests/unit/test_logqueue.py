"""The daemon's log through a queue: nothing waits for the writer, nothing grows."""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest
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
    assert text.count("line ") <= 10  # at most a batch in hand and a full queue
    assert "after" in text


def fail() -> None:
    raise ValueError("the record's own failure")


def test_a_line_says_what_held_when_it_was_logged_with_its_traceback() -> None:
    out = io.StringIO()
    stop = logqueue.start(out, queue_size=100)
    seen = ["first"]
    try:
        log = logging.getLogger("postwacht.milter")
        log.info("recipients=%s", seen)
        seen.append("later")  # changed after the call: the line keeps the old value
        try:
            fail()
        except ValueError:
            log.exception("eom failed")
    finally:
        stop()
    text = out.getvalue()
    assert "recipients=['first']\n" in text
    assert "eom failed\nTraceback (most recent call last):" in text
    assert "ValueError: the record's own failure" in text


def test_each_line_carries_its_own_time_to_the_millisecond() -> None:
    out = io.StringIO()
    stop = logqueue.start(out, queue_size=100)
    try:
        log = logging.getLogger("postwacht.milter")
        records = []
        for second, ms in ((1_700_000_000, 123), (1_700_000_000, 999), (1_700_000_001, 500)):
            record = log.makeRecord("postwacht.milter", logging.INFO, __file__, 0, "x",
                                    (), None)
            record.created, record.msecs = second + ms / 1000, ms
            records.append(record)
        for record in records:
            log.handle(record)
    finally:
        stop()
    stamps = [line.split(" INFO ")[0] for line in out.getvalue().splitlines()]
    expected = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(m))) + f",{ms:03d}"
                for m, ms in ((1_700_000_000, 123), (1_700_000_000, 999), (1_700_000_001, 500))]
    assert stamps == expected


def test_a_stop_on_a_stalled_stream_returns_and_later_logging_does_not_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logqueue, "STOP_WAIT", 0.2)
    out = Stalled()
    stop = logqueue.start(out, queue_size=5)
    try:
        logging.getLogger("postwacht.milter").info("stuck in the stream")
        poll(lambda: not out.getvalue() and out.go.is_set() is False, "the writer to block")
        began = time.monotonic()
        stop()
        logging.getLogger("postwacht.milter").info("after the stop")  # no handler waits
        for handler in logging.getLogger().handlers:
            handler.flush()
        assert time.monotonic() - began < 5
    finally:
        out.go.set()
