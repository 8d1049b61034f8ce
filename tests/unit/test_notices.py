"""Notices: what the policy's `notices` section means, whom a hold is told to, what a
notice says (and never says), in Dutch and English, and when a digest is due."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.config.policyfile import PolicyError, schema
from postwacht.core.policy import DigestPeriod, Language, Policy
from postwacht.core.vocabulary import Rule
from postwacht.notices.compose import (
    MAX_DIGEST_ENTRIES,
    Held,
    Standing,
    age,
    digest,
    sender_notice,
    words,
)
from postwacht.notices.notifier import addressee
from postwacht.notices.schedule import period_name

from tests.conftest import EXAMPLE_POLICY

NOTICES = """
notices:
  from: postwacht@samen-veilig.nl
  language: {language}
  review_url: https://review.samen-veilig.nl/postwacht
  rules:
    retired: {{sender: false, digest: false}}
"""
NOW = dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
SUBJECT = "Dossier Jansen, BSN 111222333"
"""The held message's subject: a notice must never carry it (nor its body)."""
LOOKALIKE = Held(17, "medewerker@samen-veilig.nl", Rule.LOOKALIKE,
                 "samen-veiiig.nl looks like our domain samen-veilig.nl but is not it: "
                 "check the address", ("samen-veiiig.nl", "xn--bcher-kva.de"),
                 NOW - dt.timedelta(hours=5))


def with_notices(write_policy: Callable[[str], Path], section: str) -> Path:
    return write_policy(EXAMPLE_POLICY.read_text() + section)


@pytest.fixture(params=["nl", "en"])
def policy(request: pytest.FixtureRequest, write_policy: Callable[[str], Path]) -> Policy:
    return load(with_notices(write_policy, NOTICES.format(language=request.param)))


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


# The policy section.

def test_a_policy_without_notices_tells_nobody(example_policy: Policy) -> None:
    assert example_policy.notices is None


def test_the_notices_section_compiles_with_the_schemas_defaults(
        write_policy: Callable[[str], Path]) -> None:
    policy = load(with_notices(write_policy, """
notices:
  from: Postwacht@Samen-Veilig.NL
  review_url: https://review.samen-veilig.nl
"""))
    notices = policy.notices
    assert notices is not None
    assert notices.sender_address == "Postwacht@samen-veilig.nl"
    assert notices.language is Language.EN
    assert notices.digest is DigestPeriod.DAILY
    assert notices.review_url == "https://review.samen-veilig.nl/"
    assert notices.link(5) == "https://review.samen-veilig.nl/held/5"
    assert all(notices.notifies_sender(rule) and notices.in_digest(rule) for rule in Rule)


def test_a_rule_can_turn_off_its_sender_notice_and_digest_entry(policy: Policy) -> None:
    notices = policy.notices
    assert notices is not None
    assert not notices.notifies_sender(Rule.RETIRED)
    assert not notices.in_digest(Rule.RETIRED)
    assert notices.notifies_sender(Rule.LOOKALIKE)
    assert notices.in_digest(Rule.LOOKALIKE)


def test_the_schema_names_every_rule_for_per_rule_notices() -> None:
    rules = schema()["properties"]["notices"]["properties"]["rules"]["properties"]
    assert set(rules) == {rule.value for rule in Rule}


@pytest.mark.parametrize(("section", "offset", "expected"), [
    ("notices:\n  from: postwacht@example.org\n  review_url: https://r.example/\n", 1,
     "notices.from: postwacht@example.org is not in an owned domain"),
    ("notices:\n  from: '\"a b\"@samen-veilig.nl'\n  review_url: https://r.example/\n", 1,
     "notices.from: '\"a b\"@samen-veilig.nl': the part before @ must be plain"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: http://r.example/\n", 2,
     "notices.review_url: 'http://r.example/': links sent by mail must use https"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: https://r.example/?a=1\n", 2,
     "must be a plain base URL"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: https://r.example:x/\n", 2,
     "notices.review_url: 'https://r.example:x/' is not a URL"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: ftp://r.example/\n", 2,
     "notices.review_url: 'ftp://r.example/' is not a web address"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: https://r.example/\n"
     "  digest: weekly\n", 3,
     "notices.digest: 'weekly' is not allowed (expected one of: immediately, hourly, daily, "
     "off, false)"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: https://r.example/\n"
     "  language: de\n", 3, "notices.language: 'de' is not allowed (expected one of: nl, en)"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: https://r.example/\n"
     "  rules:\n    retird: {sender: false}\n", 4,
     "notices.rules.retird: unknown key 'retird' (did you mean 'retired'?)"),
    ("notices:\n  from: postwacht@samen-veilig.nl\n  review_url: https://r.example/\n"
     "  rules:\n    retired: {sender: 'no'}\n", 4,
     "notices.rules.retired.sender: expected true or false, got text"),
    ("notices:\n  from: postwacht\n  review_url: https://r.example/\n", 1,
     "notices.from: 'postwacht' is not a mail address (NAME@DOMAIN)"),
    ("notices:\n  language: nl\n", 0, "notices: missing required key 'from'"),
])
def test_a_wrong_notices_setting_is_named_with_its_line(
        write_policy: Callable[[str], Path], section: str, offset: int, expected: str
) -> None:
    line = EXAMPLE_POLICY.read_text().count("\n") + 2 + offset  # after a blank line
    path = with_notices(write_policy, "\n" + section)
    with pytest.raises(PolicyError) as raised:
        load(path)
    shown = [str(p) for p in raised.value.problems]
    assert any(expected in text and text.startswith(f"{path}:{line}:")
               for text in shown), shown


def test_an_unquoted_off_turns_the_digest_off(write_policy: Callable[[str], Path]) -> None:
    """YAML 1.1 reads `off` as false: a postmaster writing it means off all the same."""
    policy = load(with_notices(write_policy, """
notices:
  from: postwacht@samen-veilig.nl
  review_url: https://review.samen-veilig.nl/
  digest: off
"""))
    assert policy.notices is not None
    assert policy.notices.digest is DigestPeriod.OFF


def test_http_is_allowed_for_a_loopback_review_url(write_policy: Callable[[str], Path]) -> None:
    policy = load(with_notices(write_policy, """
notices:
  from: postwacht@samen-veilig.nl
  review_url: http://127.0.0.1:8080/review/
"""))
    assert policy.notices is not None
    assert policy.notices.link(3) == "http://127.0.0.1:8080/review/held/3"


# Whom a hold is told to.

@pytest.mark.parametrize(("sender", "rule", "why_not"), [
    ("<>", Rule.LOOKALIKE, "null sender"),
    ("", Rule.LOOKALIKE, "null sender"),
    ("iemand@example.org", Rule.LOOKALIKE, "example.org is not an owned domain"),
    ("iemand@samen-veilig.nl.example.org", Rule.LOOKALIKE, "not an owned domain"),
    ("medewerker@samen-veilig.nl", Rule.RETIRED, "sender notices are off for rule retired"),
    ("postwacht@samen-veilig.nl", Rule.LOOKALIKE, "the held message is a notice itself"),
    ("POSTWACHT@Samen-Veilig.nl", Rule.LOOKALIKE, "the held message is a notice itself"),
    ('"a\\nb"@samen-veilig.nl', Rule.LOOKALIKE, "not a plain address"),
    ("a\\x0ab@samen-veilig.nl", Rule.LOOKALIKE, "not a plain address"),
    ("-oQ/tmp@samen-veilig.nl", Rule.LOOKALIKE, ""),
])
def test_whom_a_hold_is_told_to(policy: Policy, sender: str, rule: Rule, why_not: str) -> None:
    held = Held(1, sender, rule, "why", ("example.com",), NOW)
    found = addressee(held, policy)
    assert why_not in found.why_not
    assert bool(found.address) is (why_not == "")


def test_a_sender_in_a_subdomain_of_an_owned_domain_is_told(policy: Policy) -> None:
    held = Held(1, "jan@team.Samen-Veilig.nl", Rule.LOOKALIKE, "why", ("x.example",), NOW)
    assert addressee(held, policy).address == "jan@team.samen-veilig.nl"
    assert addressee(held, policy).domain == "team.samen-veilig.nl"


def test_nobody_is_told_without_a_notices_section(example_policy: Policy) -> None:
    found = addressee(LOOKALIKE, example_policy)
    assert (found.address, found.why_not) == ("", "the policy has no notices")


# What a notice says.

def test_the_sender_notice_names_domains_rule_reason_next_steps_and_link(
        policy: Policy) -> None:
    assert policy.notices is not None
    notice = sender_notice(LOOKALIKE, "medewerker@samen-veilig.nl", policy.notices,
                           policy.organisation, policy.quarantine, NOW)
    message = parsed(notice.data)
    body = message.get_content()
    language = policy.notices.language
    assert (notice.sender, notice.recipient) == ("postwacht@samen-veilig.nl",
                                                 "medewerker@samen-veilig.nl")
    assert message["From"] == "postwacht@samen-veilig.nl"
    assert message["To"] == "medewerker@samen-veilig.nl"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@samen-veilig.nl>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert "samen-veiiig.nl, bücher.de" in message["Subject"]
    assert "samen-veiiig.nl, bücher.de" in body
    assert words(language)["rule.lookalike"] in body
    assert LOOKALIKE.reason in body
    assert "https://review.samen-veilig.nl/postwacht/held/17" in body
    assert "2026-03-02 05:30" in body  # held at, in the notice's time zone
    expected = {Language.NL: ("30 dagen", "aan u teruggestuurd", "tegengehouden"),
                Language.EN: ("30 days", "returned to you", "held for review")}[language]
    assert all(text in body + message["Subject"] for text in expected)


def test_a_notice_never_carries_the_held_messages_content(policy: Policy) -> None:
    """The composer is handed only what the record holds; whatever the reason says, a
    notice is the template's text and the record's fields."""
    assert policy.notices is not None
    held = Held(3, "a@samen-veilig.nl", Rule.LOOKALIKE, "line one\nSubject: injected",
                ("x.example",), NOW)
    notice = sender_notice(held, "a@samen-veilig.nl", policy.notices, policy.organisation,
                           policy.quarantine, NOW)
    message = parsed(notice.data)
    assert SUBJECT not in notice.data.decode()
    assert sorted(message.keys()) == sorted([
        "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted",
        "X-Auto-Response-Suppress", "Content-Type", "Content-Transfer-Encoding",
        "MIME-Version"])
    assert "line one\\nSubject: injected" in message.get_content()  # one line, shown
    assert not message.is_multipart()


def test_every_rule_and_word_exists_in_every_language() -> None:
    keys = {language: set(words(language)) for language in Language}
    assert keys[Language.NL] == keys[Language.EN]
    for language in Language:
        assert {f"rule.{rule.value}" for rule in Rule} <= keys[language]
        assert {f"standing.{s.value}" for s in Standing} <= keys[language]
        assert {f"period.{p.value}" for p in DigestPeriod if p is not DigestPeriod.OFF
                } <= keys[language]


def test_the_templates_are_in_their_language(policy: Policy) -> None:
    assert policy.notices is not None
    notice = sender_notice(LOOKALIKE, "m@samen-veilig.nl", policy.notices,
                           policy.organisation, policy.quarantine, NOW)
    subject = parsed(notice.data)["Subject"]
    dutch = policy.notices.language is Language.NL
    assert ("Uw bericht" in subject) is dutch
    assert ("Your message" in subject) is not dutch


@pytest.mark.parametrize(("seconds", "en", "nl"), [
    (30, "0 minutes", "0 minuten"), (60, "1 minute", "1 minuut"),
    (3 * 3600, "3 hours", "3 uur"), (3600 * 30, "30 hours", "30 uur"),
    (86400 * 3, "3 days", "3 dagen"), (-5, "0 minutes", "0 minuten"),
])
def test_ages_read_as_words(seconds: float, en: str, nl: str) -> None:
    assert age(Language.EN, seconds) == en
    assert age(Language.NL, seconds) == nl


def test_the_digest_lists_what_waits_oldest_first_with_rule_domains_age_and_link(
        policy: Policy) -> None:
    assert policy.notices is not None
    newer = Held(18, "b@samen-veilig.nl", Rule.INSECURE_TRANSPORT, "sensitive",
                 ("zorg.example",), NOW - dt.timedelta(minutes=10), Standing.AWAITING_APPROVAL)
    notice = digest([newer, LOOKALIKE], "po@samen-veilig.nl", policy.notices,
                    policy.organisation, DigestPeriod.HOURLY, NOW)
    body = parsed(notice.data).get_content()
    language = policy.notices.language
    assert body.index("#17") < body.index("#18")
    assert "https://review.samen-veilig.nl/postwacht/held/18" in body
    assert words(language)["rule.insecure-transport"] in body
    assert words(language)["standing.awaiting-approval"] in body
    assert age(language, 600) in body
    assert age(language, 5 * 3600) in body
    assert "zorg.example" in body
    assert "b@samen-veilig.nl" not in body  # who sent it is for the review, not the mail
    assert "2" in parsed(notice.data)["Subject"]


def test_a_long_digest_is_cut_and_says_how_many_more(policy: Policy) -> None:
    assert policy.notices is not None
    many = [Held(i, "a@samen-veilig.nl", Rule.LOOKALIKE, "r", ("x.example",), NOW)
            for i in range(1, MAX_DIGEST_ENTRIES + 8)]
    body = parsed(digest(many, "po@samen-veilig.nl", policy.notices, policy.organisation,
                         DigestPeriod.DAILY, NOW).data).get_content()
    assert body.count("/held/") == MAX_DIGEST_ENTRIES
    assert ("en nog 7" if policy.notices.language is Language.NL else "and 7 more") in body


# When a digest is due.

def test_each_period_has_one_name_wherever_it_is_asked() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    at = dt.datetime(2026, 3, 2, 9, 15, 40, tzinfo=cet)
    assert period_name(DigestPeriod.IMMEDIATELY, at) == "digest:minute:2026-03-02T08:15"
    assert period_name(DigestPeriod.HOURLY, at) == "digest:hour:2026-03-02T08"
    assert period_name(DigestPeriod.HOURLY, at.astimezone(dt.UTC)) == (
        "digest:hour:2026-03-02T08")
    assert period_name(DigestPeriod.DAILY, at) == "digest:day:2026-03-02"
    assert period_name(DigestPeriod.DAILY, at.replace(hour=7, minute=59)) == (
        "digest:day:2026-03-01")
    assert period_name(DigestPeriod.DAILY, at.replace(hour=8, minute=0)) == (
        "digest:day:2026-03-02")
    assert period_name(DigestPeriod.OFF, at) is None


def test_the_examples_commented_notices_section_loads_once_turned_on(
        write_policy: Callable[[str], Path]) -> None:
    text = EXAMPLE_POLICY.read_text()
    start = text.index("# notices:")
    section = text[start:text.index("\n\n", start)]
    live = "\n".join(line.removeprefix("#").removeprefix(" ") for line in section.splitlines())
    policy = load(write_policy(text + "\n" + live + "\n"))
    assert policy.notices is not None
    assert policy.notices.language is Language.NL
    assert policy.notices.link(1) == "https://review.samen-veilig.nl/held/1"
