"""Text from outside, made one visible line; the shape of a Postfix queue id."""

from __future__ import annotations

import pytest
from postwacht.core.text import is_queue_id, printable, terminal_text


@pytest.mark.parametrize("queue_id", [
    "3B6C52A0E1F",  # short: hex microseconds and inode
    "ABCDEF",
    "3Pt2mN2VXxznjll",  # long (enable_long_queue_ids), the example of postconf(5)
    "4Ym1hX6ZqTzBcDf",
])
def test_postfix_queue_ids_are_accepted(queue_id: str) -> None:
    assert is_queue_id(queue_id)


@pytest.mark.parametrize("queue_id", [
    "", "-x", "--help", "ALL", "-", "abc123",  # lower-case is not short hex
    "ABC12", "3B6C52A0E1F\nid=FORGED", "3B6C52A0E1F ", "../../etc/passwd",
    "3Pt2mN2VXxzn-jll", "3Pt2mN2VXaznjll",  # a vowel is never in a long id
    "F" * 40,
])
def test_anything_else_is_not_a_queue_id(queue_id: str) -> None:
    assert not is_queue_id(queue_id)


def test_printable_escapes_what_could_forge_a_line_or_drive_a_terminal() -> None:
    assert printable("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert printable("\x1b[2J\x9b31m") == "\\x1b[2J\\x9b31m"
    assert printable("evil\u202etxt.exe\u2028") == "evil\\u202etxt.exe\\u2028"
    assert printable("back\\slash") == "back\\slash"
    assert printable("caf\udce9") == "caf\\xe9"  # a Latin-1 byte, via surrogateescape
    assert printable("medewerker@samen-veilig.nl") == "medewerker@samen-veilig.nl"
    assert printable("jürgen@example.de") == "jürgen@example.de"


def test_escaping_twice_changes_nothing() -> None:
    once = printable("caf\udce9\n\x1b[0m\\x")
    assert printable(once) == once


def test_printable_is_bounded() -> None:
    assert printable("x" * 1000, 10) == "x" * 10 + "..."
    assert printable("\n" * 1000, 10).startswith("\\n" * 5)


def test_terminal_text_keeps_lines_but_not_escape_sequences() -> None:
    assert terminal_text("Subject: \x1b]0;owned\x07hi\r\nFrom: a\\b\n") == (
        "Subject: \\x1b]0;owned\\x07hi\\r\nFrom: a\\b\n")
