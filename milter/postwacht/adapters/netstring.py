"""Netstrings (`LENGTH:DATA,`), the framing of Postfix's socketmap protocol.

A reader that is handed garbage raises `NetstringError` and leaves the stream after the
bad request, so one malformed request never ends a connection that can go on.
"""

from __future__ import annotations

import io
import socket
import time
from typing import Protocol

MAX_REQUEST = 100_000
_LENGTH_DIGITS = 6


class Stream(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class NetstringError(ValueError):
    """A request that is not a netstring; the stream is left after it."""


def encode(text: str) -> bytes:
    data = text.encode("utf-8")
    return str(len(data)).encode() + b":" + data + b","


def read_netstring(stream: Stream, limit: int = MAX_REQUEST) -> bytes | None:
    """One netstring's payload, None at a clean end of stream; NetstringError if malformed.

    After an error the stream is left after the bad request (at its ',' or its declared
    end), so the next request can be read.
    """
    digits = b""
    while True:
        c = stream.read(1)
        if not c:
            if digits:
                raise NetstringError("connection closed inside a request")
            return None
        if c == b":":
            break
        if not c.isdigit() or len(digits) >= _LENGTH_DIGITS:
            _discard_to_comma(stream)
            raise NetstringError("request is not a netstring")
        digits += c
    if not digits:
        _discard_to_comma(stream)
        raise NetstringError("request has no length")
    length = int(digits)
    if length > limit:
        _discard(stream, length + 1)
        raise NetstringError(f"request longer than {limit} bytes")
    payload = stream.read(length)
    if len(payload) < length:
        raise NetstringError("connection closed inside a request")
    if stream.read(1) != b",":
        raise NetstringError("request does not end with ','")  # that byte stood for it
    return payload


def _discard(stream: Stream, count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, 65536))
        if not chunk:
            return
        count -= len(chunk)


def _discard_to_comma(stream: Stream) -> None:
    while (c := stream.read(1)) and c != b",":
        pass


class RequestClock:
    """The reads of one request, bounded together by one deadline: a client that trickles
    a byte now and then is let go as surely as one that sends nothing."""

    def __init__(self, connection: socket.socket, stream: io.BufferedIOBase,
                 seconds: float) -> None:
        self._connection = connection
        self._stream = stream
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds

    def restart(self) -> None:
        self._deadline = time.monotonic() + self._seconds

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes (-1: what arrives next); TimeoutError past the deadline."""
        chunks: list[bytes] = []
        wanted = size
        while wanted != 0:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete request in time")
            self._connection.settimeout(left)
            chunk = self._stream.read1(wanted)
            if not chunk or size < 0:
                chunks.append(chunk)
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)
