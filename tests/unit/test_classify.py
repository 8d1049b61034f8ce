"""Sensitive-mail classification: the BSN detector, markers, senders, streaming and caps."""

from __future__ import annotations

import base64
import random
import re

import pytest
from postwacht.core.classify import (
    Classifier,
    Marker,
    SenderGroup,
    Sensitivity,
    find_bsn,
    passes_eleven_test,
)


def sensitivity(**settings: object) -> Sensitivity:
    """A `sensitive:` section with the schema's defaults, changed as the test says."""
    defaults: dict[str, object] = {"default_sensitive": True, "markers": (), "senders": (),
                                   "detectors": (), "max_scan_bytes": 10 * 1024 * 1024}
    return Sensitivity(**{**defaults, **settings})  # type: ignore[arg-type]

BSN_RULES = sensitivity(default_sensitive=False, detectors=("bsn",))


@pytest.mark.parametrize("number", ["111222333", "123456782"])
def test_valid_numbers_pass_the_eleven_test(number: str) -> None:
    assert passes_eleven_test(number)


@pytest.mark.parametrize("number", ["123456789", "000000000", "12345678", "1234567890"])
def test_other_numbers_fail_the_eleven_test(number: str) -> None:
    assert not passes_eleven_test(number)


@pytest.mark.parametrize(
    "text",
    [
        "BSN: 123456782",
        "Burgerservicenummer 1234.56.782 van de client",
        "het bsn van het kind is 111 222 333.",
        "sofinummer 111-222-333",
        "Client 123456782 (BSN) is aangemeld",
        "BSN-123456782",
        "BSN:\u00a0123\u00a0456\u00a0782",  # non-breaking spaces
        "bsn&nbsp;123&nbsp;456&nbsp;782",
        "BSN 12345672",  # a spreadsheet dropped the leading zero of 012345672
    ],
)
def test_bsn_near_a_context_word_is_found(text: str) -> None:
    assert find_bsn(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        "Bel 0612345678 of 06-12345678 voor de BSN-aanvraag",  # phone numbers
        "BSN-aanvraag, IBAN NL91ABNA0417164300",  # account number
        "BSN aanvraag van 2019-04-01",  # a date
        "Ordernummer 123456782, factuur 2024-001",  # passes 11-test, no context word
        "BSN: 123456789",  # fails the 11-test
        "BSN 1234567825",  # ten digits
        "bedrag 123.456.782,00 euro; bsn volgt",  # a money amount
    ],
)
def test_usual_false_positives_are_not_found(text: str) -> None:
    assert not find_bsn(text.encode())


def classify(rules: Sensitivity, body: list[bytes], headers: dict[str, str] | None = None,
             sender: str = "a@samen-veilig.nl") -> tuple[bool, str]:
    classifier = Classifier(rules, sender)
    for name, value in (headers or {}).items():
        classifier.header(name, value)
    for chunk in body:
        classifier.body(chunk)
    result = classifier.result()
    return result.sensitive, result.reason


def test_a_bsn_split_across_chunks_is_still_found() -> None:
    assert classify(BSN_RULES, [b"Het BSN is 1234", b"56782.\r\n"]) == (True, "detector bsn")


def test_a_bsn_in_a_base64_text_attachment_is_found() -> None:
    attachment = base64.encodebytes(b"Verslag\nBSN: 123456782\n")
    body = (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nZie bijlage.\r\n--XyZ\r\n"
            b"Content-Type: text/plain; name=verslag.txt\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\n" + attachment + b"--XyZ--\r\n")
    headers = {"Content-Type": 'multipart/mixed; boundary="XyZ"'}
    assert classify(BSN_RULES, [body[:50], body[50:]], headers) == (True, "detector bsn")


def test_scanning_stops_at_the_cap() -> None:
    rules = sensitivity(default_sensitive=False, detectors=("bsn",), max_scan_bytes=1000)
    body = [b"x" * 999 + b"\n", b"BSN: 123456782\n"]
    assert classify(rules, body) == (False, "not sensitive by default")


def test_the_reason_never_contains_the_number() -> None:
    _, reason = classify(BSN_RULES, [b"BSN: 123456782\n"])
    assert "123456782" not in reason


NOT_SENSITIVE = Marker(False, re.compile(r"(?i)^\[(open|niet vertrouwelijk)\]"), "subject",
                       "subject [open]")


def test_a_not_sensitive_marker_applies_when_no_detector_fires() -> None:
    rules = sensitivity(markers=(NOT_SENSITIVE,), detectors=("bsn",))
    subject = {"Subject": "[niet vertrouwelijk] rooster"}
    assert classify(rules, [b"tot morgen\n"], subject) == (False, "marker subject [open]")
    assert classify(rules, [b"BSN 123456782\n"], subject) == (True, "detector bsn")


def test_sender_group_and_default_decide_last() -> None:
    group = SenderGroup(False, frozenset(), frozenset({"nieuwsbrief.samen-veilig.nl"}),
                        "newsletters")
    rules = sensitivity(senders=(group,))
    assert classify(rules, [], sender="x@nieuwsbrief.samen-veilig.nl") == (
        False, "sender group newsletters")
    assert classify(rules, []) == (True, "sensitive by default")


def test_a_bsn_split_by_a_quoted_printable_soft_line_break_is_found() -> None:
    headers = {"Content-Transfer-Encoding": "quoted-printable"}
    assert classify(BSN_RULES, [b"Het BSN is 12345=\r\n6782.\r\n"], headers) == (
        True, "detector bsn")


def test_a_bsn_in_a_base64_spreadsheet_attachment_is_found() -> None:
    sheet = base64.encodebytes(b"BSN;Naam\r\n123456782;J. Jansen\r\n")
    body = (b"--b1\r\nContent-Type: text/plain\r\n\r\nZie bijlage.\r\n--b1\r\n"
            b"Content-Type: application/vnd.ms-excel\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\n" + sheet + b"--b1--\r\n")
    headers = {"Content-Type": "multipart/mixed; boundary=b1"}
    assert classify(BSN_RULES, [body], headers) == (True, "detector bsn")


def test_a_body_in_any_chunking_is_classified_as_when_fed_line_by_line() -> None:
    """Whole chunks are scanned at once where no boundary can start in them; the answer
    must be the one a line-by-line reading gives, whatever the cut."""
    rng = random.Random(12)
    words = ["verslag", "de", "BSN:", "123456782", "burgerservicenummer", "12345678", "x" * 40]
    seen: set[bool] = set()
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(1, 3)):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 300))).encode()
            encoding = rng.choice([b"base64", b"quoted-printable", b"7bit"])
            if encoding == b"base64":
                raw = base64.b64encode(b"AB\n") + b"\n" + base64.encodebytes(text)
            elif encoding == b"quoted-printable":
                raw = b"=\n".join(text[i:i + 70] for i in range(0, len(text), 70)) + b"\n"
            else:
                raw = text + b"\n"
            if rng.random() < 0.5:
                raw = raw.replace(b"\n", b"\r\n")
            parts.append(b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + raw)
        body = b"".join(b"--BB\r\n" + p for p in parts) + b"--BB--\r\n"
        found = []
        for size in (1, rng.randint(2, 300), rng.randint(300, 70000)):
            classifier = Classifier(Sensitivity(False, (), (), ("bsn",), 10**7), "a@b.nl")
            classifier.header("Content-Type", 'multipart/mixed; boundary="BB"')
            for start in range(0, len(body), size):
                classifier.body(body[start:start + size])
            found.append(classifier.result().sensitive)
        assert len(set(found)) == 1, body[:200]
        seen.add(found[0])
    assert seen == {True, False}  # both answers were tried


@pytest.mark.parametrize("body", [
    b"Burger&nbsp;service&nbsp;nummer 123456782\r\n",
    "Burger\u00a0service\u00a0nummer 123456782\r\n".encode(),
    b"Burger\r\nservice nummer 123456782\r\n",
    b"BSN\r\n" + b"ab\r\n" * 30 + b"123456782\r\n",  # in the window without CRs
    b"BSN\r\r\r\n" + b"ab\r\r\n" * 30 + b"123456782\r\n",  # several CRs to a line end
])
def test_a_bsn_is_found_across_spaces_and_line_ends_as_a_line_by_line_reading_finds_it(
        body: bytes) -> None:
    """Whole-chunk scanning keeps what line-by-line reading saw: non-breaking spaces
    between the words of the context, and line ends without their carriage returns."""
    for chunk in (len(body), 1):
        classifier = Classifier(Sensitivity(False, (), (), ("bsn",), 10**7), "a@b.nl")
        for start in range(0, len(body), chunk):
            classifier.body(body[start:start + chunk])
        assert classifier.result().sensitive, (body, chunk)
