"""Policy files: a valid one compiles; an invalid one names every problem and where it is."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import fastjsonschema
import jsonschema
import pytest
import yaml
from postwacht.config.compiler import load
from postwacht.config.policyfile import PolicyError, _fast_validator, schema
from postwacht.core.policy import OnExpiry, Policy, QuarantineSettings, RetiredDomain
from postwacht.core.vocabulary import Action

from tests.conftest import EXAMPLE_POLICY, ROOT

WritePolicy = Callable[[str], Path]


def problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load(path)
    return [str(p) for p in caught.value.problems]


def test_example_policy_models_the_organisation(example_policy: Policy) -> None:
    assert example_policy.owned == ("samen-veilig.nl", "veiligthuisutrecht.nl")
    retired = example_policy.rule_for("bjzutrecht.nl")
    assert isinstance(retired, RetiredDomain)
    assert retired.successor == "samen-veilig.nl"
    assert retired.action is Action.REJECT
    assert example_policy.partners


def test_shipped_schema_file_is_the_one_the_package_uses() -> None:
    shipped = json.loads((ROOT / "policies" / "schema.json").read_text(encoding="utf-8"))
    assert shipped == schema()
    jsonschema.Draft7Validator.check_schema(shipped)


def test_schema_defaults_are_the_compiled_defaults(write_policy: WritePolicy) -> None:
    policy = load(write_policy("version: 1\norganisation: O\nowned_domains: [o.nl]\n"))
    assert policy.address_literals is Action.REJECT
    assert policy.on_dns_failure is Action.TEMPFAIL
    assert policy.lookalikes.max_distance == 1
    assert policy.lookalikes.protect == {"owned", "retired", "partners"}
    assert policy.outbound.authenticated is True


def test_domains_are_compiled_to_one_normal_form(write_policy: WritePolicy) -> None:
    policy = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [Samen-Veilig.NL., bücher.de]
        retired_domains: [{domain: XN--JGD-KOA.NL}]
    """))
    assert policy.owned == ("samen-veilig.nl", "xn--bcher-kva.de")
    assert policy.retired[0].domain == "xn--jgd-koa.nl"


def test_every_problem_is_reported_with_file_line_and_key_path(write_policy: WritePolicy) -> None:
    path = write_policy("""
        version: 2
        organisaton: X
        owned_domains:
          - samen-veilig.nl
          - bjzutrecht.nl
          - exa mple.nl
        retired_domains:
          - domain: bjzutrecht.nl
            since: 2015-13-01
            successor: elders.nl
            action: rejct
            reply: "use {successor} {bogus}"
        partners:
          - domain: utrecht.nl
          - domain: Utrecht.NL
            transport: dane
        lookalikes: {max_distance: 5}
        outbound: {networks: [10.0.0.1/8, nonsense]}
        address_literals: allow
    """)
    found = problems(path)
    f = str(path)
    expected = [
        f"{f}:1: version: 2 is not supported (expected 1)",
        f"{f}:2: organisaton: unknown key 'organisaton' (did you mean 'organisation'?)",
        f"{f}:1: missing required key 'organisation'",
        f"{f}:6: owned_domains[2]: 'exa mple.nl' is not a valid domain name",
        f"{f}:8: retired_domains[0].domain: bjzutrecht.nl is both owned and retired "
        "(owned_domains[1], line 5)",
        f"{f}:9: retired_domains[0].since: '2015-13-01' is not a valid date (expected YYYY-MM-DD)",
        f"{f}:10: retired_domains[0].successor: successor elders.nl is not an owned domain",
        f"{f}:11: retired_domains[0].action: 'rejct' is not allowed "
        "(expected one of: reject, quarantine)",
        f"{f}:12: retired_domains[0].reply: unknown placeholder {{bogus}}",
        f"{f}:14: partners[0]: missing required key 'transport'",
        f"{f}:15: partners[1].domain: utrecht.nl is listed twice (also at partners[0].domain, "
        "line 14)",
        f"{f}:17: lookalikes.max_distance: 5 is too large (expected at most 2)",
        f"{f}:18: outbound.networks[0]: 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)",
        f"{f}:18: outbound.networks[1]: 'nonsense' does not appear to be an IPv4 or IPv6 network",
        f"{f}:19: address_literals: 'allow' is not allowed",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in found), f"missing: {line}\ngot:\n" + "\n".join(found)
    assert len(found) == len(expected)


def test_owned_domain_under_a_retired_one_is_refused(write_policy: WritePolicy) -> None:
    path = write_policy("""
        version: 1
        organisation: O
        owned_domains: [new.old.nl, o.nl]
        retired_domains: [{domain: old.nl}]
    """)
    assert problems(path) == [
        f"{path}:3: owned_domains[0]: owned domain new.old.nl lies under retired domain old.nl: "
        "whoever holds old.nl controls it (remove one of them)"
    ]


def test_unknown_key_far_from_any_known_one_lists_the_valid_keys(
    write_policy: WritePolicy,
) -> None:
    path = write_policy("version: 1\norganisation: O\nowned_domains: [o.nl]\nzzz: 1\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:4: zzz: unknown key 'zzz' (expected one of: ")
    assert "retired_domains" in problem


def test_duplicate_yaml_key_is_an_error_not_a_silent_override(write_policy: WritePolicy) -> None:
    path = write_policy(
        "version: 1\norganisation: O\nowned_domains: [a.nl]\nowned_domains: [b.nl]\n"
    )
    assert problems(path) == [
        f"{path}:4: owned_domains: duplicate key (first at line 3; YAML keeps only one)"
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("version: 1\nowned_domains: [a.nl\n", ":3: YAML syntax error: "),
        ("", ":1: the file is empty"),
        ("- a\n- b\n", ":1: expected a mapping of keys, got a list"),
        ("version: 1\norganisation: O\nowned_domains: a.nl\n",
         ":3: owned_domains: expected a list, got text"),
        ("version: 1\norganisation: O\nowned_domains: []\n",
         ":3: owned_domains: must list at least 1 item"),
    ],
)
def test_malformed_file_is_reported_with_its_line(
    write_policy: WritePolicy, text: str, says: str
) -> None:
    path = write_policy(text)
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(f"{path}{says}")


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    assert problems(missing) == [f"{missing}: cannot read the file: No such file or directory"]


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\norganisation: Caf\xe9\n")
    assert problems(path) == [f"{path}:2: not UTF-8 text"]


def test_example_policy_is_valid() -> None:
    assert load(EXAMPLE_POLICY).organisation == "Samen Veilig Midden-Nederland"


def test_yaml_aliases_that_refer_to_themselves_are_an_error(
    write_policy: WritePolicy,
) -> None:
    path = write_policy("version: 1\norganisation: O\nowned_domains: [a.nl]\nx: &a [*a]\n")
    assert problems(path) == [
        f"{path}:4: a YAML alias refers to the collection it stands in (it would never end)"]


def test_an_alias_bomb_is_stopped(write_policy: WritePolicy) -> None:
    lines = ["version: 1", "organisation: O", "owned_domains: [a.nl]", "a0: &a0 [x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 4)}]" for i in range(1, 9)]
    path = write_policy("\n".join(lines) + "\n")
    [problem] = problems(path)
    assert "repeat more than 100,000 values" in problem


def test_a_reply_that_cannot_be_filled_in_is_refused_at_load(write_policy: WritePolicy) -> None:
    path = write_policy("""
        version: 1
        organisation: O
        owned_domains: [new.nl]
        retired_domains: [{domain: old.nl, reply: "{domain:d} is gone"}]
    """)
    [problem] = problems(path)
    assert problem == (f"{path}:4: retired_domains[0].reply: placeholder {{domain}} takes no "
                       "format or conversion (write {domain})")


def test_held_mail_is_kept_30_days_and_then_returned_by_default(
    write_policy: WritePolicy,
) -> None:
    policy = load(write_policy("version: 1\norganisation: O\nowned_domains: [o.nl]\n"))
    assert policy.quarantine == QuarantineSettings(30.0, OnExpiry.RETURN)
    assert "held mail kept 30 days, then returned to the sender" in policy.summary()


def test_retention_may_be_a_fraction_of_a_day_and_expiry_may_delete(
    write_policy: WritePolicy,
) -> None:
    policy = load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [o.nl]
        quarantine: {retention_days: 0.0000347, on_expiry: delete}
    """))
    assert policy.quarantine.on_expiry is OnExpiry.DELETE
    assert policy.quarantine.retention_seconds == pytest.approx(3.0, abs=0.01)
    assert "held mail kept 3 seconds, then deleted" in policy.summary()


def test_a_retention_of_zero_or_an_unknown_expiry_is_named(write_policy: WritePolicy) -> None:
    found = problems(write_policy("""
        version: 1
        organisation: O
        owned_domains: [o.nl]
        quarantine:
          retention_days: 0
          on_expiry: keep
    """))
    assert any(p.endswith(":5: quarantine.retention_days: 0 is less than or equal to the "
                          "minimum of 0") for p in found), found
    assert any(":6: quarantine.on_expiry: 'keep' is not allowed (expected one of: return, "
               "delete)" in p for p in found), found


FAULTY = [
    "owned_domains: [a.nl]\nowned_domains: [b.nl]\n",
    "owned_domains: [a.nl]\n? [x, y]\n: 1\nz: {q: 1, q: 2}\n",
    "owned_domains: [a.nl]\ndns: {timeout: .nan, resolvers: [1.2.3.4, 0x_]}\n",
    "owned_domains: [a.nl]\nretired_domains:\n  - {domain: old.nl, since: 2019-13-01}\n"
    "  - domain: old.nl\n    action: rejct\n    action: reject\n",
    "owned_domains:\n  - domain: a.nl\n    mx: [mx.a.nl, 7, '']\n  - =\npartners: [{}]\n",
    "owned_domains: [a.nl, {domain: b.nl, nameservers: [[ns]]}]\nlookalikes: {protect: <<}\n",
]


@pytest.mark.parametrize("body", FAULTY)
def test_a_policy_with_yaml_anchors_is_read_like_one_without(
    write_policy: WritePolicy, body: str
) -> None:
    # An anchor sends the file through PyYAML's composer; the one-pass reader must agree.
    plain = problems(write_policy("version: 1\norganisation: O\n" + body, name="plain.yaml"))
    anchored = problems(write_policy("version: 1\norganisation: &o O\n" + body,
                                     name="anchored.yaml"))
    assert plain == [p.replace("anchored.yaml", "plain.yaml") for p in anchored]
    assert plain


def test_a_problem_deep_in_a_large_policy_names_its_line(write_policy: WritePolicy) -> None:
    partners = [f"  - {{domain: p{i}.nl, transport: dane}}" for i in range(5000)]
    partners[4321] = "  - {domain: p4321.nl, transport: dame}"
    partners[4500] = "  - {domain: p4500.nl, transport: dane, transport: dane}"
    path = write_policy("version: 1\norganisation: O\nowned_domains: [o.nl]\npartners:\n"
                        + "\n".join(partners) + "\n")
    assert problems(path) == [
        f"{path}:4326: partners[4321].transport: 'dame' is not allowed (expected one of: "
        "dane, mta-sts, verify, encrypt)",
        f"{path}:4505: partners[4500].transport: duplicate key (first at line 4505; YAML "
        "keeps only one)",
    ]


def test_the_quick_schema_check_agrees_with_the_full_one() -> None:
    full = jsonschema.Draft7Validator(schema(),
                                      format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    example = yaml.safe_load(EXAMPLE_POLICY.read_text(encoding="utf-8"))
    wrong = [None, 0, -1, 2.5, True, "", "x" * 300, [], {}, ["a"], {"zz": 1}, "reject",
             "monitor", "2020-13-01", "dane", [{"domain": "x"}], "relay:[x]:25", "a@b"]
    rng = random.Random(13)
    for _ in range(2000):
        document = json.loads(json.dumps(example, default=str))
        node = document
        while isinstance(node, dict | list) and node and rng.random() < 0.8:
            key = rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
            if not isinstance(node[key], dict | list) or rng.random() < 0.3:
                node[key] = rng.choice(wrong)
                break
            node = node[key]
        try:
            _fast_validator()(document)
            quick = True
        except fastjsonschema.JsonSchemaException:
            quick = False
        assert quick == full.is_valid(document)
