"""The misaddressing guard (first recipients, exposed recipient lists) and monitor mode,
decided by the core from values: no store, no DNS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from postwacht.adapters.headers import MAX_VISIBLE, VisibleRecipients
from postwacht.config.compiler import load
from postwacht.config.policyfile import PolicyError
from postwacht.core.address import parse_recipient
from postwacht.core.classify import Classification
from postwacht.core.decide import Envelope, decide, first_recipient_candidates
from postwacht.core.facts import Facts, TransportFacts
from postwacht.core.outcome import at_end_of_message, at_rcpt, explain
from postwacht.core.policy import Policy
from postwacht.core.roles import needs_second_person
from postwacht.core.vocabulary import Action, Method, Mode, Rule

from tests.conftest import EXAMPLE_POLICY

SENSITIVE = Classification(True, "detector bsn", "bsn")
OPEN = Classification(False, "marker subject [open]")
SENDER = "jan@samen-veilig.nl"
DANE = {d: TransportFacts(d, Method.DANE, "signed MX with usable TLSA", (f"mx.{d}",), True)
        for d in ("jeugdzorg.example", "gmail.example", "bjzutrecht.nl", "samen-veiIig.nl")}
PLAIN = {"plain.example": TransportFacts("plain.example", Method.NONE, "not signed")}

NOTICES = """
notices:
  from: postwacht@samen-veilig.nl
  review_url: https://review.samen-veilig.nl/
"""

Make = Callable[..., Policy]


@pytest.fixture
def policy(write_policy: Callable[[str], Path]) -> Make:
    def make(misaddressing: str = "", extra: str = "", mode: str = "enforce",
             retired_mode: str = "") -> Policy:
        retired = f", mode: {retired_mode}" if retired_mode else ""
        text = f"""
version: 1
organisation: Samen Veilig
mode: {mode}
owned_domains: [samen-veilig.nl]
retired_domains: [{{domain: bjzutrecht.nl{retired}}}]
partners: [{{domain: utrecht.nl, transport: dane}}]
secure_transport: {{otherwise: quarantine}}
{NOTICES}
misaddressing:
{misaddressing or '  first_recipient: {}'}
{extra}
"""
        return load(write_policy(text))
    return make


def facts(classification: Classification = SENSITIVE, *, known: frozenset[str] = frozenset(),
          visible: tuple[str, ...] = ()) -> Facts:
    return Facts(classification, {**DANE, **PLAIN}, known=known, visible=visible)


def envelope(*to: str, sender: str = SENDER) -> Envelope:
    return Envelope(sender, tuple(parse_recipient(t) for t in to), internal=True)


def one(policy: Policy, to: str, found: Facts, sender: str = SENDER):  # type: ignore[no-untyped-def]
    [verdict] = decide(envelope(to, sender=sender), policy, found).recipients
    return verdict


# The first-recipient guard.

def test_sensitive_mail_to_a_new_outside_address_waits_for_its_sender(policy: Make) -> None:
    verdict = one(policy(), "piet@jeugdzorg.example", facts())
    assert (verdict.action, verdict.rule) == (Action.QUARANTINE, Rule.FIRST_RECIPIENT)
    assert "never mailed this address at jeugdzorg.example" in verdict.reason
    assert "piet" not in verdict.reason  # reasons reach the audit log: no local part
    outcome = at_end_of_message(envelope("piet@jeugdzorg.example"), policy(), facts(),
                                local=False)
    assert (outcome.action, outcome.rule) == (Action.QUARANTINE, Rule.FIRST_RECIPIENT)


def test_a_known_correspondent_goes_straight_out(policy: Make) -> None:
    found = facts(known=frozenset({"piet@jeugdzorg.example"}))
    verdict = one(policy(), "piet@jeugdzorg.example", found)
    assert (verdict.action, verdict.rule) == (Action.ACCEPT, Rule.SECURE_TRANSPORT)


@pytest.mark.parametrize("to", ["a@utrecht.nl", "a@samen-veilig.nl", "a@zorg.utrecht.nl"])
def test_partners_and_owned_domains_are_never_first_recipients(policy: Make, to: str) -> None:
    assert one(policy(), to, facts()).rule is not Rule.FIRST_RECIPIENT


def test_mail_that_is_not_sensitive_is_not_held_for_a_new_address(policy: Make) -> None:
    verdict = one(policy(), "piet@jeugdzorg.example", facts(OPEN))
    assert verdict.action is Action.ACCEPT


def test_the_policy_lists_known_correspondents_and_exempt_senders(policy: Make) -> None:
    guard = policy("""
  first_recipient:
    known: [huisarts@jeugdzorg.example, '@gmail.example']
    exempt_senders: ['@noreply.samen-veilig.nl']
""")
    for to in ("Huisarts@jeugdzorg.example", "x@gmail.example"):
        assert one(guard, to, facts()).action is Action.ACCEPT, to
    assert one(guard, "other@jeugdzorg.example", facts()).rule is Rule.FIRST_RECIPIENT
    assert one(guard, "other@jeugdzorg.example", facts(),
               sender="robot@noreply.samen-veilig.nl").action is Action.ACCEPT


def test_a_sender_group_by_name_is_exempt(write_policy: Callable[[str], Path]) -> None:
    text = f"""
version: 1
organisation: O
owned_domains: [samen-veilig.nl]
sensitive:
  senders: [{{name: systemen, addresses: ['@apps.samen-veilig.nl'], means: sensitive}}]
{NOTICES}
misaddressing:
  first_recipient: {{exempt_senders: [EXEMPT]}}
"""
    guard = load(write_policy(text.replace("EXEMPT", "systemen")))
    assert one(guard, "x@jeugdzorg.example", facts(),
               sender="dossier@apps.samen-veilig.nl").action is Action.ACCEPT
    assert one(guard, "x@jeugdzorg.example", facts()).rule is Rule.FIRST_RECIPIENT
    with pytest.raises(PolicyError) as raised:
        load(write_policy(text.replace("EXEMPT", "systeem")))
    assert "expected one of: systemen" in str(raised.value.problems[0])


def test_the_candidates_looked_up_are_only_those_the_guard_could_hold(policy: Make) -> None:
    env = envelope("a@jeugdzorg.example", "b@utrecht.nl", "c@samen-veilig.nl",
                   "d@bjzutrecht.nl")
    assert first_recipient_candidates(env, policy(), facts()) == ("a@jeugdzorg.example",)
    assert first_recipient_candidates(env, policy(), facts(OPEN)) == ()


def test_scope_and_match_are_said_in_the_reason(policy: Make) -> None:
    guard = policy("  first_recipient: {scope: organisation, match: domain}")
    verdict = one(guard, "piet@jeugdzorg.example", facts())
    assert "nobody here has mailed anyone at jeugdzorg.example before" in verdict.reason


def test_another_hold_outranks_the_senders_confirmation(policy: Make) -> None:
    """Insecure transport holds too: the record must not be one a sender's link releases."""
    verdict = one(policy(), "piet@plain.example", facts())
    assert (verdict.action, verdict.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)


def test_four_eyes_for_a_detected_message_still_hold_for_reviewers() -> None:
    assert needs_second_person({Rule.FIRST_RECIPIENT}, "bsn", override=False)
    assert needs_second_person({Rule.FIRST_RECIPIENT}, "", override=False) == ""


def test_a_guard_that_acts_needs_notices_to_ask_the_sender(
        write_policy: Callable[[str], Path]) -> None:
    text = """
version: 1
organisation: O
owned_domains: [o.nl]
misaddressing:
  first_recipient: MODE
"""
    with pytest.raises(PolicyError) as raised:
        load(write_policy(text.replace("MODE", "{}")))
    assert "add a notices section" in str(raised.value.problems[0])
    assert load(write_policy(text.replace("MODE", "{mode: monitor}"))).first_recipient


def test_what_left_is_learnt_outside_addresses_only(policy: Make) -> None:
    env = envelope("piet@jeugdzorg.example", "a@samen-veilig.nl", "b@utrecht.nl")
    outcome = at_end_of_message(env, policy(), facts(
        known=frozenset({"piet@jeugdzorg.example"})), local=False)
    assert outcome.action is Action.ACCEPT
    assert outcome.learned == ("piet@jeugdzorg.example", "b@utrecht.nl")
    held = at_end_of_message(env, policy(), facts(), local=False)
    assert held.action is Action.QUARANTINE
    assert held.learned == ()


# Exposed recipient lists.

EXPOSED = """
  exposed_recipients: {max_outside: 3, action: ACTION}
"""
TEN = tuple(f"p{i}@jeugdzorg.example" for i in range(10))


@pytest.mark.parametrize("action", ["quarantine", "reject"])
def test_many_outside_addresses_in_to_are_held_or_refused(policy: Make, action: str) -> None:
    guard = policy(EXPOSED.replace("ACTION", action))
    found = facts(known=frozenset(TEN), visible=TEN)
    outcome = at_end_of_message(envelope(*TEN), guard, found, local=False)
    assert outcome.action is Action(action)
    assert outcome.rule is Rule.EXPOSED_RECIPIENTS
    assert "10 outside addresses" in outcome.reason
    if action == "reject":
        assert outcome.reply is not None
        assert (outcome.reply.code, "Bcc") == ("550", "Bcc")
        assert "Bcc" in outcome.reply.text


def test_the_same_addresses_in_bcc_are_accepted(policy: Make) -> None:
    guard = policy(EXPOSED.replace("ACTION", "quarantine"))
    shown = ("team@samen-veilig.nl", *(f"x{i}@samen-veilig.nl" for i in range(9)), TEN[0])
    outcome = at_end_of_message(envelope(*TEN), guard,
                                facts(known=frozenset(TEN), visible=shown), local=False)
    assert outcome.action is Action.ACCEPT


def test_an_exposure_is_not_released_by_the_senders_link(policy: Make) -> None:
    guard = policy(EXPOSED.replace("ACTION", "quarantine") + "  first_recipient: {}")
    outcome = at_end_of_message(envelope(*TEN), guard, facts(visible=TEN), local=False)
    assert outcome.rule is Rule.EXPOSED_RECIPIENTS
    assert all(v.rule is Rule.EXPOSED_RECIPIENTS for v in outcome.verdicts)


# Monitor mode.

def test_a_monitored_retired_domain_lets_mail_leave_and_says_what_it_would_do(
        policy: Make) -> None:
    monitored = policy(retired_mode="monitor")
    outcome = at_rcpt(envelope("x@bjzutrecht.nl"), monitored, None, local=False)
    assert outcome.kept
    assert outcome.retired_domain == "bjzutrecht.nl"  # still reported
    assert outcome.verdict.mode is Mode.MONITOR
    [would] = outcome.verdict.monitored
    assert (would.action, would.rule) == (Action.REJECT, Rule.RETIRED)
    assert monitored.warnings()[0].startswith("bjzutrecht.nl is a retired domain in monitor")


def test_a_monitored_rule_never_weakens_another(policy: Make) -> None:
    """Mail to a monitored retired domain is still sensitive mail to an outside domain."""
    monitored = policy(retired_mode="monitor")
    verdict = one(monitored, "x@bjzutrecht.nl", facts(known=frozenset({"x@bjzutrecht.nl"})))
    assert (verdict.action, verdict.rule) == (Action.ACCEPT, Rule.SECURE_TRANSPORT)
    verdict = one(monitored, "y@bjzutrecht.nl", facts())
    assert verdict.rule is Rule.FIRST_RECIPIENT
    assert [m.rule for m in verdict.monitored] == [Rule.RETIRED]


@pytest.mark.parametrize(("to", "found", "rule"), [
    ("x@bjzutrecht.nl", facts(OPEN), Rule.RETIRED),
    ("x@samen-veiIig.nl", facts(OPEN), Rule.LOOKALIKE),
    ("x@[192.0.2.1]", facts(OPEN), Rule.ADDRESS_LITERAL),
    ("x@plain.example", facts(known=frozenset({"x@plain.example"})), Rule.INSECURE_TRANSPORT),
    ("x@jeugdzorg.example", facts(), Rule.FIRST_RECIPIENT),
    ("x@jeugdzorg.example", facts(known=frozenset({"x@jeugdzorg.example"}), visible=TEN),
     Rule.EXPOSED_RECIPIENTS),
])
def test_every_rule_in_monitor_mode_lets_the_mail_go_on(
        policy: Make, to: str, found: Facts, rule: Rule) -> None:
    monitored = policy(EXPOSED.replace("ACTION", "reject") + "  first_recipient: {}",
                       mode="monitor")
    explained = explain(envelope(to), monitored, found)
    assert explained.action is Action.ACCEPT, explained
    [verdict] = explained.recipients
    assert verdict.mode is Mode.MONITOR
    assert rule in [m.rule for m in verdict.monitored]
    enforced = policy(EXPOSED.replace("ACTION", "reject") + "  first_recipient: {}")
    assert explain(envelope(to), enforced, found).action is not Action.ACCEPT


def test_monitored_control_loss_keeps_owned_mail_flowing(write_policy: Callable[[str], Path]
                                                         ) -> None:
    monitored = load(write_policy("""
version: 1
organisation: O
owned_domains: [o.nl]
domain_watch: {hold_on_control_loss: true, mode: monitor}
"""))
    found = Facts(control_lost={"o.nl": "mx: changed"})
    [verdict] = decide(envelope("a@o.nl"), monitored, found).recipients
    assert (verdict.action, verdict.rule) == (Action.ACCEPT, Rule.OWNED)
    assert [m.rule for m in verdict.monitored] == [Rule.CONTROL_LOST]
    assert monitored.warnings() == ["only monitored, not enforced: rule control-lost"]


def test_check_warns_that_secure_by_default_holds_most_external_mail(
        example_policy: Policy, write_policy: Callable[[str], Path]) -> None:
    """Copied as it is, the example holds every message to a domain without verified TLS:
    the postmaster hears so before the first morning's mail piles up in hold."""
    [warning] = example_policy.warnings()
    assert "sensitive by default and secure_transport is enforced" in warning
    assert "is held; start with mode: monitor" in warning
    text = EXAMPLE_POLICY.read_text().replace("# mode: monitor", "mode: monitor", 1)
    assert "sensitive by default" not in " ".join(load(write_policy(text)).warnings())


def test_address_literals_take_an_action_and_a_mode(write_policy: Callable[[str], Path]
                                                    ) -> None:
    base = "version: 1\norganisation: O\nowned_domains: [o.nl]\n"
    assert load(write_policy(base + "address_literals: {action: quarantine, mode: monitor}\n")
                ).address_literals_mode is Mode.MONITOR
    with pytest.raises(PolicyError) as raised:
        load(write_policy(base + "address_literals: allow\n"))
    assert "address_literals: 'allow' is not allowed" in str(raised.value.problems[0])


ROUTED = """
secure_transport: {otherwise: route, route: "relay:[securemail.example]:587"}
"""


def routed_policy(write_policy: Callable[[str], Path], misaddressing: str) -> Policy:
    return load(write_policy(f"""
version: 1
organisation: O
owned_domains: [samen-veilig.nl]
{ROUTED}
{NOTICES}
misaddressing:
{misaddressing}
"""))


def test_a_first_recipient_hold_over_the_secure_route_keeps_the_route(
        write_policy: Callable[[str], Path]) -> None:
    """Released by the sender's link, it must still leave through the provider."""
    guard = routed_policy(write_policy, "  first_recipient: {}")
    outcome = at_end_of_message(envelope("x@plain.example"), guard, facts(), local=False)
    assert (outcome.action, outcome.rule) == (Action.QUARANTINE, Rule.FIRST_RECIPIENT)
    assert outcome.route == "relay:[securemail.example]:587"


def test_an_exposed_list_over_the_secure_route_keeps_the_route(
        write_policy: Callable[[str], Path]) -> None:
    guard = routed_policy(write_policy, "  exposed_recipients: {max_outside: 3}")
    many = tuple(f"p{i}@plain.example" for i in range(4))
    outcome = at_end_of_message(envelope(*many), guard, facts(visible=many), local=False)
    assert (outcome.action, outcome.rule) == (Action.QUARANTINE, Rule.EXPOSED_RECIPIENTS)
    assert outcome.route == "relay:[securemail.example]:587"


def test_a_dns_failure_is_never_turned_into_a_hold_a_sender_or_reviewer_could_end(
        policy: Make) -> None:
    """Transport unknown: tempfail, so the sender retries and it is judged then."""
    guard = policy(EXPOSED.replace("ACTION", "quarantine") + "  first_recipient: {}")
    unknown = Facts(SENSITIVE, {}, visible=TEN)
    assert one(guard, "x@unknown.example", unknown).action is Action.TEMPFAIL
    outcome = at_end_of_message(envelope(*TEN), guard, Facts(SENSITIVE, {}, visible=TEN),
                                local=False)
    assert outcome.action is Action.TEMPFAIL


def test_to_and_cc_are_read_bounded_and_an_unreadable_list_is_unknown() -> None:
    shown = VisibleRecipients()
    shown.header("To", "Piet <Piet@Jeugdzorg.example>, team@samen-veilig.nl")
    shown.header("Cc", '"Jansen, J." <j@ggd.example>, piet@jeugdzorg.example')
    shown.header("Subject", "x@not-a-recipient.example")
    assert shown.addresses() == ("piet@jeugdzorg.example", "team@samen-veilig.nl",
                                 "j@ggd.example")
    nested = VisibleRecipients()
    nested.header("To", "(" * 5000 + "a@b.example")
    assert nested.addresses() is None
    huge = VisibleRecipients()
    for i in range(100):
        huge.header("Cc", ", ".join(f"p{i}-{j}@x.example" for j in range(1000)))
    found = huge.addresses()
    assert found is not None
    assert len(found) <= MAX_VISIBLE


def test_to_and_cc_that_could_not_be_read_hold_sensitive_mail(policy: Make) -> None:
    guard = policy(EXPOSED.replace("ACTION", "quarantine"))
    found = Facts(SENSITIVE, DANE, known=frozenset({"x@jeugdzorg.example"}), visible=None)
    outcome = at_end_of_message(envelope("x@jeugdzorg.example"), guard, found, local=False)
    assert (outcome.action, outcome.rule) == (Action.QUARANTINE, Rule.EXPOSED_RECIPIENTS)
    assert "could not be read" in outcome.reason
    open_mail = Facts(OPEN, DANE, visible=None)
    assert at_end_of_message(envelope("x@jeugdzorg.example"), guard, open_mail,
                             local=False).action is Action.ACCEPT
