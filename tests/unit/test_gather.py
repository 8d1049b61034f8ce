"""Facts for one message: gathered side by side, by one deadline, only when needed."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.core.address import parse_recipient
from postwacht.core.classify import Classification
from postwacht.core.decide import Envelope
from postwacht.core.vocabulary import Method
from postwacht.facts.discovery import DiscoveryPool
from postwacht.facts.gather import FactGatherer
from postwacht.telemetry import NO_TELEMETRY

SENSITIVE = Classification(True, "detector bsn")


@pytest.fixture
def silent_resolver() -> Iterator[int]:
    """A DNS server on loopback that reads every query and answers none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def policy_with(write_policy: Callable[[str], Path], port: int) -> Path:
    return write_policy(f"""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        secure_transport: {{}}
        dns: {{resolvers: ["127.0.0.1:{port}"], timeout: 3}}
    """)


def envelope(*to: str) -> Envelope:
    return Envelope("a@samen-veilig.nl", tuple(parse_recipient(t) for t in to), internal=True)


def test_domains_that_do_not_answer_fail_together_at_the_deadline(
    write_policy: Callable[[str], Path], silent_resolver: int,
) -> None:
    policy = load(policy_with(write_policy, silent_resolver))
    gatherer = FactGatherer(DiscoveryPool(NO_TELEMETRY), deadline=0.5, workers=2)
    try:
        started = time.monotonic()
        facts = gatherer.for_message(
            envelope("a@one.example", "b@two.example", "c@three.example", "d@four.example"),
            policy, SENSITIVE)
        took = time.monotonic() - started
    finally:
        gatherer.close()
    # Four domains, two threads, a resolver timeout of 3 s each: one deadline for them all.
    assert took < 2
    assert sorted(facts.transport) == ["four.example", "one.example", "three.example",
                                       "two.example"]
    assert {f.method for f in facts.transport.values()} == {Method.FAILURE}
    assert all("deadline of 0.5 s" in f.detail for f in facts.transport.values())


def test_mail_that_is_not_sensitive_needs_no_lookup(
    write_policy: Callable[[str], Path], silent_resolver: int,
) -> None:
    policy = load(policy_with(write_policy, silent_resolver))
    gatherer = FactGatherer(DiscoveryPool(NO_TELEMETRY), deadline=5)
    try:
        facts = gatherer.for_message(envelope("a@one.example"), policy,
                                     Classification(False, "marker subject [open]"))
    finally:
        gatherer.close()
    assert facts.transport == {}


def test_a_reload_with_other_dns_settings_keeps_both_caches(
    write_policy: Callable[[str], Path],
) -> None:
    pool = DiscoveryPool(NO_TELEMETRY)
    first = load(policy_with(write_policy, 5301)).dns
    second = load(policy_with(write_policy, 5302)).dns
    kept = pool.for_settings(first)
    assert pool.for_settings(first) is kept
    other = pool.for_settings(second)
    assert other is not kept
    # Messages still under the old policy keep their cache (and its MTA-STS policies).
    assert pool.for_settings(first) is kept
    assert pool.for_settings(second) is other


def test_a_domain_that_hangs_does_not_starve_other_messages(
    write_policy: Callable[[str], Path], silent_resolver: int,
) -> None:
    policy = load(policy_with(write_policy, silent_resolver))
    gatherer = FactGatherer(DiscoveryPool(NO_TELEMETRY), deadline=0.3, workers=2)
    try:
        # Message after message to the same hanging domain: one lookup, shared.
        for _ in range(5):
            gatherer.for_message(envelope("a@hangs.example"), policy, SENSITIVE)
        # So a thread is still free for another domain's lookup to start at once.
        assert len(gatherer._running) == 1
    finally:
        gatherer.close()


def test_nta7516_records_are_looked_up_only_when_accepted_and_fail_at_the_deadline(
    write_policy: Callable[[str], Path], silent_resolver: int,
) -> None:
    text = policy_with(write_policy, silent_resolver).read_text()
    plain = load(write_policy(text, "plain.yaml"))
    accepting = load(write_policy(text.replace(
        "secure_transport: {}", "secure_transport: {accept: [dane, nta7516]}"), "nta.yaml"))
    gatherer = FactGatherer(DiscoveryPool(NO_TELEMETRY), deadline=0.5, workers=2)
    try:
        assert gatherer.for_message(envelope("a@one.example"), plain, SENSITIVE).nta7516 == {}
        started = time.monotonic()
        facts = gatherer.for_message(envelope("a@one.example", "b@two.example"), accepting,
                                     SENSITIVE)
        took = time.monotonic() - started
    finally:
        gatherer.close()
    assert took < 2  # the records share the message's one deadline with the transport facts
    assert sorted(facts.nta7516) == ["one.example", "two.example"]
    for found in facts.nta7516.values():
        assert found.claim is None  # unknown, never "no record"
        assert "no answer within the message's deadline of 0.5 s" in found.failure
