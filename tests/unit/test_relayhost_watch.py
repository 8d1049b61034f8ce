"""The daemon's view of Postfix's relayhost: read when main.cf changes, kept when a read
fails, tried again after a while. (The real postconf is read in test_relay_flow.)"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.core.policy import Policy
from postwacht.core.relay import UNREADABLE, relaying
from postwacht.facts.relayhost import RelayhostUnknownError, RelayhostWatch
from postwacht.telemetry import NoTelemetry

RELAY = "[smtp.provider.example]:587"


class Postconf:
    """What postconf answers, one value or failure at a time."""

    def __init__(self) -> None:
        self.answer: str | None = ""
        self.asked = 0

    def __call__(self) -> str:
        self.asked += 1
        if self.answer is None:
            raise RelayhostUnknownError("postconf relayhost failed: timed out")
        return self.answer


@pytest.fixture
def policy(write_policy: Callable[[str], Path]) -> Policy:
    return load(write_policy("""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        secure_transport: {otherwise: quarantine}
    """))


class Gauge(NoTelemetry):
    def __init__(self) -> None:
        self.unverified: list[bool] = []

    def relay_unverified(self, unverified: bool) -> None:
        self.unverified.append(unverified)


def watch(tmp_path: Path, policy: Policy, postconf: Postconf, now: list[float],
          gauge: Gauge | None = None) -> tuple[RelayhostWatch, Path]:
    main_cf = tmp_path / "main.cf"
    main_cf.write_text("relayhost =\n")
    return RelayhostWatch(postconf, main_cf, lambda: policy, gauge or Gauge(), retry=60.0,
                          clock=lambda: now[0]), main_cf


def test_the_relayhost_is_read_again_only_when_main_cf_changes(
        tmp_path: Path, policy: Policy, caplog: pytest.LogCaptureFixture) -> None:
    postconf, now, gauge = Postconf(), [0.0], Gauge()
    relayhost, main_cf = watch(tmp_path, policy, postconf, now, gauge)
    relayhost.refresh()
    assert (relayhost.current, postconf.asked) == ((), 1)
    relayhost.refresh()
    assert postconf.asked == 1
    postconf.answer = RELAY
    main_cf.write_text(f"relayhost = {RELAY}\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, "postwacht.relay"):
        relayhost.refresh()
    assert relayhost.current == (RELAY,)
    [said] = caplog.records
    assert said.levelname == "WARNING"
    assert gauge.unverified == [False, True]  # for PostwachtRelayNotVerified
    assert f"outside mail leaves through the relay {RELAY}: Postfix hands" in (
        said.getMessage())
    relayhost.refresh(force=True)
    assert postconf.asked == 3


def test_a_failed_read_keeps_the_relay_and_is_tried_again_later(
        tmp_path: Path, policy: Policy, caplog: pytest.LogCaptureFixture) -> None:
    postconf, now = Postconf(), [0.0]
    relayhost, main_cf = watch(tmp_path, policy, postconf, now)
    postconf.answer = RELAY
    relayhost.refresh()
    postconf.answer = None
    main_cf.write_text("# being written\n")
    with caplog.at_level(logging.WARNING, "postwacht.relay"):
        relayhost.refresh()
    assert relayhost.current == (RELAY,)  # never "straight to the domain" by a failure
    assert "keeping the value read before" in caplog.text
    asked = postconf.asked
    now[0] = 59.0
    relayhost.refresh()
    assert postconf.asked == asked
    postconf.answer = ""
    now[0] = 61.0
    relayhost.refresh()
    assert postconf.asked == asked + 1
    assert relayhost.current == ()


def test_without_a_main_cf_the_policy_says_and_with_an_unreadable_one_nothing_is_verified(
        tmp_path: Path, policy: Policy) -> None:
    postconf, now, gauge = Postconf(), [0.0], Gauge()
    postconf.answer = None
    relayhost, _ = watch(tmp_path, policy, postconf, now, gauge)
    relayhost.refresh()  # main.cf is there, postconf fails: no relay can be trusted
    assert relayhost.current == UNREADABLE
    assert relaying(policy, relayhost.current).problem is not None
    assert gauge.unverified == [True]
    # No Postfix configuration at all (the filter runs elsewhere): the policy's delivery
    # section stands, here none, so mail goes straight to the domains.
    elsewhere = RelayhostWatch(postconf, tmp_path / "missing" / "main.cf", lambda: policy)
    elsewhere.refresh()
    assert elsewhere.current is None
    assert relaying(policy, elsewhere.current).problem is None


def test_a_relayhost_it_cannot_parse_still_names_a_relay(
        tmp_path: Path, policy: Policy) -> None:
    postconf, now = Postconf(), [0.0]
    postconf.answer = "[smtp.provider.example"
    relayhost, _ = watch(tmp_path, policy, postconf, now)
    relayhost.refresh()
    assert relayhost.current == ("[smtp.provider.example",)
