"""The decision as the milter acts on it: per recipient at RCPT, per message at the end."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from postwacht.config.compiler import load
from postwacht.core import policy as model
from postwacht.core.address import parse_recipient
from postwacht.core.classify import Classification, Sensitivity
from postwacht.core.decide import Envelope
from postwacht.core.facts import Facts, TransportFacts
from postwacht.core.outcome import at_end_of_message, at_rcpt, explain, unreadable_at_rcpt
from postwacht.core.policy import Policy
from postwacht.core.vocabulary import Action, Method, Rule


def one(to: str) -> Envelope:
    return Envelope("a@samen-veilig.nl", (parse_recipient(to),), internal=True)


def test_smtpd_refuses_a_retired_recipient_at_rcpt_and_names_the_domain(
    example_policy: Policy,
) -> None:
    outcome = at_rcpt(one("dossier@bjzutrecht.nl"), example_policy, None, local=False)
    assert outcome.reply is not None
    assert (outcome.reply.code, outcome.reply.status) == ("550", "5.7.1")
    assert outcome.retired_domain == "bjzutrecht.nl"


def test_sendmail_keeps_every_recipient_until_the_end(example_policy: Policy) -> None:
    outcome = at_rcpt(one("dossier@bjzutrecht.nl"), example_policy, None, local=True)
    assert outcome.kept
    assert outcome.retired_domain == "bjzutrecht.nl"  # still reported
    message = at_end_of_message(one("dossier@bjzutrecht.nl"), example_policy, None, local=True)
    assert (message.action, message.rule) == (Action.QUARANTINE, Rule.RETIRED)


def test_an_unreadable_recipient_is_refused_over_smtp_and_held_from_sendmail(
    example_policy: Policy,
) -> None:
    smtpd = unreadable_at_rcpt("x@exa mple.nl", "not a valid domain name", local=False)
    assert smtpd.reply is not None
    assert smtpd.reply.status == "5.1.3"
    local = unreadable_at_rcpt("x@exa mple.nl", "not a valid domain name", local=True)
    assert local.kept
    assert (local.verdict.action, local.verdict.rule) == (Action.QUARANTINE, Rule.BAD_ADDRESS)
    message = at_end_of_message(one("ok@example.org"), example_policy, None, local=True,
                                unreadable=(local.verdict,))
    assert (message.action, message.rule) == (Action.QUARANTINE, Rule.BAD_ADDRESS)
    assert [v.address for v in message.verdicts] == ["ok@example.org", "x@exa mple.nl"]


def test_explain_plays_rcpt_then_end_of_message(example_policy: Policy) -> None:
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient("x@bjzutrecht.nl"),
                                              parse_recipient("y@samen-veiIig.nl")),
                        internal=True)
    explained = explain(envelope, example_policy, None)
    assert [r.rule for r in explained.recipients] == [Rule.RETIRED, Rule.LOOKALIKE]
    assert explained.action is Action.QUARANTINE  # the retired one is gone at RCPT
    assert explained.message is not None
    assert explained.message.rule is Rule.LOOKALIKE
    everyone_refused = explain(one("x@bjzutrecht.nl"), example_policy, None)
    assert (everyone_refused.action, everyone_refused.message) == (Action.REJECT, None)


def test_the_policy_model_has_no_defaults_of_its_own() -> None:
    # The JSON Schema is the one source of policy defaults; the compiler reads them there.
    with_defaults = [
        f"{cls.__name__}.{f.name}"
        for cls in [*vars(model).values(), Sensitivity]
        if isinstance(cls, type) and dataclasses.is_dataclass(cls)
        and cls.__module__ in (model.__name__, Sensitivity.__module__)
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert with_defaults == []


def _secure_policy(write_policy: Callable[[str], Path], route: str) -> Policy:
    return load(write_policy(f"""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        secure_transport:
          otherwise: quarantine
          {route}
    """))


SENSITIVE = Classification(True, "detector bsn")
PLAIN = TransportFacts("plain.example", Method.NONE, "MX is not DNSSEC-signed; no MTA-STS")


def test_mail_held_for_insecure_transport_carries_the_secure_route(
    write_policy: Callable[[str], Path],
) -> None:
    policy = _secure_policy(write_policy, 'route: "relay:[securemail.example]:587"')
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient("x@plain.example"),),
                        internal=True)
    facts = Facts(SENSITIVE, {"plain.example": PLAIN})
    outcome = at_end_of_message(envelope, policy, facts, local=False)
    assert (outcome.action, outcome.rule) == (Action.QUARANTINE, Rule.INSECURE_TRANSPORT)
    assert outcome.route == "relay:[securemail.example]:587"


def test_a_hold_without_a_secure_route_or_for_another_rule_carries_none(
    write_policy: Callable[[str], Path], example_policy: Policy,
) -> None:
    policy = _secure_policy(write_policy, "")
    envelope = Envelope("a@samen-veilig.nl", (parse_recipient("x@plain.example"),),
                        internal=True)
    facts = Facts(SENSITIVE, {"plain.example": PLAIN})
    unrouted = at_end_of_message(envelope, policy, facts, local=False)
    assert (unrouted.action, unrouted.route) == (Action.QUARANTINE, None)
    routed = dataclasses.replace(example_policy, secure_transport=dataclasses.replace(
        policy.secure_transport, route="relay:[securemail.example]:587"))
    lookalike = at_end_of_message(one("y@samen-veiIig.nl"), routed, None, local=False)
    assert (lookalike.action, lookalike.rule, lookalike.route) == (
        Action.QUARANTINE, Rule.LOOKALIKE, None)
