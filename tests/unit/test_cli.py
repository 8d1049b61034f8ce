"""The `postwacht` command as a postmaster runs it: output and exit codes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_POLICY

POSTWACHT = str(Path(sys.executable).with_name("postwacht"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTWACHT, *args], capture_output=True, text=True, timeout=60, check=False
    )


def explain(*to: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    targets = [a for t in to for a in ("--to", t)]
    return run(
        "explain", "--policy", str(EXAMPLE_POLICY), "--from", "jan@samen-veilig.nl",
        *targets, *extra,
    )


def test_check_accepts_the_example_with_a_summary() -> None:
    result = run("check", str(EXAMPLE_POLICY))
    assert result.returncode == 0
    assert "2 owned, 1 retired, 2 partner domains" in result.stdout


def test_check_lists_every_problem_and_exits_1(write_policy: Callable[[str], Path]) -> None:
    path = write_policy("version: 1\norganisaton: X\nowned_domains: [a..nl]\n")
    result = run("check", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    unknown = "organisaton: unknown key 'organisaton' (did you mean 'organisation'?)"
    assert f"{path}:2: {unknown}" in lines
    assert any(line.startswith(f"{path}:3: owned_domains[0]: 'a..nl'") for line in lines)
    assert lines[-1] == f"{path}: invalid policy (3 problems)"


def test_usage_error_exits_2() -> None:
    assert run("check").returncode == 2
    assert run("frobnicate").returncode == 2


def test_explain_json_has_the_documented_shape() -> None:
    result = explain("dossier@bjzutrecht.nl", "x@example.org", extra=("--json",))
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert out["action"] == "accept"
    [retired, other] = out["recipients"]
    assert retired == {
        "address": "dossier@bjzutrecht.nl",
        "domains": ["bjzutrecht.nl"],
        "action": "reject",
        "rule": "retired",
        "matched": "bjzutrecht.nl",
        "reason": retired["reason"],
        "hop": None,
        "mode": "enforce",
        "monitored": [],
    }
    assert out["route"] is None
    assert "dossier@samen-veilig.nl" in retired["reason"]
    assert (other["action"], other["rule"]) == ("accept", "default")


@pytest.mark.parametrize(
    ("recipient", "action"),
    [
        ("dossier@bjzutrecht.nl", "reject"),
        ("DOSSIER@BJZUTRECHT.NL.", "reject"),
        ("x@mail.bjzutrecht.nl", "reject"),
        ('"a@b"@bjzutrecht.nl', "reject"),
        ("user%bjzutrecht.nl@relay.example", "reject"),
        ("x@samen-veiIig.nl", "quarantine"),
        ("x@bjz-utrecht.nl", "quarantine"),
        ("x@samen-veilig.nl", "accept"),
        ("x@example.org", "accept"),
    ],
)
def test_explain_decides_the_cases_of_the_2019_incident(recipient: str, action: str) -> None:
    result = explain(recipient, extra=("--json",))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["recipients"][0]["action"] == action


def test_explain_text_output_names_rule_and_reason() -> None:
    result = explain("dossier@bjzutrecht.nl")
    assert result.returncode == 0
    assert "message: reject" in result.stdout
    assert "rule:    retired (bjzutrecht.nl)" in result.stdout
    assert "assumed internal" in result.stdout


def test_explain_for_an_outside_client_accepts_untouched() -> None:
    result = explain("dossier@bjzutrecht.nl", extra=("--client-ip", "203.0.113.7", "--json"))
    out = json.loads(result.stdout)
    assert (out["action"], out["internal"]) == ("accept", False)


def test_explain_with_an_unparseable_address_exits_2_with_the_reason() -> None:
    result = explain("x@exa mple.nl")
    assert result.returncode == 2
    assert "--to 'x@exa mple.nl'" in result.stderr
    assert "not a valid domain name" in result.stderr


def test_explain_with_an_invalid_policy_exits_1(write_policy: Callable[[str], Path]) -> None:
    path = write_policy("version: 3\n")
    result = run("explain", "--policy", str(path), "--from", "a@b.nl", "--to", "c@d.nl")
    assert result.returncode == 1
    assert "version: 3 is not supported" in result.stderr


def test_explain_with_a_bad_client_ip_exits_2() -> None:
    assert explain("x@example.org", extra=("--client-ip", "10.0.0.300")).returncode == 2


def test_building_the_command_line_asks_nobody_who_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A service account without a passwd entry or LOGNAME: getpass fails. Only a review
    # action needs an actor, so every other command must still run.
    import getpass

    from postwacht.cli import main

    def nobody() -> str:
        raise OSError("no login name")

    monkeypatch.setattr(getpass, "getuser", nobody)
    assert main(["check", str(EXAMPLE_POLICY)]) == 0


def test_every_exit_code_has_one_meaning() -> None:
    from postwacht.cli.common import ExitCode

    assert {c.name: c.value for c in ExitCode} == {
        "OK": 0, "FAILED": 1, "USAGE": 2, "ATTENTION": 3, "PENDING": 4}


@pytest.mark.parametrize("order", [
    ["quarantine", "list", "--state", "{dir}"],
    ["quarantine", "--state", "{dir}", "list"],
    ["quarantine", "--state", "/nowhere", "show", "ABC123", "--state", "{dir}"],
])
def test_the_state_option_may_come_before_or_after_the_review_action(
        tmp_path: Path, order: list[str]) -> None:
    result = run(*[word.format(dir=tmp_path) for word in order])
    assert result.returncode == 1
    assert f"no records store at {tmp_path}/" in result.stderr


def test_check_says_what_a_relayhost_means_for_the_policy(
        write_policy: Callable[[str], Path]) -> None:
    relay = '\ndelivery: {relay: "[smtp.provider.example]:587", trusted_to_enforce: true}\n'
    path = write_policy(EXAMPLE_POLICY.read_text() + relay)
    named = run("check", str(path), "--relayhost", "[SMTP.provider.example]:587")
    assert named.returncode == 0
    assert ("outside mail leaves through the relay [smtp.provider.example]:587, which the "
            "policy trusts to enforce verified TLS onward") in named.stdout
    other = run("check", str(path), "--relayhost", "[smtp.other.example]:587")
    assert other.returncode == 0
    assert ("warning: Postfix's relayhost is [smtp.other.example]:587, but the policy's "
            "delivery.relay is [smtp.provider.example]:587") in other.stdout
    bad = run("check", str(path), "--relayhost", "[smtp.other.example")
    assert bad.returncode == 2
    assert "--relayhost: '[smtp.other.example' is not a next hop" in bad.stderr


def test_the_readmes_first_try_prints_what_the_readme_shows() -> None:
    readme = (EXAMPLE_POLICY.parent.parent / "README.md").read_text()
    [commands] = re.findall(r"^```sh try-it\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    [shown] = re.findall(r"^```text try-it-output\n(.*?)^```", readme,
                         re.MULTILINE | re.DOTALL)
    *_, explain_line = commands.replace("\\\n", " ").strip().splitlines()
    args = shlex.split(explain_line)
    assert args[0] == ".venv/bin/postwacht"
    result = subprocess.run([POSTWACHT, *args[1:]], capture_output=True, text=True,
                            timeout=60, check=False, cwd=EXAMPLE_POLICY.parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown
