"""A relay is a decision: through a relayhost, sensitive mail counts as verified only when
the policy names the relay, reaches it over verified TLS and trusts it to enforce."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.config.policyfile import PolicyError
from postwacht.core.address import parse_recipient
from postwacht.core.classify import Classification
from postwacht.core.decide import Envelope, RecipientVerdict, decide, transport_domains
from postwacht.core.facts import Facts, TransportFacts
from postwacht.core.policy import Policy
from postwacht.core.relay import HopError, next_hops, relaying
from postwacht.core.tables import Status, TableAnswer, tls_answer, tls_needs_facts
from postwacht.core.vocabulary import Action, Method, Rule

SENSITIVE = Classification(True, "detector bsn")
DANE = TransportFacts("dane.example", Method.DANE, "signed MX with usable TLSA",
                      ("mx.dane.example",), True)
NONE = TransportFacts("plain.example", Method.NONE, "MX is not DNSSEC-signed")
RELAY = "[smtp.provider.example]:587"
TRUSTED = f'delivery: {{relay: "{RELAY}", tls: secure, trusted_to_enforce: true}}'


@pytest.fixture
def policy(write_policy: Callable[[str], Path]) -> Callable[..., Policy]:
    def make(delivery: str = "", mode: str = "enforce") -> Policy:
        return load(write_policy(f"""
            version: 1
            organisation: O
            owned_domains: [samen-veilig.nl]
            partners: [{{domain: utrecht.nl, transport: dane}}]
            secure_transport: {{otherwise: quarantine, mode: {mode}}}
            {delivery}
        """))
    return make


def verdict(policy: Policy, to: str, relayhost: tuple[str, ...] | None,
            classification: Classification = SENSITIVE,
            found: tuple[TransportFacts, ...] = (DANE, NONE)) -> RecipientVerdict:
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient(to),), internal=True)
    facts = Facts(classification, {f.domain: f for f in found}, relayhost=relayhost)
    [result] = decide(envelope, policy, facts).recipients
    return result


def test_a_relayhost_the_policy_does_not_name_makes_sensitive_mail_unverified(
        policy: Callable[..., Policy]) -> None:
    result = verdict(policy(), "x@dane.example", (RELAY,))
    assert (result.action, result.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)
    assert f"relayhost {RELAY}, which the policy's delivery section does not name" in (
        result.reason)


def test_the_named_and_trusted_relay_keeps_what_the_domain_offers(
        policy: Callable[..., Policy]) -> None:
    trusted = policy(TRUSTED)
    result = verdict(trusted, "x@dane.example", (RELAY,))
    assert (result.action, result.rule) == (Action.ACCEPT, Rule.SECURE_TRANSPORT)
    assert f"through the relay {RELAY}, trusted to enforce" in result.reason
    # The relay's trust never makes a domain without verified TLS safe.
    plain = verdict(trusted, "x@plain.example", (RELAY,))
    assert (plain.action, plain.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)


@pytest.mark.parametrize(("delivery", "says"), [
    ('delivery: {relay: "[smtp.other.example]:587", trusted_to_enforce: true}',
     "but the policy's delivery.relay is [smtp.other.example]:587"),
    (f'delivery: {{relay: "{RELAY}", trusted_to_enforce: false}}',
     "does not trust the relay"),
    (f'delivery: {{relay: "{RELAY}", tls: encrypt, trusted_to_enforce: true}}',
     "encrypted but not verified"),
])
def test_a_relay_that_differs_is_untrusted_or_unverified_is_no_verified_transport(
        policy: Callable[..., Policy], delivery: str, says: str) -> None:
    result = verdict(policy(delivery), "x@dane.example", (RELAY,))
    assert (result.action, result.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)
    assert says in result.reason


def test_through_a_relay_a_partner_needs_verified_tls_of_its_own(
        policy: Callable[..., Policy]) -> None:
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient("x@utrecht.nl"),),
                        internal=True)
    # Straight to the partner, the TLS table serves the agreed level: no facts needed.
    assert transport_domains(envelope, policy(), ()) == set()
    assert verdict(policy(), "x@utrecht.nl", ()).action is Action.ACCEPT
    held = verdict(policy(), "x@utrecht.nl", (RELAY,))
    assert (held.action, held.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)
    # Through the relay the agreement is never served, so the partner's own DANE counts.
    assert transport_domains(envelope, policy(TRUSTED), (RELAY,)) == {"utrecht.nl"}
    dane = TransportFacts("utrecht.nl", Method.DANE, "signed MX with usable TLSA",
                          ("mx.utrecht.nl",), True)
    trusted = verdict(policy(TRUSTED), "x@utrecht.nl", (RELAY,), found=(dane,))
    assert (trusted.action, trusted.rule) == (Action.ACCEPT, Rule.SECURE_TRANSPORT)
    plain = TransportFacts("utrecht.nl", Method.NONE, "MX is not DNSSEC-signed")
    unverified = verdict(policy(TRUSTED), "x@utrecht.nl", (RELAY,), found=(plain,))
    assert (unverified.action, unverified.rule) == (Action.QUARANTINE,
                                                    Rule.INSECURE_TRANSPORT)


def test_without_a_relayhost_the_delivery_section_changes_nothing(
        policy: Callable[..., Policy]) -> None:
    untrusted = policy(f'delivery: {{relay: "{RELAY}"}}')
    assert verdict(untrusted, "x@dane.example", ()).action is Action.ACCEPT


def test_when_postfix_cannot_be_asked_the_policy_is_taken_at_its_word(
        policy: Callable[..., Policy]) -> None:
    assert verdict(policy(), "x@dane.example", None).action is Action.ACCEPT
    untrusted = policy(f'delivery: {{relay: "{RELAY}"}}')
    assert verdict(untrusted, "x@dane.example", None).action is Action.QUARANTINE
    assert verdict(policy(TRUSTED), "x@dane.example", None).action is Action.ACCEPT


def test_a_monitored_secure_transport_only_logs_the_relay(
        policy: Callable[..., Policy]) -> None:
    result = verdict(policy(mode="monitor"), "x@dane.example", (RELAY,))
    assert result.action is Action.ACCEPT
    [monitored] = result.monitored
    assert (monitored.action, monitored.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)


def test_mail_that_is_not_sensitive_ignores_the_relay(policy: Callable[..., Policy]) -> None:
    result = verdict(policy(), "x@plain.example", (RELAY,), Classification(False, "none"))
    assert result.action is Action.ACCEPT


@pytest.mark.parametrize(("tls", "answer"), [
    ("secure", "secure protocols=>=TLSv1.2"),
    ("dane", "dane-only protocols=>=TLSv1.2"),
    ("verify", "verify protocols=>=TLSv1.2"),
    ("encrypt", "encrypt protocols=>=TLSv1.2"),
])
def test_the_tls_table_answers_for_the_relay_at_the_level_the_policy_names(
        policy: Callable[..., Policy], tls: str, answer: str) -> None:
    named = policy(f'delivery: {{relay: "{RELAY}", tls: {tls}}}')
    assert tls_needs_facts(RELAY, named) is None
    assert tls_answer(RELAY, named, None) == TableAnswer(Status.OK, answer)
    assert tls_answer("[SMTP.Provider.Example]:587", named, None).data == answer
    assert tls_answer("[smtp.provider.example]:25", named, None).status is Status.NOTFOUND
    assert tls_answer(RELAY, policy(), None).status is Status.NOTFOUND


def test_the_relay_is_served_even_without_secure_transport(
        write_policy: Callable[[str], Path]) -> None:
    bare = load(write_policy(f"""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        delivery: {{relay: "{RELAY}"}}
    """))
    assert str(tls_answer(RELAY, bare, None)) == "OK secure protocols=>=TLSv1.2"


@pytest.mark.parametrize(("value", "hops"), [
    ("", ()),
    ("[SMTP.Example]:587", ("[smtp.example]:587",)),
    ("smtp.example:25, [192.0.2.1]", ("smtp.example:25", "[192.0.2.1]")),
    ("[ipv6:2001:db8::1]:587", ("[ipv6:2001:db8::1]:587",)),
    ("[bücher.example]", ("[xn--bcher-kva.example]",)),
    ("[smtp.example]:Submission", ("[smtp.example]:submission",)),
])
def test_relayhost_values_are_read_as_postfix_writes_them(
        value: str, hops: tuple[str, ...]) -> None:
    assert next_hops(value) == hops


@pytest.mark.parametrize("value", ["[smtp.example", "smtp.example:99999", "192.0.2.1:25",
                                   "[a]:_b", "exa mple..com", "[smtp.example]:"])
def test_a_hop_postfix_would_not_take_is_refused_by_name(value: str) -> None:
    with pytest.raises(HopError, match="'"):
        next_hops(value)


@pytest.mark.parametrize(("delivery", "path", "says"), [
    ('delivery: {relay: "[192.0.2.1]:587"}', "delivery.tls",
     "verifies a certificate against a name, never an address"),
    ('delivery: {relay: "smtp..example"}', "delivery.relay", "smtp..example"),
    ('delivery: {relay: " , "}', "delivery.relay", "names no next hop"),
    ("delivery: {tls: secure}", "delivery", "relay"),
    ('delivery: {relay: "smtp.provider.example:587", tls: verify}', "delivery.tls",
     "verify trusts the MX names DNS gives for smtp.provider.example:587"),
])
def test_a_delivery_section_with_a_fault_is_refused_with_its_place(
        policy: Callable[..., Policy], delivery: str, path: str, says: str) -> None:
    with pytest.raises(PolicyError) as failed:
        policy(delivery)
    [problem] = failed.value.problems
    assert f": {path}" in str(problem)
    assert says in str(problem)


def test_an_address_relay_may_only_be_encrypted_and_so_never_counts_as_verified(
        policy: Callable[..., Policy]) -> None:
    literal = policy('delivery: {relay: "[192.0.2.1]:587", tls: encrypt, '
                     "trusted_to_enforce: true}")
    assert relaying(literal, ("[192.0.2.1]:587",)).problem is not None
    assert any("encrypted but not verified" in w for w in literal.warnings())


def test_the_relay_may_not_be_the_secure_route_too(write_policy: Callable[[str], Path]) -> None:
    with pytest.raises(PolicyError) as failed:
        load(write_policy("""
            version: 1
            organisation: O
            owned_domains: [samen-veilig.nl]
            secure_transport: {otherwise: route, route: "relay:[sec.example]:587"}
            delivery: {relay: "[sec.example]:587", tls: encrypt}
        """))
    [problem] = failed.value.problems
    assert "delivery.relay: [sec.example]:587 is also secure_transport.route" in str(problem)
