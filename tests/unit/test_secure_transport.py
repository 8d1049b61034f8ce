"""The secure-transport rule: sensitive mail leaves only over verified TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.core.address import parse_recipient
from postwacht.core.classify import Classification
from postwacht.core.decide import Envelope, RecipientVerdict, decide, transport_domains
from postwacht.core.facts import Facts, StsPolicy, TransportFacts
from postwacht.core.policy import Policy
from postwacht.core.tables import tls_policy
from postwacht.core.vocabulary import Action, Method

SENSITIVE = Classification(True, "detector bsn")
OPEN = Classification(False, "marker subject [open]")
DANE = TransportFacts("dane.example", Method.DANE, "signed MX with usable TLSA",
                      ("mx.dane.example",), True)
STS = TransportFacts("sts.example", Method.MTA_STS, "enforce", ("mx1.sts.example",), False,
                     StsPolicy("enforce", ("mx1.sts.example", "*.backup.sts.example"), 86400, "1"))
NONE = TransportFacts("plain.example", Method.NONE, "MX is not DNSSEC-signed; no MTA-STS record")
FAILED = TransportFacts("broken.example", Method.FAILURE, "DNS lookup failed: SERVFAIL")
FACTS = {f.domain: f for f in (DANE, STS, NONE, FAILED)}


def verdict(policy: Policy, to: str, classification: Classification | None) -> RecipientVerdict:
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient(to),), internal=True)
    [result] = decide(envelope, policy, Facts(classification, FACTS)).recipients
    return result


@pytest.fixture
def policy(write_policy: Callable[[str], Path]) -> Callable[[str], Policy]:
    def make(otherwise: str = "quarantine") -> Policy:
        return load(write_policy(f"""
            version: 1
            organisation: O
            owned_domains: [samen-veilig.nl]
            partners: [{{domain: utrecht.nl, transport: dane}}]
            secure_transport:
              otherwise: {otherwise}
              route: "relay:[securemail.example]:587"
              reply: "use the portal"
        """))
    return make


@pytest.mark.parametrize("domain", ["dane.example", "sts.example"])
def test_sensitive_mail_over_verified_transport_is_accepted(
    policy: Callable[[str], Policy], domain: str
) -> None:
    result = verdict(policy(), f"x@{domain}", SENSITIVE)
    assert (result.action, result.rule) == (Action.ACCEPT, "secure-transport")


@pytest.mark.parametrize(
    ("otherwise", "action", "says"),
    [
        ("quarantine", Action.QUARANTINE, "held for review"),
        ("reject", Action.REJECT, "use the portal"),
        ("route", Action.ROUTE, "sent through relay:[securemail.example]:587"),
    ],
)
def test_sensitive_mail_without_verified_transport_follows_the_policy(
    policy: Callable[[str], Policy], otherwise: str, action: Action, says: str
) -> None:
    result = verdict(policy(otherwise), "x@plain.example", SENSITIVE)
    assert (result.action, result.rule) == (action, "insecure-transport")
    assert "sensitive (detector bsn)" in result.reason
    assert says in result.reason


def test_a_dns_failure_never_becomes_no_policy(policy: Callable[[str], Policy]) -> None:
    result = verdict(policy(), "x@broken.example", SENSITIVE)
    assert (result.action, result.rule) == (Action.TEMPFAIL, "dns-failure")


def test_not_sensitive_mail_and_unknown_content_are_unaffected(
    policy: Callable[[str], Policy],
) -> None:
    assert verdict(policy(), "x@plain.example", OPEN).action is Action.ACCEPT
    assert verdict(policy(), "x@plain.example", None).action is Action.ACCEPT


def test_partners_and_own_domains_need_no_discovery(policy: Callable[[str], Policy]) -> None:
    assert verdict(policy(), "x@utrecht.nl", SENSITIVE).rule == "partner"
    assert verdict(policy(), "x@samen-veilig.nl", SENSITIVE).rule == "owned"
    envelope = Envelope("a@samen-veilig.nl", tuple(parse_recipient(a) for a in
                        ("x@utrecht.nl", "y@samen-veilig.nl", "z@plain.example")), internal=True)
    assert transport_domains(envelope, policy()) == {"plain.example"}


@pytest.mark.parametrize("to", ["x%plain.example@samen-veilig.nl",
                                "plain.example!x@samen-veilig.nl",
                                "x%plain.example@utrecht.nl"])
def test_a_domain_hidden_in_the_local_part_is_checked_too(
    policy: Callable[[str], Policy], to: str
) -> None:
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient(to),), internal=True)
    assert transport_domains(envelope, policy()) == {"plain.example"}
    result = verdict(policy(), to, SENSITIVE)
    assert (result.action, result.rule) == (Action.QUARANTINE, "insecure-transport")


def test_an_accepted_address_literal_is_not_a_way_around_secure_transport(
    write_policy: Callable[[str], Path],
) -> None:
    p = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        address_literals: accept
        secure_transport: {otherwise: reject}
    """))
    assert verdict(p, "x@[192.0.2.1]", SENSITIVE).rule == "insecure-transport"
    assert verdict(p, "x@[192.0.2.1]", OPEN).action is Action.ACCEPT


def test_tls_policies_are_never_weaker_than_what_the_milter_relied_on(
    policy: Callable[[str], Policy],
) -> None:
    p = policy()
    assert tls_policy("dane.example", p, DANE) == "dane-only protocols=>=TLSv1.2"
    assert tls_policy("sts.example", p, STS) == (
        "secure match=mx1.sts.example:.backup.sts.example protocols=>=TLSv1.2")
    assert tls_policy("plain.example", p, NONE) is None
    assert tls_policy("utrecht.nl", p, None) == "dane-only protocols=>=TLSv1.2"
