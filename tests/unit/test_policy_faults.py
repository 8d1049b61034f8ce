"""A policy file is input like any other: no file may crash, stall or swell the reader."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from postwacht.config.compiler import load
from postwacht.config.holder import PolicyHolder, PolicyWatcher
from postwacht.config.policyfile import PolicyError
from postwacht.core.classify import Classifier
from postwacht.telemetry import NO_TELEMETRY

WritePolicy = Callable[[str], Path]
POSTWACHT = str(Path(sys.executable).with_name("postwacht"))
HEAD = "version: 1\norganisation: O\nowned_domains: [a.nl]\n"


def problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load(path)
    return [str(p) for p in caught.value.problems]


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POSTWACHT, "check", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("nesting", ["x: " + "[" * 30_000, "x:\n" + "- " * 30_000 + "x\n",
                                     "x: " + "{b: " * 20_000])
def test_deep_nesting_is_refused_not_fatal(tmp_path: Path, nesting: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(HEAD + nesting)
    result = check(path)  # a crash here would be exit -11 (SIGSEGV), not 1
    assert result.returncode == 1, result.stderr
    assert "nests deeper than 64 levels" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_merge_key_bomb_is_refused(write_policy: WritePolicy) -> None:
    # Each level merges the one below twice: 30 levels are 2**30 values unexpanded.
    lines = [HEAD.rstrip(), "a0: &a0 {k: v}"]
    lines += [f"a{i}: &a{i} {{<<: [*a{i - 1}], x{i}: 1, y: *a{i - 1}, z: *a{i - 1}}}"
              for i in range(1, 30)]
    path = write_policy("\n".join(lines) + "\n")
    assert len(path.read_bytes()) < 1500
    [problem] = problems(path)
    assert "YAML aliases and merge keys repeat more than 100,000 values" in problem


def test_merge_keys_from_several_anchors_raise_no_other_problem(write_policy: WritePolicy) -> None:
    path = write_policy("""
        version: 1
        organisation: O
        owned_domains: [new.nl]
        x-defaults: &retired {action: quarantine, successor: new.nl}
        x-strict: &strict {action: reject, since: 2019-03-01}
        retired_domains:
          - {domain: old.nl, <<: [*strict, *retired]}
          - {domain: older.nl, <<: *retired, action: reject}
    """)
    with pytest.raises(PolicyError) as caught:  # x-* keys are unknown to the schema
        load(path)
    assert all("x-" in str(p) for p in caught.value.problems)


def test_merged_values_reach_the_policy(write_policy: WritePolicy) -> None:
    path = write_policy("""
        version: 1
        organisation: O
        owned_domains: [new.nl]
        retired_domains:
          - &old {domain: old.nl, action: quarantine, successor: new.nl}
          - {<<: *old, domain: older.nl}
    """)
    policy = load(path)
    older = policy.rule_for("older.nl")
    assert older is not None
    assert getattr(older, "domain", None) == "older.nl"
    assert getattr(older, "successor", None) == "new.nl"


def test_a_named_pipe_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    outcome: list[list[str]] = []
    reader = threading.Thread(target=lambda: outcome.append(problems(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=30)  # opening a pipe for reading would wait for a writer for ever
    assert not reader.is_alive(), "reading a named pipe blocked"
    assert outcome == [[f"{fifo}: not a regular file (it is a named pipe); "
                        "expected a policy file"]]


def test_a_link_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "policy.yaml"
    link.symlink_to("/dev/zero")
    assert problems(link) == [
        f"{link}: not a regular file (it is a character device); expected a policy file"]


def test_a_link_to_a_regular_file_is_followed(tmp_path: Path, write_policy: WritePolicy
                                              ) -> None:
    target = write_policy(HEAD, name="v2.yaml")
    link = tmp_path / "policy.yaml"
    link.symlink_to(target)
    assert load(link).organisation == "O"


def test_a_file_over_the_size_cap_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("postwacht.config.policyfile.MAX_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + "#" * 2000 + "\n")
    [problem] = problems(path)
    assert problem.endswith("bytes (expected at most 1,000)")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_a_number_that_is_not_finite_is_refused(write_policy: WritePolicy, value: str) -> None:
    path = write_policy(HEAD + f"dns:\n  timeout: {value}\n")
    assert problems(path) == [f"{path}:5: dns.timeout: '{value}' is not a finite number"]


def test_a_nul_byte_is_named_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(HEAD.encode() + b"x: \"a\x00b\"\n")
    result = check(path)
    assert result.returncode == 1
    assert f"{path}:4: character U+0000 is not allowed in YAML" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("reply", ["{domain:>99999999}", "{domain!r}", "{domain:{since}}"])
def test_reply_placeholders_take_no_format(write_policy: WritePolicy, reply: str) -> None:
    path = write_policy(HEAD.replace("[a.nl]", "[new.nl]")
                        + f"retired_domains: [{{domain: old.nl, reply: '{reply}'}}]\n")
    [problem] = problems(path)
    assert "placeholder {domain} takes no format or conversion (write {domain})" in problem


def policy_with_marker(write_policy: WritePolicy, pattern: str) -> Path:
    return write_policy(HEAD + f"""\
sensitive:
  markers:
    - {{subject: '{pattern}', means: not-sensitive}}
secure_transport:
  otherwise: quarantine
""")


def test_a_backtracking_marker_matches_in_linear_time(write_policy: WritePolicy) -> None:
    policy = load(policy_with_marker(write_policy, "^(a+)+$"))
    assert policy.secure_transport is not None
    results: list[bool] = []

    def classify(subject: str) -> None:
        classifier = Classifier(policy.sensitivity, "x@a.nl", sees_body=False)
        classifier.header("Subject", subject)
        results.append(classifier.result().sensitive)

    # Python's backtracking engine needs about 2**40 steps for the first subject.
    worker = threading.Thread(target=lambda: [classify("a" * 40 + "!"),
                                              classify("a" * 100_000 + "!"),
                                              classify("a" * 40)], daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "a crafted Subject froze the classifier"
    assert results == [True, True, False]


@pytest.mark.parametrize(("pattern", "why"), [
    ("(a)\\1", "invalid escape sequence"),
    ("(?=x)y", "invalid perl operator"),
    ("[", "missing ]"),
])
def test_patterns_outside_the_linear_time_engine_are_refused(
    write_policy: WritePolicy, pattern: str, why: str
) -> None:
    [problem] = problems(policy_with_marker(write_policy, pattern))
    assert "is not a regular expression this filter can use" in problem
    assert why in problem
    assert "RE2 syntax" in problem


def test_a_flat_flood_of_values_is_refused_before_it_is_built(
    write_policy: WritePolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("postwacht.config.policyfile.MAX_NODES", 1000)
    path = write_policy(HEAD + "x: [" + ", ".join(["0"] * 2000) + "]\n")
    [problem] = problems(path)
    assert "the policy has more than 1,000 YAML values" in problem


def test_escape_codes_in_a_key_never_reach_the_terminal(write_policy: WritePolicy) -> None:
    path = write_policy(HEAD + '"a\\e[31mRED\\nfake.yaml:1: ok": 1\n')
    [problem] = problems(path)
    assert "\x1b" not in problem
    assert "\n" not in problem


def test_a_header_that_is_not_utf8_still_meets_the_markers(write_policy: WritePolicy) -> None:
    policy = load(policy_with_marker(write_policy, "(?i)^caf"))
    classifier = Classifier(policy.sensitivity, "x@a.nl", sees_body=False)
    # pymilter hands undecodable bytes over as lone surrogates
    classifier.header("Subject", b"Caf\xe9 verslag".decode("utf-8", "surrogateescape"))
    assert classifier.result().sensitive is False  # the not-sensitive marker matched


def test_a_change_the_watcher_could_not_load_is_loaded_on_its_next_look(
    write_policy: WritePolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("postwacht.config.holder.READ_TIMEOUT", 0.01)
    path = write_policy(HEAD)
    holder = PolicyHolder(path, load(path), NO_TELEMETRY)
    watcher = PolicyWatcher(holder, interval=60)
    write_policy(HEAD.replace("organisation: O", "organisation: Later"))
    with holder._lock:  # another reload, stuck on the file
        watcher._look()  # sees the change
        watcher._look()  # the change held still: tries to load, gives up waiting
    assert holder.current.organisation == "O"
    watcher._look()
    assert holder.current.organisation == "Later"


def test_without_libyaml_the_same_problems_are_named(
    tmp_path: Path, write_policy: WritePolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    faulty = write_policy(HEAD + "owned_domains: [b.nl]\ndns: {timeout: .nan}\n")
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(HEAD.encode() + b"x: \"a\x00b\"\n")
    with_libyaml = [problems(faulty), problems(nul)]
    monkeypatch.setattr("postwacht.config.policyfile._LOADER", yaml.SafeLoader)
    assert [problems(faulty), problems(nul)] == with_libyaml
    assert load(write_policy(HEAD, name="valid.yaml")).organisation == "O"
