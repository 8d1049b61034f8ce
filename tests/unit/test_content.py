"""What review may see of a held message: headers decoded, the plain text, attachments by
name, type and size only, HTML never rendered, every BSN masked, and a damaged or hostile
message shown as far as it can be read, with notes, never a crash."""

from __future__ import annotations

import base64

from postwacht.records.content import ATTACHMENTS_MAX, HEADERS_MAX, TEXT_MAX, held_content
from postwacht.records.store import Attachment

TOP = (b"From: <medewerker@samen-veilig.nl>\r\nTo: <x@samen-veiIig.nl>\r\n"
       b"Subject: verslag\r\nMIME-Version: 1.0\r\n")


def multipart(*parts: bytes, kind: bytes = b"mixed") -> bytes:
    body = b"".join(b"--BOUND\r\n" + p + b"\r\n" for p in parts)
    return (TOP + b"Content-Type: multipart/" + kind + b"; boundary=BOUND\r\n\r\n"
            + body + b"--BOUND--\r\n")


def test_a_plain_message_shows_its_headers_and_text() -> None:
    raw = (b"Received: by mta.postwacht.test\r\n\tid 4Q1; Fri, 6 Mar 2026\r\n" + TOP
           + b"Content-Type: text/plain; charset=utf-8\r\n\r\nGoedemorgen,\r\ntot straks.\r\n")
    content = held_content(raw, truncated=False)
    assert content.headers[0] == ("Received", "by mta.postwacht.test id 4Q1; Fri, 6 Mar 2026")
    assert ("Subject", "verslag") in content.headers
    assert content.text == "Goedemorgen,\ntot straks.\n"
    assert (content.attachments, content.notes) == ((), ())


def test_encoded_and_raw_8bit_headers_are_decoded_and_a_bsn_in_them_is_masked() -> None:
    raw = ("Subject: =?utf-8?q?caf=C3=A9?= voor cliënt 123456782\r\n"
           "From: =?utf-8?b?!!!?= <a@samen-veilig.nl>\r\n\r\nhoi\r\n").encode()
    headers = dict(held_content(raw, truncated=False).headers)
    assert headers["Subject"] == "café voor cliënt *******82"
    assert headers["From"].endswith("<a@samen-veilig.nl>")  # broken encoded word: no crash


def test_control_characters_in_headers_and_text_are_shown_as_escapes() -> None:
    raw = (b"Subject: \x1b[31mrood \xe2\x80\xae gekeerd\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nregel\x1b[2J\ttab\r\n")
    content = held_content(raw, truncated=False)
    assert dict(content.headers)["Subject"] == "\\x1b[31mrood \\u202e gekeerd"
    assert content.text == "regel\\x1b[2J\ttab\n"


def test_a_multipart_message_lists_its_attachment_without_its_bytes() -> None:
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 20
    raw = multipart(
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
        b"quoted-printable\r\n\r\nCli=EBnt met BSN 111222333 is aangemeld.=\r\n Groet.",
        b"Content-Type: application/pdf; name=\"brief.pdf\"\r\nContent-Disposition: "
        b"attachment; filename=\"brief 111222333.pdf\"\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + base64.encodebytes(pdf),
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x89PNG" + bytes(100)),
    )
    content = held_content(raw, truncated=False)
    assert content.text == "Cliënt met BSN *******33 is aangemeld. Groet."
    assert content.attachments == (
        Attachment("brief *******33.pdf", "application/pdf", len(pdf)),
        Attachment("", "image/png", 104),  # no name, not text: an attachment too
    )
    assert content.notes == ()


def test_an_encoded_attachment_name_is_decoded() -> None:
    raw = multipart(
        b"Content-Type: text/plain\r\n\r\nzie bijlage",
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; "
        b"filename*=utf-8''%E2%82%AC%20overzicht.txt\r\n\r\n1,2,3",
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        b"filename=\"=?utf-8?q?caf=C3=A9=2Exlsx?=\"\r\n\r\nxx",
    )
    content = held_content(raw, truncated=False)
    assert content.text == "zie bijlage"
    assert [(a.name, a.content_type, a.size) for a in content.attachments] == [
        ("€ overzicht.txt", "text/plain", 5), ("café.xlsx", "application/octet-stream", 2)]


def test_an_html_only_message_is_shown_as_its_source_text_never_rendered() -> None:
    html = b"<p>BSN 111&nbsp;222&nbsp;333</p><script>alert('x')</script>"
    raw = TOP + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html
    content = held_content(raw, truncated=False)
    assert content.text == "<p>BSN ***&nbsp;***&nbsp;*33</p><script>alert('x')</script>"
    assert content.notes == ("only an HTML body: shown as its source text",)


def test_with_a_plain_alternative_the_html_part_is_left_out_with_a_note() -> None:
    raw = multipart(b"Content-Type: text/plain\r\n\r\nplat",
                    b"Content-Type: text/html\r\n\r\n<script>x()</script>",
                    kind=b"alternative")
    content = held_content(raw, truncated=False)
    assert (content.text, content.attachments) == ("plat", ())
    assert content.notes == (
        "an HTML version of the text is not shown (review never renders HTML)",)


def test_an_unknown_or_unsafe_charset_is_read_as_utf8_with_a_note() -> None:
    for charset in (b"x-made-up", b"punycode", b"base64"):
        raw = b"Content-Type: text/plain; charset=" + charset + b"\r\n\r\ncaf\xc3\xa9 \xff"
        content = held_content(raw, truncated=False)
        assert content.text == "café \ufffd"
        assert content.notes == (f"a text part names the charset {charset.decode()!r}, which "
                                 "is unknown here: read as UTF-8",), charset


def test_a_forwarded_message_is_an_attachment_whose_text_is_not_shown() -> None:
    inner = b"Subject: doorgestuurd\r\n\r\nBSN 123456782 binnenin\r\n"
    raw = multipart(b"Content-Type: text/plain\r\n\r\nzie onder",
                    b"Content-Type: message/rfc822\r\n\r\n" + inner)
    content = held_content(raw, truncated=False)
    assert content.text == "zie onder"
    [forwarded] = content.attachments
    assert (forwarded.name, forwarded.content_type) == ("", "message/rfc822")
    assert forwarded.size > 0


def test_malformed_mime_is_shown_as_far_as_it_can_be_read() -> None:
    raw = (TOP + b"Content-Type: multipart/mixed; boundary=BOUND\r\n\r\n"
           b"--BOUND\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"!!!niet base64\r\n--BOUND\r\nContent-Type: application/pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0")  # no closing boundary
    content = held_content(raw, truncated=True)
    assert content.attachments == (Attachment("", "application/pdf", 5),)
    assert content.notes[0].startswith("the message is larger than the 4 MiB read for review")
    assert content.notes[-1].startswith("the message's MIME structure is damaged (")


def test_parts_nested_beyond_reason_leave_the_headers_shown() -> None:
    depth = 3000
    raw = TOP + b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)) + b"--b%d\r\n\r\nBSN 111222333\r\n" % depth
    content = held_content(raw, truncated=False)
    assert ("Subject", "verslag") in content.headers
    assert (content.text, content.attachments) == ("", ())
    assert content.notes[0].startswith("the message's parts could not be read (")


def test_a_huge_number_of_headers_parts_and_text_is_bounded() -> None:
    headers = b"".join(b"X-Kop-%d: waarde\r\n" % i for i in range(5000))
    parts = [b"Content-Type: text/plain\r\n\r\n" + b"regel 123456782\n" * 20000]
    parts += [b"Content-Type: application/octet-stream\r\n\r\nx"] * (ATTACHMENTS_MAX + 5)
    content = held_content(headers + multipart(*parts)[len(TOP):], truncated=False)
    assert len(content.headers) == HEADERS_MAX
    assert len(content.text) == TEXT_MAX
    assert "123456782" not in content.text
    assert len(content.attachments) == ATTACHMENTS_MAX
    assert content.notes == (
        f"{5001 - HEADERS_MAX} more headers are not shown (only the first {HEADERS_MAX})",
        "the text is longer than review shows: only its first 256 KiB characters",
        f"5 more attachment(s) not listed (only the first {ATTACHMENTS_MAX})",
    )


def test_anything_at_all_gives_a_view() -> None:
    for raw in (b"", b"\x00\xff" * 1000, b"geen kop\r\n\r\n", b":\r\n:\r\n\r\n",
                b"Content-Type: multipart/mixed\r\n\r\n--\r\n"):
        content = held_content(raw, truncated=False)
        assert isinstance(content.text, str)


def test_a_message_of_thousands_of_tiny_parts_shows_its_headers_only() -> None:
    raw = (b"Subject: many\nContent-Type: multipart/mixed; boundary=b\n\n"
           + b"--b\n\nx\n" * 100_000 + b"--b--\n")
    view = held_content(raw, truncated=False)  # parsing every part would take seconds
    assert ("Subject", "many") in view.headers
    assert (view.text, view.attachments) == ("", ())
    assert any("only its headers are shown" in note for note in view.notes)
