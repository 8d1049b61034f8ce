"""Sensitive mail to a domain with a valid `v=NTA7516-1` record, when the policy accepts
it: the whole message goes to the hosts the record names, over verified TLS, and only
when every recipient goes there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.config.policyfile import PolicyError
from postwacht.core.address import parse_recipient
from postwacht.core.classify import Classification
from postwacht.core.decide import Envelope, RecipientVerdict, decide
from postwacht.core.facts import Facts, Nta7516Facts, TransportFacts
from postwacht.core.nta7516 import nta7516_claim, route, route_host
from postwacht.core.outcome import at_end_of_message
from postwacht.core.policy import Policy
from postwacht.core.tables import nta7516_tls_answer
from postwacht.core.vocabulary import Action, Method, Rule

DAY = dt.date(2026, 11, 24)
SENSITIVE = Classification(True, "detector bsn")
OPEN = Classification(False, "no detector matched")
HOSTS = ";ntamx=20 smtp2.provider.example;ntamx=10 smtp1.provider.example"
VALID = "v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=Zorgmail" + HOSTS
HOP = "nta7516:[smtp1.provider.example]:25,[smtp2.provider.example]:25"


def claim(domain: str, text: str, dnssec: bool = True) -> Nta7516Facts:
    return Nta7516Facts(domain, nta7516_claim([text], DAY), dnssec)


def plain(domain: str, *, dnssec: bool = True) -> TransportFacts:
    return TransportFacts(domain, Method.NONE, "no signed TLSA record for mx; no MTA-STS record",
                          (f"mx1.{domain}", f"mx2.{domain}"), dnssec)


DANE = TransportFacts("dane.example", Method.DANE, "signed MX with usable TLSA",
                      ("mx.dane.example",), True)
TRANSPORT = {f.domain: f for f in (
    plain("jeugdzorg.example"), plain("ggz.example"), plain("own.example"),
    plain("other.example"), plain("old.example"), plain("unsigned.example", dnssec=False),
    plain("ownmx-unsigned.example", dnssec=False), plain("plain.example"), DANE,
    replace(DANE, domain="dane2.example"))}
NTA = {n.domain: n for n in (
    claim("jeugdzorg.example", VALID),
    claim("ggz.example", VALID),
    claim("own.example", "v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=Eigen"),
    claim("other.example", VALID.replace("smtp", "mail")),
    claim("old.example", VALID.replace("enddate=2027-12", "enddate=2025-06")),
    claim("unsigned.example", VALID, dnssec=False),
    claim("ownmx-unsigned.example",
          "v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=Eigen"),
    claim("plain.example", "v=spf1 -all"),
    claim("dane.example", VALID),
    claim("dane2.example", "v=spf1 -all"),
    Nta7516Facts("broken.example", None, False, "DNS lookup failed: SERVFAIL"),
)}
TRANSPORT["broken.example"] = plain("broken.example")


@pytest.fixture
def policy(write_policy: Callable[[str], Path]) -> Callable[..., Policy]:
    def make(accept: str = "[dane, mta-sts, partner, nta7516]", extra: str = "",
             otherwise: str = "quarantine") -> Policy:
        return load(write_policy(f"""
            version: 1
            organisation: O
            owned_domains: [samen-veilig.nl]
            secure_transport:
              accept: {accept}
              otherwise: {otherwise}
              route: "relay:[securemail.example]:587"
              {extra}
        """))
    return make


def facts(classification: Classification = SENSITIVE, **changes: object) -> Facts:
    return replace(Facts(classification, TRANSPORT, nta7516=NTA), **changes)  # type: ignore[arg-type]


def decided(policy: Policy, *to: str, found: Facts | None = None
            ) -> tuple[RecipientVerdict, ...]:
    envelope = Envelope("a@samen-veilig.nl", tuple(parse_recipient(t) for t in to),
                        internal=True)
    return decide(envelope, policy, found or facts()).recipients


def message(policy: Policy, *to: str, found: Facts | None = None) -> tuple[Action, str | None]:
    envelope = Envelope("a@samen-veilig.nl", tuple(parse_recipient(t) for t in to),
                        internal=True)
    outcome = at_end_of_message(envelope, policy, found or facts(), local=False)
    return outcome.action, outcome.route


def test_a_valid_record_routes_the_message_to_its_ntamx_hosts_in_order(
        policy: Callable[..., Policy]) -> None:
    [verdict] = decided(policy(), "jan@jeugdzorg.example")
    assert (verdict.action, verdict.rule, verdict.hop) == (Action.ROUTE, Rule.NTA7516, HOP)
    assert "provider Zorgmail" in verdict.reason
    assert "2025-01-01 to 2027-12-31" in verdict.reason
    assert message(policy(), "jan@jeugdzorg.example") == (Action.ROUTE, HOP)


def test_without_ntamx_the_domains_own_mx_hosts_receive(policy: Callable[..., Policy]) -> None:
    [verdict] = decided(policy(), "jan@own.example")
    assert verdict.hop == "nta7516:[mx1.own.example]:25,[mx2.own.example]:25"


def test_a_record_counts_only_when_the_policy_accepts_it(policy: Callable[..., Policy]) -> None:
    [verdict] = decided(policy(accept="[dane, mta-sts, partner]"), "jan@jeugdzorg.example")
    assert (verdict.action, verdict.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)
    assert "NTA 7516" not in verdict.reason


def test_mail_that_is_not_sensitive_is_not_routed(policy: Callable[..., Policy]) -> None:
    [verdict] = decided(policy(), "jan@jeugdzorg.example", found=facts(OPEN))
    assert (verdict.action, verdict.hop) == (Action.ACCEPT, None)


def test_an_expired_record_does_not_count_and_says_why(policy: Callable[..., Policy]) -> None:
    [verdict] = decided(policy(), "jan@old.example")
    assert (verdict.action, verdict.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)
    assert "its NTA 7516 record does not count: expired" in verdict.reason


def test_no_record_adds_nothing_to_the_reason(policy: Callable[..., Policy]) -> None:
    [verdict] = decided(policy(), "jan@plain.example")
    assert verdict.rule is Rule.INSECURE_TRANSPORT
    assert "NTA 7516" not in verdict.reason


@pytest.mark.parametrize("nta", [NTA, {k: v for k, v in NTA.items() if k != "broken.example"}])
def test_a_failed_or_missing_lookup_is_a_dns_failure_never_no_record(
        policy: Callable[..., Policy], nta: dict[str, Nta7516Facts]) -> None:
    [verdict] = decided(policy(), "jan@broken.example", found=facts(nta7516=nta))
    assert (verdict.action, verdict.rule) == (Action.TEMPFAIL, Rule.DNS_FAILURE)
    assert "NTA 7516 mail service is unknown" in verdict.reason


@pytest.mark.parametrize("domain", ["unsigned.example", "ownmx-unsigned.example"])
def test_an_unsigned_record_or_mx_counts_only_when_the_policy_allows(
        policy: Callable[..., Policy], domain: str) -> None:
    [held] = decided(policy(), f"jan@{domain}")
    assert (held.action, held.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)
    assert "requires DNSSEC (secure_transport.nta7516.require_dnssec)" in held.reason
    allowed = policy(extra="nta7516: {require_dnssec: false}")
    [routed] = decided(allowed, f"jan@{domain}")
    assert (routed.action, routed.rule) == (Action.ROUTE, Rule.NTA7516)
    assert "not DNSSEC-signed" in routed.reason


def test_recipients_sharing_the_hosts_share_the_route(policy: Callable[..., Policy]) -> None:
    verdicts = decided(policy(), "jan@jeugdzorg.example", "piet@jeugdzorg.example",
                       "els@ggz.example")
    assert {(v.action, v.hop) for v in verdicts} == {(Action.ROUTE, HOP)}


@pytest.mark.parametrize("other", ["els@other.example", "els@samen-veilig.nl",
                                   "els@plain.example", "els@dane2.example"])
def test_a_message_that_also_goes_elsewhere_never_takes_the_route(
        policy: Callable[..., Policy], other: str) -> None:
    nta, _ = decided(policy(), "jan@jeugdzorg.example", other)
    assert (nta.action, nta.rule, nta.hop) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT, None)
    assert "send it to jeugdzorg.example in a message of its own" in nta.reason
    action, hop = message(policy(), "jan@jeugdzorg.example", other)
    assert action is Action.QUARANTINE
    assert hop is None or not hop.startswith("nta7516:")


def test_a_mixed_message_falls_back_to_the_policys_secure_route(
        policy: Callable[..., Policy]) -> None:
    routed = policy(otherwise="route")
    assert message(routed, "jan@jeugdzorg.example", "els@plain.example") == (
        Action.ROUTE, "relay:[securemail.example]:587")


def test_the_record_wins_over_dane_alone_and_dane_carries_a_mixed_message(
        policy: Callable[..., Policy]) -> None:
    [alone] = decided(policy(), "jan@dane.example")
    assert (alone.action, alone.hop) == (Action.ROUTE, HOP)
    mixed, _ = decided(policy(), "jan@dane.example", "els@plain.example")
    assert (mixed.action, mixed.rule) == (Action.ACCEPT, Rule.SECURE_TRANSPORT)


def test_in_monitor_mode_the_route_is_only_logged(policy: Callable[..., Policy]) -> None:
    [verdict] = decided(policy(extra="mode: monitor"), "jan@jeugdzorg.example")
    assert (verdict.action, verdict.hop) == (Action.ACCEPT, None)
    assert [(m.action, m.rule, m.hop) for m in verdict.monitored] == [
        (Action.ROUTE, Rule.NTA7516, HOP)]
    assert message(policy(extra="mode: monitor"), "jan@jeugdzorg.example") == (
        Action.ACCEPT, None)


def test_through_a_relay_the_hosts_are_not_reached_directly(
        policy: Callable[..., Policy]) -> None:
    relayed = policy(extra="min_tls: '1.2'\n            delivery: {relay: "
                     "'[smtp.relay.example]:587', tls: secure, trusted_to_enforce: true}")
    [verdict] = decided(relayed, "jan@jeugdzorg.example",
                        found=facts(relayhost=("[smtp.relay.example]:587",)))
    assert verdict.hop is None
    assert verdict.rule is Rule.INSECURE_TRANSPORT


def test_the_route_names_each_host_by_its_address_records_on_port_25() -> None:
    assert route(["a.example", "b.example"]) == "nta7516:[a.example]:25,[b.example]:25"
    assert route_host("[a.example]:25") == "a.example"
    assert route_host("[A.Example]:smtp") == "a.example"
    for key in ("a.example", "[a.example]:587", "[a example]:25", "*", ""):
        assert route_host(key) is None


def test_the_nta7516_table_demands_dane_where_usable_else_the_hosts_name(
        policy: Callable[..., Policy]) -> None:
    host = route_host("[smtp1.provider.example]:25")
    assert host == "smtp1.provider.example"
    assert str(nta7516_tls_answer(host, policy(), None)) == "OK dane-only protocols=>=TLSv1.2"
    assert str(nta7516_tls_answer(host, policy(extra="min_tls: '1.3'"), "no signed TLSA")) == (
        "OK secure match=smtp1.provider.example protocols=>=TLSv1.3")


def test_the_policy_names_a_wrong_nta7516_setting(policy: Callable[..., Policy]) -> None:
    with pytest.raises(PolicyError, match=r"secure_transport\.nta7516"):
        policy(extra="nta7516: {require_dnssec: maybe}")
    with pytest.raises(PolicyError, match=r"secure_transport\.nta7516"):
        policy(extra="nta7516: {dnssec: true}")


def test_check_warns_when_unsigned_records_count(policy: Callable[..., Policy]) -> None:
    assert not [w for w in policy().warnings() if "require_dnssec" in w]
    [warned] = [w for w in policy(extra="nta7516: {require_dnssec: false}").warnings()
                if "require_dnssec" in w]
    assert "anyone on the path could name their own hosts" in warned


def test_a_hold_over_the_route_keeps_it_for_the_release(write_policy: Callable[[str], Path]
                                                        ) -> None:
    guarded = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        secure_transport: {accept: [dane, nta7516]}
        misaddressing: {exposed_recipients: {max_outside: 1, action: quarantine}}
    """))
    shown = facts(visible=("jan@jeugdzorg.example", "piet@jeugdzorg.example"))
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient("jan@jeugdzorg.example"),
                                              parse_recipient("piet@jeugdzorg.example")),
                        internal=True)
    outcome = at_end_of_message(envelope, guarded, shown, local=False)
    assert (outcome.action, outcome.rule) == (Action.QUARANTINE, Rule.EXPOSED_RECIPIENTS)
    assert outcome.route == HOP  # a release leaves through the NTA 7516 hosts, not plainly


def test_a_first_recipient_hold_over_the_route_keeps_it(write_policy: Callable[[str], Path]
                                                        ) -> None:
    guarded = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        secure_transport: {accept: [dane, nta7516]}
        notices: {from: postwacht@samen-veilig.nl, review_url: "https://pw.samen-veilig.nl"}
        misaddressing: {first_recipient: {scope: sender}}
    """))
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient("jan@jeugdzorg.example"),),
                        internal=True)
    outcome = at_end_of_message(envelope, guarded, facts(), local=False)
    assert (outcome.action, outcome.rule) == (Action.QUARANTINE, Rule.FIRST_RECIPIENT)
    assert outcome.route == HOP  # the sender's "send it" leaves through the NTA 7516 hosts
