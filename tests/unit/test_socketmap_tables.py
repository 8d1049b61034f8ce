"""The socketmap tables as functions of the running policy (no DNS needed for these)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from postwacht.adapters.socketmap import Lookup, tls_table, transport_table
from postwacht.config.compiler import load
from postwacht.config.holder import PolicyHolder
from postwacht.facts.discovery import DiscoveryPool
from postwacht.telemetry import NO_TELEMETRY

from tests.conftest import EXAMPLE_POLICY


def holder(path: Path) -> PolicyHolder:
    return PolicyHolder(path, load(path), NO_TELEMETRY)


def replies(table: Lookup) -> Callable[[str], str]:
    """The table as Postfix reads it: the reply text."""
    return lambda key: str(table(key))


def test_transport_answers_the_probe_and_unknown_keys_with_notfound() -> None:
    lookup = replies(transport_table(holder(EXAMPLE_POLICY)))
    assert lookup("*") == "NOTFOUND "
    assert lookup("") == "NOTFOUND "
    assert lookup("not an address@@").startswith("TEMP ")
    assert lookup("bjzutrecht.nl").startswith("OK error:5.7.1 ")
    assert lookup("a@samen-veiIig.nl") == "NOTFOUND "  # look-alikes are held, not bounced


def test_transport_bounces_a_retired_domain_whatever_its_milter_action(
    write_policy: Callable[[str], Path],
) -> None:
    path = write_policy("""
        version: 1
        organisation: O
        owned_domains: [new.nl]
        retired_domains: [{domain: old.nl, action: quarantine}]
    """)
    lookup = replies(transport_table(holder(path)))
    assert lookup("worker@old.nl").startswith("OK error:5.7.1 old.nl was given up")
    assert lookup("john doe@old.nl").startswith("OK error:5.7.1 ")  # internal form, unquoted
    assert lookup("a(b)@mail.old.nl").startswith("OK error:5.7.1 ")
    assert lookup("x@exa mple.nl").startswith("TEMP ")  # unreadable: defer, never pass


def test_transport_bounces_lookalikes_when_the_policy_rejects_them(
    write_policy: Callable[[str], Path],
) -> None:
    path = write_policy("""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        lookalikes: {action: reject}
    """)
    lookup = replies(transport_table(holder(path)))
    answer = lookup("a@samen-veiIig.nl")
    assert answer.startswith("OK error:5.7.1 samen-veiiig.nl looks like our domain")


def test_tls_answers_without_dns_for_probes_literals_own_domains_and_agreed_partners(
    write_policy: Callable[[str], Path],
) -> None:
    path = write_policy("""
        version: 1
        organisation: O
        owned_domains: [samen-veilig.nl]
        partners: [{domain: utrecht.nl, transport: encrypt}]
        secure_transport: {min_tls: "1.3", otherwise: route,
                           route: "relay:[securemail.example]:587"}
        dns: {resolvers: ["127.0.0.1:9"], timeout: 0.2}
    """)
    lookup = replies(tls_table(holder(path), DiscoveryPool(NO_TELEMETRY)))
    assert lookup("*") == "NOTFOUND "
    assert lookup("[10.0.0.1]:25") == "NOTFOUND "
    assert lookup("[securemail.example]:587") == "OK secure protocols=>=TLSv1.3"
    assert lookup("samen-veilig.nl") == "NOTFOUND "
    assert lookup("UTRECHT.NL") == "OK encrypt protocols=>=TLSv1.3"
    assert lookup("example.org").startswith("TEMP ")  # no resolver: defer, never guess
