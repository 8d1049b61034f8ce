"""Envelope recipients: every spelling Postfix can pass, and every domain it can reach."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from postwacht.core.address import AddressError, parse_recipient


@pytest.mark.parametrize(
    ("raw", "domains"),
    [
        ("<dossier@bjzutrecht.nl>", ("bjzutrecht.nl",)),
        ("dossier@bjzutrecht.nl", ("bjzutrecht.nl",)),
        ("DOSSIER@BJZUTRECHT.NL.", ("bjzutrecht.nl",)),
        ("x@mail.bjzutrecht.nl", ("mail.bjzutrecht.nl",)),
        ('"a@b"@bjzutrecht.nl', ("bjzutrecht.nl", "b")),
        ('"x@bjzutrecht.nl"@relay.example', ("relay.example", "bjzutrecht.nl")),
        ("user%bjzutrecht.nl@relay.example", ("relay.example", "bjzutrecht.nl")),
        ("a%b.example%c.example@relay.example", ("relay.example", "b.example", "c.example")),
        ('"a@bjzutrecht.nl%gmail.com"@relay.example',
         ("relay.example", "bjzutrecht.nl", "gmail.com")),
        ("a!b.example!user@relay.example", ("relay.example", "a", "b.example")),
        ("bjzutrecht.nl!user@relay.example", ("relay.example", "bjzutrecht.nl")),
        ("bjzutrecht.nl!user", ("bjzutrecht.nl",)),
        ("<@a.example,@b.example:user@c.example>", ("c.example", "a.example", "b.example")),
        ("x@bücher.de", ("xn--bcher-kva.de",)),
        ("x@BÜCHER.DE", ("xn--bcher-kva.de",)),
        ("x@xn--bcher-kva.de", ("xn--bcher-kva.de",)),
        ("x@bücher。de", ("xn--bcher-kva.de",)),
        ("100%pure@example.org", ("example.org", "pure")),
        ("postmaster", ()),
    ],
)
def test_recipient_yields_every_domain_it_could_reach(raw: str, domains: tuple[str, ...]) -> None:
    assert parse_recipient(raw).domains == domains


@pytest.mark.parametrize(
    ("raw", "literal"),
    [
        ("user@[192.0.2.1]", "192.0.2.1"),
        ("<user@[IPv6:2001:DB8::1]>", "IPv6:2001:db8::1"),
    ],
)
def test_address_literal_is_recognised(raw: str, literal: str) -> None:
    recipient = parse_recipient(raw)
    assert recipient.literal == literal
    assert recipient.domain is None


def test_normal_form_keeps_the_local_part_and_lowers_the_domain() -> None:
    assert parse_recipient("<Jan.Jansen@Samen-Veilig.NL.>").address == "Jan.Jansen@samen-veilig.nl"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "empty address"),
        ("<>", "empty address"),
        ("<x@example.org", "unbalanced angle brackets"),
        ("x@", "empty domain"),
        ("@x", "source route"),
        ("@a.example:", "without a mailbox"),
        ('"x@example.org', "unterminated quoted string"),
        ("a b@example.org", "not allowed in an unquoted local part"),
        ("x@exa mple.org", "not a valid domain name"),
        ("x@a..example", "not a valid domain name"),
        ("x@192.0.2.1", "write it as an address literal"),
        ("x@[300.1.1.1]", "not an IPv4 or IPv6 address literal"),
        ("x@xn--zz.nl", "not a valid domain name"),
        ("x@" + "a" * 64 + ".nl", "not a valid domain name"),
        ("x\n@example.org", "control character"),
        ("x@" + "a." * 600 + "nl", "longer than"),
    ],
)
def test_a_string_that_is_not_an_address_is_a_clear_error(raw: str, says: str) -> None:
    with pytest.raises(AddressError, match=says):
        parse_recipient(raw)


@given(st.text(max_size=200))
def test_no_input_crashes_the_normaliser(raw: str) -> None:
    try:
        recipient = parse_recipient(raw)
    except AddressError as exc:
        message = str(exc)
        assert message, "an error must say what is wrong"
        return
    assert recipient.domains or recipient.literal is not None or "@" not in recipient.local


_ATOM = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-@\".",
    min_size=1,
    max_size=30,
)


@given(_ATOM, _ATOM)
def test_address_shaped_input_either_parses_or_says_why(local: str, domain: str) -> None:
    try:
        recipient = parse_recipient(f"<{local}@{domain}>")
    except AddressError as exc:
        message = str(exc)
        assert message, "an error must say what is wrong"
        return
    assert all(d == d.lower() and not d.endswith(".") for d in recipient.domains)
