"""`postwacht doctor`'s judgement: what Postfix's configuration must say for the filter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.core.policy import Policy
from postwacht.core.postfixconf import (
    Endpoints,
    Finding,
    Service,
    diagnose,
    parse_main,
    parse_master,
    split_list,
)

from tests.conftest import ROOT

EXAMPLE = ROOT / "policies" / "example.yaml"

ENDPOINTS = Endpoints("inet:127.0.0.1:8894", "inet:127.0.0.1:8895")
SUBMISSION = Service("submission", "inet", "smtpd",
                     {"milter_macro_daemon_name": "ORIGINATING",
                      "smtpd_reject_unlisted_recipient": "no"})


def deploy_main_cf() -> dict[str, str]:
    """deploy/postfix/main.cf's settings, as `postconf` would print them."""
    lines = [line for line in (ROOT / "deploy" / "postfix" / "main.cf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return parse_main("\n".join(lines))


def where(findings: list[Finding]) -> list[str]:
    return [f.where for f in findings if f.must]


def test_a_postfix_list_keeps_braced_items_whole() -> None:
    assert split_list("{ inet:127.0.0.1:8894, default_action=tempfail }, inet:x:1  unix:y") == [
        "{ inet:127.0.0.1:8894, default_action=tempfail }", "inet:x:1", "unix:y"]
    assert split_list("") == []


def test_postconf_output_is_read_with_empty_values_and_service_overrides() -> None:
    main = parse_main("relayhost =\nmyhostname = mta.example\nsmtpd_milters = { a, b=c }\n")
    assert main == {"relayhost": "", "myhostname": "mta.example", "smtpd_milters": "{ a, b=c }"}
    services = parse_master(
        "smtp       inet  n       -       y       -       -       smtpd\n"
        "submission inet  n       -       y       -       -       smtpd "
        "-o milter_macro_daemon_name=ORIGINATING\n"
        "pickup     unix  n       -       y       60      1       pickup\n",
        "submission/inet/milter_macro_daemon_name = ORIGINATING\n"
        "submission/inet/smtpd_milters = { inet:127.0.0.1:8894, default_action=tempfail }\n")
    assert [(s.key, s.command) for s in services] == [
        ("smtp/inet", "smtpd"), ("submission/inet", "smtpd"), ("pickup/unix", "pickup")]
    assert services[1].params["smtpd_milters"] == "{ inet:127.0.0.1:8894, default_action=tempfail }"


def test_debian_defaults_miss_every_line_the_example_policy_needs(example_policy: Policy) -> None:
    findings = diagnose({}, [Service("submission", "inet", "smtpd")], example_policy, ENDPOINTS)
    assert where(findings) == [
        "main.cf: smtpd_milters", "main.cf: non_smtpd_milters", "main.cf: transport_maps",
        "main.cf: smtp_tls_policy_maps", "main.cf: smtp_dns_support_level",
        "main.cf: smtp_header_checks", "master.cf: submission/inet",
        "main.cf: enable_long_queue_ids"]
    fixes = [f.postconf for f in findings]
    assert ("-e", "smtpd_milters = { inet:127.0.0.1:8894, default_action=tempfail }") in fixes
    assert ("-e", "transport_maps = socketmap:inet:127.0.0.1:8895:transport") in fixes
    assert ("-P", "submission/inet/milter_macro_daemon_name=ORIGINATING") in fixes


def test_the_deploy_kits_lines_leave_nothing_to_fix(example_policy: Policy) -> None:
    findings = diagnose(deploy_main_cf(), [SUBMISSION], example_policy, ENDPOINTS)
    assert where(findings) == []


def test_another_milter_stays_and_ours_gets_its_default_action(example_policy: Policy) -> None:
    main = deploy_main_cf() | {"smtpd_milters": "inet:127.0.0.1:9999, "
                                                "{ inet:localhost:8894, default_action=accept,"
                                                " command_timeout=5s }"}
    [finding] = [f for f in diagnose(main, [SUBMISSION], example_policy, ENDPOINTS) if f.must]
    assert "default_action=accept" in finding.problem
    assert finding.postconf == ("-e", "smtpd_milters = { inet:127.0.0.1:8894, "
                                      "default_action=tempfail, command_timeout=5s }, "
                                      "inet:127.0.0.1:9999")


@pytest.mark.parametrize("listed", [
    "{ inet:127.0.0.1:8894 default_action=tempfail }",  # blanks separate too
    "{ inet:localhost:8894, default_action=tempfail }",  # the same socket, spelt otherwise
    "inet:127.0.0.1:8894",  # milter_default_action (tempfail) covers it
])
def test_the_filter_listed_in_any_spelling_is_never_listed_twice(
        example_policy: Policy, listed: str) -> None:
    main = deploy_main_cf() | {"smtpd_milters": listed}
    assert where(diagnose(main, [SUBMISSION], example_policy, ENDPOINTS)) == []


def test_our_table_must_come_before_another_that_would_answer_first(
        example_policy: Policy) -> None:
    main = deploy_main_cf() | {
        "transport_maps": "hash:/etc/postfix/transport, socketmap:inet:127.0.0.1:8895:transport"}
    [finding] = [f for f in diagnose(main, [SUBMISSION], example_policy, ENDPOINTS) if f.must]
    assert finding.where == "main.cf: transport_maps"
    assert "comes after hash:/etc/postfix/transport" in finding.problem
    assert finding.postconf == ("-e", "transport_maps = socketmap:inet:127.0.0.1:8895:transport, "
                                      "hash:/etc/postfix/transport")


def test_fail_open_defaults_and_milters_turned_off_are_named(example_policy: Policy) -> None:
    main = deploy_main_cf() | {"milter_default_action": "accept",
                               "receive_override_options": "no_address_mappings, no_milters"}
    accepting = Service("127.0.0.1:2525", "inet", "smtpd", {
        "smtpd_milters": "inet:127.0.0.1:8894", "milter_default_action": "accept"})
    findings = diagnose(main, [SUBMISSION, accepting], example_policy, ENDPOINTS)
    assert [(f.where, f.must) for f in findings] == [
        ("main.cf: milter_default_action", False),  # how other milters fail: a person's call
        ("main.cf: receive_override_options", True),
        ("master.cf: 127.0.0.1:2525/inet", True)]
    assert findings[1].postconf == ("-e", "receive_override_options = no_address_mappings")
    assert findings[2].postconf == ()


def test_a_listener_without_milters_is_a_note_for_a_person(example_policy: Policy) -> None:
    """A content filter's re-injection port turns milters off on purpose: never mended."""
    reinjection = Service("127.0.0.1:10025", "inet", "smtpd",
                          {"smtpd_milters": "", "receive_override_options": "no_milters"})
    findings = diagnose(deploy_main_cf(), [SUBMISSION, reinjection], example_policy, ENDPOINTS)
    assert [(f.where, f.must, f.postconf) for f in findings] == [
        ("master.cf: 127.0.0.1:10025/inet", False, ())] * 2
    assert "-o smtpd_milters={inet:127.0.0.1:8894,default_action=tempfail}" in findings[0].fix


def test_a_relayhost_the_policy_does_not_name_must_be_decided_by_hand(
        example_policy: Policy) -> None:
    main = deploy_main_cf() | {"relayhost": "[smtp.provider.example]:587"}
    [finding] = [f for f in diagnose(main, [SUBMISSION], example_policy, ENDPOINTS) if f.must]
    assert finding.where == "main.cf: relayhost"
    assert "delivery section does not name" in finding.problem
    assert 'relay: "[smtp.provider.example]:587"' in finding.fix
    assert finding.postconf == ()


def test_a_relayhost_the_policy_names_needs_no_finding_but_a_different_one_does(
        write_policy: Callable[[str], Path]) -> None:
    policy = load(write_policy(EXAMPLE.read_text().replace(
        "secure_transport:", 'delivery: {relay: "[smtp.provider.example]:587", '
        "trusted_to_enforce: true}\nsecure_transport:", 1)))
    named = deploy_main_cf() | {"relayhost": "[SMTP.provider.example]:587"}
    assert not [f for f in diagnose(named, [SUBMISSION], policy, ENDPOINTS) if f.must]
    other = deploy_main_cf() | {"relayhost": "[smtp.other.example]:587"}
    [finding] = [f for f in diagnose(other, [SUBMISSION], policy, ENDPOINTS) if f.must]
    assert "but the policy's delivery.relay is [smtp.provider.example]:587" in finding.problem
    direct = deploy_main_cf() | {"relayhost": ""}
    [note] = [f for f in diagnose(direct, [SUBMISSION], policy, ENDPOINTS)
              if f.where == "policy: delivery"]
    assert not note.must
    assert "Postfix has no relayhost" in note.problem


def test_a_policy_without_retired_domains_or_secure_transport_needs_neither_table(
        write_policy: Callable[[str], Path]) -> None:
    policy = load(write_policy("""
        version: 1
        organisation: Test
        owned_domains: [example.nl]
        outbound: {networks: [127.0.0.0/8]}
    """))
    main = {"smtpd_milters": "{ inet:127.0.0.1:8894, default_action=tempfail }",
            "non_smtpd_milters": "{ inet:127.0.0.1:8894, default_action=tempfail }",
            "smtp_header_checks": "regexp:/etc/postfix/postwacht_smtp_header_checks",
            "enable_long_queue_ids": "yes", "relayhost": "[relay.example]"}
    assert where(diagnose(main, [Service("smtp", "inet", "smtpd")], policy, ENDPOINTS)) == []


def test_without_the_recipient_macros_refusals_by_smtpd_go_unreported(
        example_policy: Policy) -> None:
    main = deploy_main_cf() | {"milter_rcpt_macros": "i {rcpt_addr}"}
    [finding] = [f for f in diagnose(main, [SUBMISSION], example_policy, ENDPOINTS) if f.must]
    assert finding.where == "main.cf: milter_rcpt_macros"
    assert finding.postconf == ("-e", "milter_rcpt_macros = i {rcpt_addr} {rcpt_host} "
                                      "{rcpt_mailer}")
    port_25 = Service("smtp", "inet", "smtpd")
    assert diagnose(deploy_main_cf(), [port_25, SUBMISSION], example_policy, ENDPOINTS) == []


def test_a_service_named_on_the_command_line_counts_as_submission(
        example_policy: Policy) -> None:
    lab = Service("127.0.0.1:2525", "inet", "smtpd")
    assert where(diagnose(deploy_main_cf(), [lab], example_policy, ENDPOINTS)) == []
    named = diagnose(deploy_main_cf(), [lab], example_policy, ENDPOINTS,
                     frozenset({"127.0.0.1:2525/inet"}))
    assert where(named) == ["master.cf: 127.0.0.1:2525/inet"]


def test_every_macro_the_filter_reads_is_asked_of_postfix(example_policy: Policy) -> None:
    main = deploy_main_cf() | {"milter_end_of_data_macros": "",
                               "milter_connect_macros": "j {daemon_addr} v",
                               "milter_mail_macros": "i {auth_type}"}
    findings = [f for f in diagnose(main, [SUBMISSION], example_policy, ENDPOINTS) if f.must]
    assert [(f.where, f.postconf) for f in findings] == [
        ("main.cf: milter_end_of_data_macros", ("-e", "milter_end_of_data_macros = i")),
        ("main.cf: milter_connect_macros",
         ("-e", "milter_connect_macros = j {daemon_addr} v {daemon_name}")),
        ("main.cf: milter_mail_macros", ("-e", "milter_mail_macros = i {auth_type} {auth_authen}")),
    ]
    assert "every message it would hold is tempfailed" in findings[0].problem


def test_relays_the_filter_does_not_follow_must_be_decided(example_policy: Policy) -> None:
    main = deploy_main_cf() | {"default_transport": "smtp:[relay.example]:587",
                               "smtp_fallback_relay": "[fallback.example]",
                               "sender_dependent_relayhost_maps": "hash:/etc/postfix/sdr"}
    rewrite = Service("rewrite", "unix", "trivial-rewrite", {"relayhost": "[other.example]"})
    fallback = Service("smtp", "unix", "smtp", {"smtp_fallback_relay": "[other.example]"})
    ignored = Service("relay", "unix", "smtp", {"relayhost": "[other.example]"})
    found = {f.where: f for f in diagnose(main, [SUBMISSION, rewrite, fallback, ignored],
                                          example_policy, ENDPOINTS)}
    for place in ("main.cf: default_transport", "main.cf: smtp_fallback_relay",
                  "main.cf: sender_dependent_relayhost_maps", "master.cf: rewrite/unix",
                  "master.cf: smtp/unix"):
        assert found[place].must, place
    assert "master.cf: relay/unix" not in found  # smtp(8) reads no relayhost
    assert "sends outside mail to [relay.example]:587" in found[
        "main.cf: default_transport"].problem
    for harmless in ("smtp", "error:5.7.1 closed", "retry:4.3.0 later"):
        plain = deploy_main_cf() | {"default_transport": harmless}
        assert "main.cf: default_transport" not in where(diagnose(
            plain, [SUBMISSION], example_policy, ENDPOINTS)), harmless


def test_an_address_relay_is_told_to_be_named_not_trusted(example_policy: Policy) -> None:
    main = deploy_main_cf() | {"relayhost": "[192.0.2.1]:587"}
    [finding] = [f for f in diagnose(main, [SUBMISSION], example_policy, ENDPOINTS) if f.must]
    assert "never an address: name the relay by its host name" in finding.fix
    assert "tls: secure" not in finding.fix


def deploy_master_cf() -> list[Service]:
    """deploy/postfix/master.cf's services, as `postconf -M` and `-P` would print them."""
    services, params, name = [], [], ""
    for line in (ROOT / "deploy" / "postfix" / "master.cf").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace():
            option = line.split()[1]
            key, _, value = option.partition("=")
            params.append(f"{name}/{key} = {value}")
        else:
            services.append(line)
            name = "/".join(line.split()[:2])
    return parse_master("\n".join(services), "\n".join(params))


def nta_policy(write_policy: Callable[[str], Path], min_tls: str = "1.2") -> Policy:
    return load(write_policy(EXAMPLE.read_text().replace(
        "accept: [dane, mta-sts, partner]", "accept: [dane, mta-sts, partner, nta7516]", 1)
        .replace('min_tls: "1.2"', f'min_tls: "{min_tls}"', 1)))


def test_accepting_nta7516_needs_its_transport_and_the_kit_has_it(
        write_policy: Callable[[str], Path]) -> None:
    policy = nta_policy(write_policy)
    missing = [f for f in diagnose(deploy_main_cf(), [SUBMISSION], policy, ENDPOINTS) if f.must]
    assert [f.where for f in missing] == ["master.cf: nta7516/unix"]
    assert missing[0].postconf == ("-M", "nta7516/unix=nta7516 unix - - n - - smtp "
                                   "-o smtp_tls_security_level=secure "
                                   "-o smtp_tls_mandatory_protocols=>=TLSv1.2 "
                                   "-o smtp_tls_policy_maps=socketmap:inet:127.0.0.1:8895:nta7516"
                                   " -o smtp_dns_support_level=dnssec"
                                   " -o smtp_fallback_relay=")
    assert where(diagnose(deploy_main_cf(), deploy_master_cf(), policy, ENDPOINTS)) == []


def test_an_nta7516_transport_that_may_deliver_unverified_is_named(
        write_policy: Callable[[str], Path]) -> None:
    policy = nta_policy(write_policy, min_tls="1.3")
    weak = Service("nta7516", "unix", "smtp", {"smtp_tls_security_level": "may",
                                               "smtp_dns_support_level": "dnssec"})
    [finding] = [f for f in diagnose(deploy_main_cf(), [SUBMISSION, weak], policy, ENDPOINTS)
                 if f.must]
    assert finding.where == "master.cf: nta7516/unix"
    assert "smtp_tls_security_level=may" in finding.problem
    assert finding.postconf == (
        "-P", "nta7516/unix/smtp_tls_security_level=secure",
        "nta7516/unix/smtp_tls_mandatory_protocols=>=TLSv1.3",
        "nta7516/unix/smtp_tls_policy_maps=socketmap:inet:127.0.0.1:8895:nta7516",
        "nta7516/unix/smtp_fallback_relay=")


def test_without_nta7516_in_accept_no_transport_is_asked_for(example_policy: Policy) -> None:
    found = diagnose(deploy_main_cf(), [SUBMISSION], example_policy, ENDPOINTS)
    assert not [f for f in found if "nta7516" in f.where]


@pytest.mark.parametrize("enforced", [True, False])
def test_recipients_postfix_adds_after_the_filter_are_named_while_routes_go_elsewhere(
        write_policy: Callable[[str], Path], enforced: bool) -> None:
    policy = nta_policy(write_policy)
    if not enforced:
        policy = load(write_policy(Path(policy.source).read_text().replace(
            "secure_transport:\n", "secure_transport:\n  mode: monitor\n", 1), "m.yaml"))
    main = {**deploy_main_cf(), "always_bcc": "archief@samen-veilig.nl"}
    archive = Service("submission", "inet", "smtpd", {**SUBMISSION.params,
                                                      "recipient_bcc_maps": "hash:/etc/x"})
    found = [f for f in diagnose(main, [archive, *deploy_master_cf()[1:]], policy, ENDPOINTS)
             if "bcc" in f.problem]
    assert [(f.where, f.must) for f in found] == [
        ("main.cf: always_bcc", enforced), ("master.cf: submission/inet", enforced)]
    assert "takes those copies along" in found[0].problem
