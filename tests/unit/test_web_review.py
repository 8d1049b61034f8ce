"""Review through the site: what each role sees and may do, four eyes, content shown only
as text, the held list's filters and bulk actions, the reports, and an error page for each
kind of failure. Flask's test client over a real SQLite store."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from postwacht.core.decide import RecipientVerdict
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import (
    Attachment,
    AuditAction,
    HeldContent,
    ReleaseMode,
    Review,
    Status,
)

from tests.unit.test_web_signin import (
    LOOKALIKE,
    hold,
    post,
    signed_in,
    site,
    with_accounts,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRecords]:
    records = with_accounts(tmp_path / "state")
    yield records
    records.close()


@pytest.fixture
def app(store: SqliteRecords) -> Flask:
    return site(store)

RETIRED = RecipientVerdict("d@bjzutrecht.nl", ("bjzutrecht.nl",), Action.QUARANTINE,
                           Rule.RETIRED, "given up", "bjzutrecht.nl")
INSECURE = RecipientVerdict("z@zorg.example", ("zorg.example",), Action.QUARANTINE,
                            Rule.INSECURE_TRANSPORT, "no verified TLS", None)
HOSTILE = HeldContent(
    headers=(("Subject", "<script>alert(1)</script>"), ("From", "s@samen-veilig.nl")),
    text="<script>alert('body')</script>\n<b>bold</b> BSN ******782",
    attachments=(Attachment("scan.pdf", "application/pdf", 12345),),
    notes=("an HTML part was left out",), captured_at=dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC))


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined, no-any-return]


def test_a_viewer_sees_the_list_and_the_decision_but_no_content_and_no_buttons(
    app: Flask, store: SqliteRecords
) -> None:
    record = hold(store, "ABC200")
    store.save_content(record, HOSTILE)
    client = signed_in(app, "vera")
    listing = text(client.get("/held"))
    assert "ABC200" in listing
    assert 'name="record"' not in listing
    assert 'id="bulk"' not in listing
    page = text(client.get(f"/held/{record}"))
    assert "looks like ours" in page
    assert "x@samen-veiIig.nl" in page
    assert "scan.pdf" not in page
    assert "BSN" not in page
    assert 'id="release-plain"' not in page
    assert 'id="delete"' not in page
    assert store.audit_search(action=AuditAction.VIEWED) == []


@pytest.mark.parametrize("path", ["release", "delete", "approve", "dismiss"])
def test_a_viewers_hand_made_form_is_refused(app: Flask, store: SqliteRecords,
                                             path: str) -> None:
    record = hold(store, "ABC201")
    response = post(signed_in(app, "vera"), f"/held/{record}/{path}", reason="mine")
    assert response.status_code == 403
    assert "Your role (viewer) does not allow this" in text(response)
    assert store.record(record).status is Status.HELD


def test_a_reviewer_reads_the_content_as_text_and_the_reading_is_audited(
    app: Flask, store: SqliteRecords
) -> None:
    record = hold(store, "ABC202")
    store.save_content(record, HOSTILE)
    page = text(signed_in(app, "rita").get(f"/held/{record}"))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;body&#39;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; BSN ******782" in page
    assert "<td>scan.pdf</td><td>application/pdf</td><td>12345</td>" in page
    assert "an HTML part was left out" in page
    assert 'http-equiv="refresh"' not in page
    [entry] = store.audit_search(action=AuditAction.VIEWED)
    assert (entry.actor, entry.record_id, entry.detail) == ("rita", record, "content")


def test_content_not_yet_captured_is_said_to_be_on_its_way(app: Flask,
                                                           store: SqliteRecords) -> None:
    record = hold(store, "ABC203", mta="mta-b")
    page = text(signed_in(app, "rita").get(f"/held/{record}"))
    assert "being fetched from mta-b" in page
    assert '<meta http-equiv="refresh" content="3">' in page
    assert store.audit_search(action=AuditAction.VIEWED) == []


def test_a_reviewer_asks_for_a_release_which_the_mta_then_carries_out(
    app: Flask, store: SqliteRecords
) -> None:
    record = hold(store, "ABC204")
    client = signed_in(app, "rita")
    response = post(client, f"/held/{record}/release", mode="plain", reason="checked with HR")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/held/{record}?done=release"
    asked = store.record(record)
    assert asked.status is Status.REQUESTED
    assert asked.request is not None
    assert (asked.request.actor, asked.request.reason, asked.request.needs_approval) == (
        "rita", "checked with HR", "")
    assert "Release requested" in text(client.get(response.headers["Location"]))


def test_a_release_without_a_reason_is_not_asked(app: Flask, store: SqliteRecords) -> None:
    record = hold(store, "ABC205")
    response = post(signed_in(app, "rita"), f"/held/{record}/release", mode="plain",
                    reason="  ")
    assert response.status_code == 409
    assert "A reason is required" in text(response)
    assert store.record(record).status is Status.HELD


def test_mail_to_a_retired_domain_offers_no_release_and_a_hand_made_one_is_refused(
    app: Flask, store: SqliteRecords
) -> None:
    record = hold(store, "ABC206", RETIRED)
    client = signed_in(app, "rita")
    page = text(client.get(f"/held/{record}"))
    assert 'id="release-' not in page
    assert 'id="delete"' in page
    assert "retired domain bjzutrecht.nl" in page
    response = post(client, f"/held/{record}/release", mode="override", reason="please")
    assert response.status_code == 409
    assert "retired domain bjzutrecht.nl" in text(response)
    assert store.record(record).status is Status.HELD


def test_insecure_transport_mail_offers_the_secure_route_only(app: Flask,
                                                               store: SqliteRecords) -> None:
    routed = hold(store, "ABC207", INSECURE, route="relay:[securemail.example]:587")
    page = text(signed_in(app, "rita").get(f"/held/{routed}"))
    assert 'id="release-route"' in page
    assert 'id="release-plain"' not in page
    assert 'id="release-override"' not in page
    bare = hold(store, "ABC208", INSECURE)
    page = text(signed_in(app, "rita").get(f"/held/{bare}"))
    assert 'id="release-override"' in page
    assert "Needs a second person&#39;s approval: it overrides the insecure-transport hold" in page


def test_four_eyes_one_asks_another_approves_nobody_approves_their_own(
    app: Flask, store: SqliteRecords
) -> None:
    record = hold(store, "ABC209", detected="bsn")
    rita = signed_in(app, "rita")
    assert post(rita, f"/held/{record}/release", mode="plain", reason="ok").status_code == 303
    asked = store.record(record).request
    assert asked is not None
    assert asked.awaiting_approval
    assert "detector found the message sensitive (bsn)" in asked.needs_approval
    own = text(rita.get(f"/held/{record}"))
    assert 'id="withdraw"' in own
    assert 'id="approve"' not in own
    assert post(rita, f"/held/{record}/approve", reason="me").status_code == 403
    piet = signed_in(app, "piet")
    assert 'id="approve"' in text(piet.get(f"/held/{record}"))
    response = post(piet, f"/held/{record}/approve", reason="seen it")
    assert response.status_code == 303
    approved = store.record(record).request
    assert approved is not None
    assert approved.approved_by == "piet"


def test_an_approver_cannot_approve_their_own_request(app: Flask, store: SqliteRecords) -> None:
    record = hold(store, "ABC210", detected="bsn")
    piet = signed_in(app, "piet")
    assert post(piet, f"/held/{record}/release", mode="plain", reason="ok").status_code == 303
    response = post(piet, f"/held/{record}/approve", reason="me")
    assert response.status_code == 409
    assert "You cannot approve your own request" in text(response)
    assert post(signed_in(app, "paula"), f"/held/{record}/decline",
                reason="no").status_code == 303
    assert store.record(record).status is Status.HELD


def test_the_requester_may_withdraw_a_request_awaiting_approval(app: Flask,
                                                                store: SqliteRecords) -> None:
    record = hold(store, "ABC211", detected="bsn")
    rita = signed_in(app, "rita")
    post(rita, f"/held/{record}/release", mode="plain", reason="ok")
    assert post(signed_in(app, "rob"), f"/held/{record}/decline", reason="x").status_code == 403
    assert post(rita, f"/held/{record}/decline", reason="oops").status_code == 303
    assert store.record(record).status is Status.HELD


def test_a_gone_record_is_dismissed(app: Flask, store: SqliteRecords) -> None:
    record = hold(store, "ABC212")
    store.close_gone(record, "removed by hand")
    client = signed_in(app, "rita")
    assert 'id="dismiss"' in text(client.get(f"/held/{record}"))
    assert post(client, f"/held/{record}/dismiss", reason="checked").status_code == 303
    assert store.record(record).status is Status.DISMISSED


def test_bulk_actions_go_through_each_records_checks(app: Flask, store: SqliteRecords) -> None:
    plain = hold(store, "ABC213")
    retired = hold(store, "ABC214", RETIRED)
    routed = hold(store, "ABC215", INSECURE, route="relay:[securemail.example]:587")
    sensitive = hold(store, "ABC216", detected="bsn")
    response = post(signed_in(app, "rita"), "/held/bulk", action="release", reason="batch",
                    record=[str(plain), str(retired), str(routed), str(sensitive), "999"])
    page = text(response)
    assert response.status_code == 200
    assert page.count('class="done"') == 3
    assert page.count('class="refused"') == 2
    assert "retired domain bjzutrecht.nl" in page
    assert "waits for a second person" in page
    assert "no quarantine record 999" in page
    assert store.record(retired).status is Status.HELD
    request = store.record(routed).request
    assert request is not None
    assert request.mode is ReleaseMode.ROUTE
    assert post(signed_in(app, "vera"), "/held/bulk", action="delete", reason="x",
                record=[str(retired)]).status_code == 403


def test_bulk_without_a_reason_or_with_a_bad_action_is_a_bad_request(
    app: Flask, store: SqliteRecords
) -> None:
    record = str(hold(store, "ABC217"))
    client = signed_in(app, "rita")
    assert post(client, "/held/bulk", action="release", reason="", record=[record]
                ).status_code == 400
    bad = post(client, "/held/bulk", action="expire", reason="x", record=[record])
    assert bad.status_code == 400
    assert "The parameter action is not valid" in text(bad)


def test_the_held_list_filters(app: Flask, store: SqliteRecords) -> None:
    hold(store, "ABC218", sender="alice@samen-veilig.nl")
    hold(store, "ABC219", RETIRED, sender="bob@samen-veilig.nl")
    hold(store, "ABC220", INSECURE, mta="mta-b")
    client = signed_in(app, "vera")

    def shown(query: str) -> set[str]:
        page = text(client.get(f"/held?{query}"))
        return {q for q in ("ABC218", "ABC219", "ABC220") if q in page}

    assert shown("") == {"ABC218", "ABC219", "ABC220"}
    assert shown("rule=retired") == {"ABC219"}
    assert shown("sender=ALICE") == {"ABC218"}
    assert shown("domain=zorg") == {"ABC220"}
    assert shown("mta=mta-b") == {"ABC220"}
    assert shown("q=given+up") == {"ABC219"}
    assert shown("age=1") == set()
    assert shown("state=gone") == set()
    page = text(client.get("/held"))
    assert page.index("ABC220") < page.index("ABC218")  # newest first


@pytest.mark.parametrize(("query", "name"), [
    ("rule=nonsense", "rule"), ("state=lost", "state"), ("age=-1", "age"),
    ("age=nan", "age"), ("q=" + "x" * 300, "q"), ("sender=%1b%5b2J", "sender")])
def test_a_bad_filter_is_a_400_naming_it(app: Flask, query: str, name: str) -> None:
    response = signed_in(app, "vera").get(f"/held?{query}")
    assert response.status_code == 400
    assert f"The parameter {name} is not valid" in text(response)


def test_an_unknown_record_is_a_404(app: Flask) -> None:
    client = signed_in(app, "vera")
    assert client.get("/held/4242").status_code == 404
    assert "no held-mail record #4242" in text(client.get("/held/4242"))
    assert client.get(f"/held/{2**70}").status_code == 404


def test_a_store_that_fails_is_a_503_with_its_message(app: Flask, store: SqliteRecords,
                                                      tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    client = signed_in(app, "vera")
    Path(store.path).unlink()
    with caplog.at_level(logging.ERROR, logger="postwacht.web"):
        response = client.get("/held")
    assert response.status_code == 503
    assert "The records store cannot be used now" in text(response)
    assert str(store.path) not in text(response)  # where the records live is for the log
    assert any("records store failed" in r.getMessage() and str(store.path) in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("since", ["0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00",
                                   "yesterday"])
def test_a_date_the_trail_cannot_hold_is_a_bad_request(app: Flask, since: str) -> None:
    response = signed_in(app, "vera").get("/audit", query_string={"since": since})
    assert response.status_code == 400
    assert "since" in text(response)


def test_the_audit_trail_pages_back_by_seq(app: Flask, store: SqliteRecords) -> None:
    for n in range(105):
        store.note("rita", AuditAction.VIEWED, 0, f"look {n}")
    client = signed_in(app, "vera")
    first = text(client.get("/audit?action=viewed"))
    assert "look 104" in first
    assert "look 4<" not in first
    assert 'id="older"' in first
    older = first.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    second = text(client.get(older))
    assert "look 4<" in second
    assert "look 104" not in second
    assert client.get("/audit?action=nothing").status_code == 400
    assert client.get("/audit?since=yesterday").status_code == 400


def test_the_reports_show_what_the_daemons_published(app: Flask, store: SqliteRecords) -> None:
    store.record_retired_attempt("s@samen-veilig.nl", "10.0.0.7", "bjzutrecht.nl")
    store.publish("domains", json.dumps({"domains": [
        {"domain": "samen-veilig.nl", "status": "ok", "detail": "<i>renewed</i>"}]}))
    store.publish("policy", json.dumps({"checksum": "0a1b", "summary": {"retired": 3}}))
    client = signed_in(app, "vera")
    assert "bjzutrecht.nl" in text(client.get("/retired?days=7"))
    assert client.get("/retired?days=x").status_code == 400
    domains = text(client.get("/domains"))
    assert "<td>samen-veilig.nl</td><td>ok</td><td>&lt;i&gt;renewed&lt;/i&gt;</td>" in domains
    policy = text(client.get("/policy"))
    assert "<th>summary.retired</th><td>3</td>" in policy
    store.publish("domains", "not json <b>")
    assert "not json &lt;b&gt;" in text(client.get("/domains"))


def test_the_request_shows_who_asked_and_why(app: Flask, store: SqliteRecords) -> None:
    record = hold(store, "ABC221")
    store.request(record, Review.DELETE, ReleaseMode.PLAIN, "rob", "spam run")
    page = text(signed_in(app, "vera").get(f"/held/{record}"))
    assert "rob" in page
    assert "spam run" in page
    assert "pending" in page
    assert text(signed_in(app, "vera").get("/held?state=requested")).count("ABC221") == 1


def test_the_record_page_in_dutch(app: Flask, store: SqliteRecords) -> None:
    record = hold(store, "ABC222", LOOKALIKE)
    client = signed_in(app, "rita")
    page = text(client.get(f"/held/{record}", headers={"Accept-Language": "nl"}))
    assert "Vastgehouden bericht" in page
    assert "Vrijgeven" in page
