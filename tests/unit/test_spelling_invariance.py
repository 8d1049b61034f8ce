"""No spelling of a domain changes the decision: case, a trailing dot, U-label or A-label."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from postwacht.config.compiler import load
from postwacht.core.address import parse_recipient
from postwacht.core.decide import Envelope, decide
from postwacht.core.policy import Policy

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
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """A domain from DOMAINS and one way of writing it."""
    domain = draw(st.sampled_from(DOMAINS))
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
