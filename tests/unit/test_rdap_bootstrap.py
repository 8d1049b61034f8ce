"""RDAP server selection from IANA's bootstrap file (RFC 9224)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from postwacht.core.policy import DomainWatch
from postwacht.core.vocabulary import Mode
from postwacht.facts.rdap import RdapClient, RdapError


def settings(rdap_base_url: str | None = None, bootstrap_file: str | None = None,
             rdap_timeout: float = 10.0) -> DomainWatch:
    return DomainWatch(enabled=True, rdap_base_url=rdap_base_url, bootstrap_file=bootstrap_file,
                       rdap_timeout=rdap_timeout, interval=3600, expiry_warning_days=30,
                       hold_on_control_loss=False, mode=Mode.ENFORCE)


def test_the_bootstrap_file_names_the_server_per_top_level_domain(tmp_path: Path) -> None:
    bootstrap = tmp_path / "dns.json"
    bootstrap.write_text(json.dumps({"version": "1.0", "services": [
        [["nl"], ["http://rdap.example.nl/", "https://rdap.example.nl/"]],
        [["com", "net"], ["https://rdap.example.com/"]],
    ]}))
    client = RdapClient(settings(bootstrap_file=str(bootstrap)))
    assert client.base_for("samen-veilig.nl") == "https://rdap.example.nl/"
    assert client.base_for("example.net") == "https://rdap.example.com/"
    assert client.base_for("example.org") is None
    with pytest.raises(RdapError, match="no RDAP server configured"):
        client.lookup("example.org")


def test_a_configured_base_url_wins(tmp_path: Path) -> None:
    assert RdapClient(settings(rdap_base_url="https://rdap.test/")).base_for("a.nl") == (
        "https://rdap.test/")


def test_an_unreadable_bootstrap_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RdapError, match="cannot read RDAP bootstrap file"):
        RdapClient(settings(bootstrap_file=str(tmp_path / "missing.json")))


@pytest.mark.parametrize("content", ['{"services": [["nl"]]}', '{"services": 3}', "[]"])
def test_a_bootstrap_file_in_another_shape_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "dns.json"
    path.write_text(content)
    with pytest.raises(RdapError, match="not in the IANA format"):
        RdapClient(settings(bootstrap_file=str(path)))
