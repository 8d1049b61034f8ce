"""No spelling of a domain changes the decision: case, a trailing dot, U-label or A-label,
and no blank, comment or quoting around a route in the local part lets it through."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from postwacht.config.compiler import load
from postwacht.core.address import AddressError, parse_recipient
from postwacht.core.decide import Envelope, decide
from postwacht.core.policy import Policy
from postwacht.core.vocabulary import Action

# Domains that hit each rule of the policy below: retired (ASCII and IDN), owned,
# partner, look-alike, and none.
DOMAINS = [
    "bjzutrecht.nl",
    "mail.bjzutrecht.nl",
    "jeugdzorg-düsseldorf.de",
    "post.jeugdzorg-düsseldorf.de",
    "samen-veilig.nl",
    "zorg.utrecht.nl",
    "samen-veiiig.nl",
    "jeugdzorg-dusseldorf.de",
    "bücher.example",
    "example.org",
]
RETIRED = [d for d in DOMAINS if d.endswith(("bjzutrecht.nl", "jeugdzorg-düsseldorf.de"))]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(
        "version: 1\n"
        "organisation: O\n"
        "owned_domains: [samen-veilig.nl]\n"
        "retired_domains: [{domain: bjzutrecht.nl}, {domain: XN--JEUGDZORG-DSSELDORF-GBC.DE}]\n"
        "partners: [{domain: utrecht.nl, transport: dane}]\n",
        encoding="utf-8",
    )
    return load(path)


@st.composite
def spellings(draw: st.DrawFn, domains: list[str] = DOMAINS) -> tuple[str, str]:
    """A domain from `domains` and one way of writing it."""
    domain = draw(st.sampled_from(domains))
    form = draw(st.sampled_from(["unicode", "alabel"]))
    text = idna.encode(domain, uts46=True).decode() if form == "alabel" else domain
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    text = "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))
    if draw(st.booleans()):
        text += "."
    if draw(st.booleans()) and form == "unicode":
        text = text.replace(".", "\u3002", 1)  # ideographic full stop, mapped by UTS-46
    return domain, text


def _decision(policy: Policy, address: str) -> tuple[str, str, str | None]:
    envelope = Envelope("s@samen-veilig.nl", (parse_recipient(address),), internal=True)
    [r] = decide(envelope, policy).recipients
    return r.action.value, r.rule, r.matched


@given(spellings(), st.sampled_from(["x", "Jan.Jansen", "a+b"]))
def test_spelling_never_changes_the_decision(
    policy: Policy, spelled: tuple[str, str], local: str
) -> None:
    canonical, written = spelled
    assert _decision(policy, f"{local}@{written}") == _decision(policy, f"{local}@{canonical}")


@given(spellings())
def test_spelling_never_changes_the_decision_inside_a_percent_hack(
    policy: Policy, spelled: tuple[str, str]
) -> None:
    canonical, written = spelled
    via = f"user%{written}@relay.example"
    assert _decision(policy, via) == _decision(policy, f"user%{canonical}@relay.example")


def test_the_decisions_cover_every_rule(policy: Policy) -> None:
    rules = {_decision(policy, f"x@{d}")[1] for d in DOMAINS}
    assert rules == {"retired", "owned", "partner", "lookalike", "default"}


# Inside a quoted string, as written on the wire: blanks, comments, quoted pairs, specials,
# blanks and invisible characters outside ASCII, full-width brackets.
_HIDING = [" ", "   ", "(c)", "(a(b)c)", "(", ")", "\\ ", '\\"', "\\\\", ",", ";", ":",
           "<", ">", "[", "]", "\u00a0", "\u3000", "\u200b", "\u200c", "\u2060", "\ufeff",
           "\uff08c\uff09"]


@st.composite
def hidden_routes(draw: st.DrawFn) -> str:
    """A quoted local part naming a retired domain as a route, with things hidden in it."""
    _, written = draw(spellings(RETIRED))
    at, percent, bang = draw(st.sampled_from([("@", "%", "!"), ("\uff20", "\uff05", "\uff01")]))
    text = draw(st.sampled_from([f"x{at}{written}", f"x{percent}{written}", f"{written}{bang}x"]))
    for piece in draw(st.lists(st.sampled_from(_HIDING), min_size=1, max_size=3)):
        where = draw(st.integers(0, len(text)))
        text = text[:where] + piece + text[where:]
    return f'"{text}"@samen-veilig.nl'


@given(hidden_routes())
def test_a_route_to_a_retired_domain_is_never_accepted_however_it_is_hidden(
    policy: Policy, address: str
) -> None:
    try:
        action, rule, matched = _decision(policy, address)
    except AddressError:
        return  # unreadable: the milter refuses it over SMTP and holds it from sendmail(1)
    assert action != Action.ACCEPT.value
    assert (rule, matched) in {("retired", "bjzutrecht.nl"),
                               ("retired", "xn--jeugdzorg-dsseldorf-gbc.de")}
