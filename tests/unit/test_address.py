"""Envelope recipients: every spelling Postfix can pass, and every domain it can reach."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from postwacht.core.address import AddressError, parse_recipient
from postwacht.core.decide import Envelope, decide
from postwacht.core.outcome import at_rcpt, unreadable_at_rcpt
from postwacht.core.policy import Policy
from postwacht.core.vocabulary import Action, Rule


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
        ('"x@bjzutrecht.nl\t"@samen-veilig.nl', "control character"),
        ('"x@bjzutrecht.nl\r\n "@samen-veilig.nl', "control character"),
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


# Quoted local parts that hide a route behind a blank, a comment or other quoting. Real
# Postfix, when samen-veilig.nl is its own domain, unquotes the first three and sends
# them to x@bjzutrecht.nl; it keeps "(c)" as text, which another relay may drop.
HIDDEN_ROUTES = [
    '"x@bjzutrecht.nl "@samen-veilig.nl',
    '"x@bjzutrecht . nl"@samen-veilig.nl',
    '"bjzutrecht.nl !x"@samen-veilig.nl',
    '"x@bjzutrecht.nl(c)"@samen-veilig.nl',
]

MORE_HIDDEN_ROUTES = [
    '" x@bjzutrecht.nl"@samen-veilig.nl',
    '"x @ bjzutrecht.nl"@samen-veilig.nl',
    '"x%bjzutrecht.nl "@samen-veilig.nl',
    '"x@(a(b)c)bjzutrecht.nl"@samen-veilig.nl',
    '"x@bjzutrecht.nl(c"@samen-veilig.nl',
    '"x@bjzutrecht.nl\\ "@samen-veilig.nl',
    '"x\\\\@bjzutrecht.nl"@samen-veilig.nl',  # an escaped backslash before the '@'
    '"\\"x@bjzutrecht.nl\\""@samen-veilig.nl',
    '"x@bjzutrecht.nl,y"@samen-veilig.nl',
    '"x@bjzutrecht.nl;y"@samen-veilig.nl',
    '"@bjzutrecht.nl:x"@samen-veilig.nl',
    '"x@bjzutrecht.nl:y"@samen-veilig.nl',
    '"x@<bjzutrecht.nl>"@samen-veilig.nl',
    '"x@[192.0.2.1]"@samen-veilig.nl',
    '"x@bjzutrecht.nl\u00a0"@samen-veilig.nl',
    '"x@bjzutrecht.nl\u3000"@samen-veilig.nl',
    '"x@bjz\u200butrecht.nl"@samen-veilig.nl',
    '"x@bjzutrecht.nl\u200c"@samen-veilig.nl',
    '"x@bjzutrecht.nl\ufeff"@samen-veilig.nl',
    '"x@bjz\u00adutrecht.nl"@samen-veilig.nl',
    'x%bjzutrecht.nl\u200c@samen-veilig.nl',
    '"x\uff20bjzutrecht.nl\u3000"@samen-veilig.nl',
    '"x\uff20bjzutrecht.nl\uff08c\uff09"@samen-veilig.nl',
    '"x@bjzutrecht.nl.."@samen-veilig.nl',
    '"x%192.0.2.1"@samen-veilig.nl',
    "x%192.0.2.1@samen-veilig.nl",
]


@pytest.mark.parametrize("raw", HIDDEN_ROUTES + MORE_HIDDEN_ROUTES)
def test_a_route_hidden_in_the_local_part_makes_the_address_unreadable(raw: str) -> None:
    with pytest.raises(AddressError, match="local part"):
        parse_recipient(raw)


@pytest.mark.parametrize(
    "raw",
    [
        '"x\\@bjzutrecht.nl"@samen-veilig.nl',  # a quoted pair: x@bjzutrecht.nl
        '"x@BJZUTRECHT.NL"@samen-veilig.nl',
        '"x@bjzutrecht.nl."@samen-veilig.nl',
        '"x@bjzutrecht\u3002nl"@samen-veilig.nl',  # ideographic full stop
        '"x@bjzutrecht\uff0enl"@samen-veilig.nl',  # full-width full stop
        '"x@bjzutrecht\uff61nl"@samen-veilig.nl',  # half-width ideographic full stop
        '"x\uff20bjzutrecht.nl"@samen-veilig.nl',  # full-width commercial at
        "x\ufe6bbjzutrecht.nl@samen-veilig.nl",  # small commercial at, unquoted
        '"x\uff05bjzutrecht.nl"@samen-veilig.nl',  # full-width percent sign
        "bjzutrecht.nl\uff01x@samen-veilig.nl",  # full-width exclamation mark
        '"x@bjzutrecht.nl%samen-veilig.nl"@samen-veilig.nl',
    ],
)
def test_a_route_spelled_plainly_is_seen_through(raw: str) -> None:
    domains = parse_recipient(raw).domains
    assert domains[0] == "samen-veilig.nl"
    assert "bjzutrecht.nl" in domains


def _at_rcpt(policy: Policy, raw: str, *, local: bool) -> tuple[Action, Rule]:
    """What the milter does with one recipient at RCPT, over SMTP or from sendmail(1)."""
    try:
        recipient = parse_recipient(raw)
    except AddressError as exc:
        verdict = unreadable_at_rcpt(raw, str(exc), local=local).verdict
    else:
        envelope = Envelope("medewerker@samen-veilig.nl", (recipient,), internal=True)
        verdict = at_rcpt(envelope, policy, None, local=local).verdict
    return verdict.action, verdict.rule


@pytest.mark.parametrize("local", [False, True], ids=["smtpd", "sendmail"])
@pytest.mark.parametrize("raw", HIDDEN_ROUTES + MORE_HIDDEN_ROUTES)
def test_a_hidden_route_is_never_accepted(example_policy: Policy, raw: str, local: bool) -> None:
    action, rule = _at_rcpt(example_policy, raw, local=local)
    assert rule is Rule.BAD_ADDRESS
    assert action is (Action.QUARANTINE if local else Action.REJECT)


@pytest.mark.parametrize(
    "raw",
    ['"x\\@bjzutrecht.nl"@samen-veilig.nl', '"x\uff20bjzutrecht.nl"@samen-veilig.nl',
     '"x@bjzutrecht\uff61nl."@samen-veilig.nl'],
)
def test_a_plainly_spelled_route_to_a_retired_domain_is_refused_as_retired(
    example_policy: Policy, raw: str
) -> None:
    envelope = Envelope("medewerker@samen-veilig.nl", (parse_recipient(raw),), internal=True)
    [r] = decide(envelope, example_policy).recipients
    assert (r.action, r.rule, r.matched) == (Action.REJECT, Rule.RETIRED, "bjzutrecht.nl")


@pytest.mark.parametrize(
    ("raw", "domains"),
    [
        ('"Jan Jansen"@samen-veilig.nl', ("samen-veilig.nl",)),
        ('"bjzutrecht.nl x"@samen-veilig.nl', ("samen-veilig.nl",)),
        ('"dossier (oud)"@samen-veilig.nl', ("samen-veilig.nl",)),
        ('"a\\\\b"@samen-veilig.nl', ("samen-veilig.nl",)),
        ("50%-off@shop.example", ("shop.example",)),
        ("j\u00fcrgen%b\u00fccher.de@relay.example", ("relay.example", "xn--bcher-kva.de")),
    ],
)
def test_a_local_part_without_a_hidden_route_stays_readable(
    raw: str, domains: tuple[str, ...]
) -> None:
    assert parse_recipient(raw).domains == domains
