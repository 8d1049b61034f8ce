"""MTA-STS records and policies (RFC 8461), as parsed before any decision uses them."""

from __future__ import annotations

import pytest
from postwacht.core.facts import StsPolicy
from postwacht.facts.mtasts import StsError, parse_policy, txt_id


def test_the_one_sts_record_gives_the_policy_id() -> None:
    assert txt_id(("v=STSv1; id=20261122T1;",)) == "20261122T1"
    assert txt_id(("v=spf1 -all", "v=STSv1; id=abc")) == "abc"


@pytest.mark.parametrize(
    "records",
    [(), ("v=spf1 -all",), ("v=STSv1; id=a", "v=STSv1; id=b"), ("v=STSv1;",)],
)
def test_no_or_several_sts_records_mean_no_policy(records: tuple[str, ...]) -> None:
    assert txt_id(records) is None


def test_a_policy_is_parsed() -> None:
    policy = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                          "mx: *.example.net\r\nmax_age: 604800\r\n", "id1")
    assert policy == StsPolicy("enforce", ("mail.example.com", "*.example.net"), 604800, "id1")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", "no 'version: STSv1'"),
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode 'strict'"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "lists no mx"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: soon\n", "not a number"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n", "out of range"),
        ("<html>not a policy</html>", "is not 'key: value'"),
    ],
)
def test_a_broken_policy_is_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(StsError, match=says):
        parse_policy(text, "x")


def test_mx_patterns_match_one_label_for_a_wildcard() -> None:
    policy = StsPolicy("enforce", ("mail.example.com", "*.example.net"), 1, "x")
    assert policy.matches("MAIL.example.com.")
    assert policy.matches("mx1.example.net")
    assert not policy.matches("example.net")
    assert not policy.matches("a.b.example.net")
    assert not policy.matches("mail.example.org")
