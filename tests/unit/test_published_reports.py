"""What a daemon publishes for review: its running policy and the domain watch's findings,
each once per change, and nothing lost when the store is down for a round."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from postwacht.config.compiler import load
from postwacht.core.facts import CheckResult, DomainReport
from postwacht.core.vocabulary import CheckName
from postwacht.records.publish import ReportPublisher
from postwacht.records.sqlite import SqliteRecords

from tests.conftest import ROOT

EXAMPLE = ROOT / "policies" / "example.yaml"


def test_the_policy_is_published_with_its_checksum_once_per_change(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path, mta="mx1")
    policy = load(EXAMPLE)
    audits: list[tuple[dt.datetime, tuple[DomainReport, ...]] | None] = [None]
    publisher = ReportPublisher(store, lambda: policy, lambda: audits[0])
    publisher.publish_once()
    [report] = store.published("policy")
    body = json.loads(report.body)
    assert (report.mta, body["checksum"], body["file"]) == ("mx1", policy.checksum,
                                                            str(EXAMPLE))
    assert "owned domains" in body["summary"]
    assert store.published("domains") == []
    first = report.at
    publisher.publish_once()  # unchanged: not written again
    assert store.published("policy")[0].at == first
    found = DomainReport("samen-veilig.nl", "owned", (
        CheckResult(CheckName.MX, False, "MX now points at mail.elsewhere.example"),))
    audits[0] = (dt.datetime.now(dt.UTC), (found,))
    publisher.publish_once()
    [domains] = store.published("domains")
    assert json.loads(domains.body)["domains"] == [{
        "domain": "samen-veilig.nl", "kind": "owned", "status": "problem",
        "detail": "mx: MX now points at mail.elsewhere.example", "expires": None}]
    store.close()


def test_a_round_the_store_refuses_is_published_the_next_round(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path, mta="mx1")
    policy = load(EXAMPLE)
    publisher = ReportPublisher(store, lambda: policy, lambda: None)
    (tmp_path / "postwacht.sqlite").unlink()  # the store refuses every call from now on
    publisher.publish_once()
    store.close()
    again = SqliteRecords(tmp_path, mta="mx1")
    ReportPublisher(again, lambda: policy, lambda: None).publish_once()
    assert len(again.published("policy")) == 1
    again.close()
