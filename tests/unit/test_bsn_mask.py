"""What review shows of a held message carries no BSN: every number the detector could
take for one is masked but for its last two digits, with or without a context word."""

from __future__ import annotations

import pytest
from postwacht.core.classify import find_bsn, mask_bsn


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("BSN: 123456782", "BSN: *******82"),
        # Looser bounds than the detector's: next to punctuation, in CSV, in file names.
        ("Jansen,123456782,Utrecht", "Jansen,*******82,Utrecht"),
        ("20240501-123456782.pdf", "20240501-*******82.pdf"),
        ("id=123456782.1", "id=*******82.1"),
        ("bedrag 123.456.782,00 euro", "bedrag ***.***.*82,00 euro"),  # masking more is cheap
        # Invisible characters and tabs between its digits do not keep it readable.
        ("123\u200b456782", "*******82"),
        ("123\t456\t782", "***\t***\t*82"),
        ("Ordernummer 111222333 graag", "Ordernummer *******33 graag"),  # no context word
        ("Burgerservicenummer 1234.56.782 van de client",
         "Burgerservicenummer ****.**.*82 van de client"),
        ("het bsn is 111 222 333.", "het bsn is *** *** *33."),
        ("sofinummer 111-222-333", "sofinummer ***-***-*33"),
        ("BSN-123456782", "BSN-*******82"),
        ("BSN:\u00a0123\u00a0456\u00a0782", "BSN:\u00a0***\u00a0***\u00a0*82"),
        ("bsn&nbsp;123&nbsp;456&nbsp;782", "bsn&nbsp;***&nbsp;***&nbsp;*82"),
        ("BSN 12345672", "BSN ******72"),  # a spreadsheet dropped the leading zero
        ("<td>123456782</td>", "<td>*******82</td>"),
        ("\uff11\uff11\uff11\uff12\uff12\uff12\uff13\uff13\uff13",  # full-width digits
         "*******\uff13\uff13"),
        ("123456782 en 111222333", "*******82 en *******33"),
    ],
)
def test_every_number_that_passes_the_eleven_test_is_masked(text: str, shown: str) -> None:
    assert mask_bsn(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "BSN: 123456789",  # fails the 11-test
        "Bel 0612345678 of 06-12345678",  # phone numbers
        "IBAN NL91ABNA0417164300",
        "BSN 1234567825",  # ten digits
        "datum 2019-04-01",
        "",
    ],
)
def test_other_numbers_and_text_are_left_as_they_are(text: str) -> None:
    assert mask_bsn(text) == text


def test_masked_text_no_longer_triggers_the_detector() -> None:
    text = "BSN: 123456782, bsn 1234.56.782 en bsn 111 222 333"
    assert find_bsn(text.encode())
    assert not find_bsn(mask_bsn(text).encode())
