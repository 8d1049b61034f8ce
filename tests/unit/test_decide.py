"""The decision over the example policy: what leaves, what is held, what is refused, and why."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.core.address import parse_recipient
from postwacht.core.decide import Envelope, Verdict, decide
from postwacht.core.policy import Policy
from postwacht.core.vocabulary import Action


def verdict(policy: Policy, *recipients: str, **connection: object) -> Verdict:
    envelope = Envelope(
        sender="medewerker@samen-veilig.nl",
        recipients=tuple(parse_recipient(r) for r in recipients),
        **connection,  # type: ignore[arg-type]
    )
    return decide(envelope, policy)


INTERNAL = {"authenticated": "medewerker"}


@pytest.mark.parametrize(
    "recipient",
    [
        "dossier@bjzutrecht.nl",
        "DOSSIER@BJZUTRECHT.NL.",
        "x@mail.bjzutrecht.nl",
        '"a@b"@bjzutrecht.nl',
        "user%bjzutrecht.nl@relay.example",
        "bjzutrecht.nl!user@relay.example",
        "<@bjzutrecht.nl:user@relay.example>",
        '"x@bjzutrecht.nl"@relay.example',
    ],
)
def test_mail_to_a_retired_domain_is_rejected(example_policy: Policy, recipient: str) -> None:
    result = verdict(example_policy, recipient, **INTERNAL)
    [r] = result.recipients
    assert (r.action, r.rule, r.matched) == (Action.REJECT, "retired", "bjzutrecht.nl")
    assert result.action is Action.REJECT


def test_retired_reason_says_since_when_and_which_address_to_use(example_policy: Policy) -> None:
    [r] = verdict(example_policy, "dossier@bjzutrecht.nl", **INTERNAL).recipients
    assert "2015-01-01" in r.reason
    assert "send to dossier@samen-veilig.nl instead" in r.reason


def test_policy_reply_text_is_used_with_its_placeholders(
    write_policy: Callable[[str], Path],
) -> None:
    policy = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [new.nl]
        retired_domains:
          - {domain: old.nl, since: 2020-02-02, successor: new.nl,
             reply: "{domain} is weg sinds {since}; mail {address}"}
    """))
    [r] = verdict(policy, "jan@old.nl", internal=True).recipients
    assert r.reason == "old.nl is weg sinds 2020-02-02; mail jan@new.nl"


@pytest.mark.parametrize(
    ("recipient", "protected"),
    [
        ("x@samen-veiIig.nl", "samen-veilig.nl"),  # capital i for l
        ("x@samen-vei1ig.nl", "samen-veilig.nl"),  # digit one for l
        ("x@samenveilig.nl", "samen-veilig.nl"),  # hyphen dropped
        ("x@samen-veilig.com", "samen-veilig.nl"),  # public suffix changed
        ("x@samen-velig.nl", "samen-veilig.nl"),  # letter dropped
        ("x@samen-vielig.nl", "samen-veilig.nl"),  # letters swapped
        ("x@sаmen-veilig.nl", "samen-veilig.nl"),  # Cyrillic a
        ("x@bjz-utrecht.nl", "bjzutrecht.nl"),  # hyphen inserted, retired domain
        ("x@bjzutrecht.com", "bjzutrecht.nl"),
        ("x@utrech.nl", "utrecht.nl"),  # partner
        ("x@samen-veilig.nl.example.com", "samen-veilig.nl"),  # embedded
        ("x@samen-veılıg.nl", "samen-veilig.nl"),  # dotless i
        ("x@bjzսtrecհt.nl", "bjzutrecht.nl"),  # Armenian letters
        ("x@ѕamen-veiɩiɡ.nl", "samen-veilig.nl"),  # three different scripts
        ("x@bjzutrecht-nl.com", "bjzutrecht.nl"),  # the whole name in one label
        ("x@bjzutrecht.example.com", "bjzutrecht.nl"),  # the name as a subdomain label
    ],
)
def test_lookalike_is_quarantined(example_policy: Policy, recipient: str, protected: str) -> None:
    result = verdict(example_policy, recipient, **INTERNAL)
    [r] = result.recipients
    assert (r.action, r.rule, r.matched) == (Action.QUARANTINE, "lookalike", protected)
    assert "check the address" in r.reason
    assert result.action is Action.QUARANTINE


@pytest.mark.parametrize(
    ("recipient", "rule"),
    [
        ("x@samen-veilig.nl", "owned"),
        ("x@afdeling.samen-veilig.nl", "owned"),
        ("x@example.org", "default"),
        ("x@gemeente.utrecht.nl", "partner"),
        ("x@utrecht.nl", "partner"),
        ("postmaster", "local"),
        ("x@universiteit-utrecht.nl", "default"),
    ],
)
def test_ordinary_mail_is_accepted(example_policy: Policy, recipient: str, rule: str) -> None:
    [r] = verdict(example_policy, recipient, **INTERNAL).recipients
    assert (r.action, r.rule) == (Action.ACCEPT, rule)


def test_address_literal_follows_the_policy(example_policy: Policy) -> None:
    [r] = verdict(example_policy, "x@[192.0.2.1]", **INTERNAL).recipients
    assert (r.action, r.rule) == (Action.REJECT, "address-literal")


def test_lookalike_ignore_list_lets_a_known_domain_through(
    write_policy: Callable[[str], Path],
) -> None:
    policy = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        lookalikes: {ignore: [samen-veilig.com]}
    """))
    [r] = verdict(policy, "x@samen-veilig.com", internal=True).recipients
    assert r.action is Action.ACCEPT


def test_short_names_match_only_on_homoglyphs_not_on_edits(
    write_policy: Callable[[str], Path],
) -> None:
    policy = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [uu.nl]
    """))
    assert verdict(policy, "x@ua.nl", internal=True).recipients[0].action is Action.ACCEPT
    assert verdict(policy, "x@uu.com", internal=True).recipients[0].rule == "lookalike"


def test_mail_from_outside_is_accepted_untouched(example_policy: Policy) -> None:
    result = verdict(
        example_policy, "dossier@bjzutrecht.nl", client_ip=ipaddress.ip_address("203.0.113.9")
    )
    assert result.internal is False
    assert result.action is Action.ACCEPT
    assert result.recipients[0].rule == "inbound"


@pytest.mark.parametrize(
    "connection",
    [
        {"authenticated": "jan"},
        {"client_ip": ipaddress.ip_address("10.1.2.3")},
        {"daemon_name": "ORIGINATING"},
    ],
)
def test_each_kind_of_internal_sender_is_checked(
    example_policy: Policy, connection: dict[str, object]
) -> None:
    result = verdict(example_policy, "dossier@bjzutrecht.nl", **connection)
    assert result.internal is True
    assert result.action is Action.REJECT


def test_only_refused_recipients_are_refused_and_the_rest_decides_the_message(
    example_policy: Policy,
) -> None:
    result = verdict(example_policy, "a@bjzutrecht.nl", "b@example.org", **INTERNAL)
    assert [r.action for r in result.recipients] == [Action.REJECT, Action.ACCEPT]
    assert result.action is Action.ACCEPT
    assert len(result.refused) == 1


def test_one_lookalike_holds_the_whole_message(example_policy: Policy) -> None:
    result = verdict(
        example_policy, "a@bjzutrecht.nl", "b@example.org", "c@samen-veiIig.nl", **INTERNAL
    )
    assert result.action is Action.QUARANTINE
