"""Socketmap framing: netstrings in, netstrings out, and a bad request costs one reply."""

from __future__ import annotations

import io

import pytest
from postwacht.adapters.netstring import NetstringError, encode, read_netstring


def test_replies_are_netstrings() -> None:
    assert encode("OK error:5.7.1 gone") == b"19:OK error:5.7.1 gone,"
    assert encode("NOTFOUND ") == b"9:NOTFOUND ,"


def test_requests_are_read_one_after_another() -> None:
    stream = io.BytesIO(encode("transport a@example.org") + encode("tls x"))
    assert read_netstring(stream) == b"transport a@example.org"
    assert read_netstring(stream) == b"tls x"
    assert read_netstring(stream) is None


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"x5:hello,", "not a netstring"),
        (b":hello,", "no length"),
        (b"5:hello;", "does not end with ','"),
        (b"1234567:abc,", "not a netstring"),
        (b"16:too long request,", "longer than 10 bytes"),
    ],
)
def test_a_bad_request_is_an_error_and_the_next_one_is_still_read(data: bytes, says: str) -> None:
    stream = io.BytesIO(data + b"5:tls x,")
    with pytest.raises(NetstringError, match=says):
        read_netstring(stream, limit=10)
    assert read_netstring(stream, limit=10) == b"tls x"


def test_a_request_cut_short_is_an_error() -> None:
    with pytest.raises(NetstringError, match="closed inside a request"):
        read_netstring(io.BytesIO(b"10:abc"))
