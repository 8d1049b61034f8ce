"""A sender ends a first-recipient hold by a signed link: what `review.confirm` allows, what
makes a link tampered or expired, the release helper carrying it out without a second
person, and the pages at /confirm over Flask's test client and a real SQLite store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from postwacht.adapters.web import SenderLinks, WebSettings, create_app
from postwacht.adapters.web.auth import Passwords
from postwacht.cli.web import sender_links
from postwacht.core.decide import RecipientVerdict
from postwacht.core.vocabulary import Action, Match, Rule, Scope
from postwacht.notices.links import Confirm, Link, LinkError, check, parse, sign, url
from postwacht.records.correspondents import Correspondents
from postwacht.records.queue import Postfix, QueueEntry, carry_out
from postwacht.records.review import SENDER_REASONS, ReviewError, ask, confirm
from postwacht.records.secret import derive, load_secret
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import AuditAction, Hold, ReleaseMode, Review, Status
from werkzeug.test import TestResponse

from tests.unit.test_web_signin import FAST, LOOKALIKE, csrf_of, with_accounts

KEY = bytes(range(32))
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
IN_A_WEEK = int((NOW + dt.timedelta(days=7)).timestamp())
SENDER = "wijkverpleging@samen-veilig.nl"
NEW = RecipientVerdict("j.jansen@huisarts-oost.example", ("huisarts-oost.example",),
                       Action.QUARANTINE, Rule.FIRST_RECIPIENT,
                       "sensitive mail to an address this sender never mailed")
OTHER_NEW = dataclasses.replace(NEW, address="praktijk@huisarts-oost.example")
KNOWN = RecipientVerdict("collega@zorg.example", ("zorg.example",), Action.ACCEPT,
                         Rule.DEFAULT, "known")


class Learned:
    """The `remember` callback: what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, sender: str, recipients: Sequence[str]) -> None:
        self.calls.append((sender, list(recipients)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRecords]:
    """A store with accounts (none of them the sender's)."""
    records = with_accounts(tmp_path / "state")
    yield records
    records.close()


def hold(store: SqliteRecords, queue_id: str,
         verdicts: tuple[RecipientVerdict, ...] = (NEW, OTHER_NEW, KNOWN), *,
         rule: Rule = Rule.FIRST_RECIPIENT, detected: str = "bsn") -> int:
    return store.record_quarantine(Hold(
        "mta-a", queue_id, f"key-{queue_id}", SENDER, verdicts, rule,
        "sensitive mail to 2 addresses this sender never mailed", "0a1b2c3d4e5f",
        client="10.0.0.7", detected=detected)).record_id


def token(store: SqliteRecords, record_id: int, action: Confirm = Confirm.SEND,
          expires: int = IN_A_WEEK, key: bytes = KEY) -> str:
    return sign(key, record_id, store.record(record_id).key, action, expires).token


# What the sender may decide.

def test_send_asks_the_release_as_the_sender_without_approval_and_learns_the_held_only(
    store: SqliteRecords,
) -> None:
    record = store.record(hold(store, "4A1B2C3D4E"))
    learned = Learned()
    asked = confirm(store, record, Review.RELEASE, learned)
    assert (asked.action, asked.mode, asked.actor, asked.needs_approval) == (
        Review.RELEASE, ReleaseMode.PLAIN, SENDER, "")
    assert asked.reason == "the sender confirmed the recipients by the link in the notice"
    assert store.record(record.record_id).status is Status.REQUESTED
    assert learned.calls == [(SENDER, [NEW.address, OTHER_NEW.address])]
    [entry] = store.audit_search(action=AuditAction.RELEASE_REQUESTED)
    assert (entry.actor, entry.record_id, entry.reason) == (SENDER, record.record_id,
                                                            asked.reason)


def test_cancel_asks_the_delete_as_the_sender_and_learns_nothing(store: SqliteRecords) -> None:
    record = store.record(hold(store, "4A1B2C3D4F"))
    learned = Learned()
    asked = confirm(store, record, Review.DELETE, learned)
    assert (asked.action, asked.actor) == (Review.DELETE, SENDER)
    assert asked.reason == "the sender cancelled the message by the link in the notice"
    assert learned.calls == []
    [entry] = store.audit_search(action=AuditAction.DELETE_REQUESTED)
    assert entry.actor == SENDER


def test_a_hold_for_another_reason_too_is_for_a_privacy_officer(store: SqliteRecords) -> None:
    record = store.record(hold(store, "4A1B2C3D50", (NEW, LOOKALIKE)))
    learned = Learned()
    with pytest.raises(ReviewError, match=r"another reason \(lookalike\).*privacy officer"):
        confirm(store, record, Review.RELEASE, learned)
    only_lookalike = store.record(hold(store, "4A1B2C3D51", (LOOKALIKE,), rule=Rule.LOOKALIKE))
    with pytest.raises(ReviewError, match="privacy officer decides"):
        confirm(store, only_lookalike, Review.DELETE, learned)
    assert store.record(record.record_id).status is Status.HELD
    assert learned.calls == []


def test_a_message_no_longer_held_is_refused_with_what_became_of_it(
    store: SqliteRecords,
) -> None:
    record_id = hold(store, "4A1B2C3D52")
    ask(store, store.record(record_id), Review.DELETE, ReleaseMode.PLAIN, "rita", "wrong")
    learned = Learned()
    with pytest.raises(ReviewError, match=r"rita asked to delete it.*not carried it out"):
        confirm(store, store.record(record_id), Review.RELEASE, learned)
    assert learned.calls == []


def test_a_store_that_changed_meanwhile_is_a_review_error(store: SqliteRecords) -> None:
    record = store.record(hold(store, "4A1B2C3D53"))
    confirm(store, record, Review.DELETE, None)
    with pytest.raises(ReviewError, match=r"cannot request .*requested delete"):
        confirm(store, record, Review.RELEASE, None)  # the record as read before


def test_no_account_is_needed_although_accounts_exist(store: SqliteRecords) -> None:
    assert store.users()
    assert store.user(SENDER) is None
    record = store.record(hold(store, "4A1B2C3D54"))
    assert confirm(store, record, Review.RELEASE, None).actor == SENDER


def test_a_reviewer_can_still_act_with_four_eyes_as_for_any_detected_message(
        store: SqliteRecords) -> None:
    """Only the sender's own confirmation needs nobody else: a reviewer who releases a
    message a detector found sensitive needs a second person, as for any other."""
    record = store.record(hold(store, "4A1B2C3D55"))
    asked = ask(store, record, Review.RELEASE, ReleaseMode.PLAIN, "rita", "called the GP")
    assert "a detector found the message sensitive" in asked.needs_approval


def test_only_a_release_or_a_delete(store: SqliteRecords) -> None:
    with pytest.raises(ReviewError, match="not expire"):
        confirm(store, store.record(hold(store, "4A1B2C3D56")), Review.EXPIRE, None)


# The release helper carries it out.

class HoldQueue(Postfix):
    """A hold queue of one message, in memory: what `carry_out` sees of Postfix."""

    def __init__(self, queue_id: str, key: str) -> None:
        super().__init__()
        self.entry = QueueEntry(queue_id, "hold", NOW, SENDER, (NEW.address,))
        self.key = key
        self.steps: list[str] = []

    def held(self, queue_id: str) -> QueueEntry | None:
        return self.entry if queue_id == self.entry.queue_id and not self.steps else None

    def headers(self, queue_id: str) -> str:
        return f"X-Postwacht-Quarantine: rule=first-recipient; key={self.key}\n"

    def postsuper(self, flag: str, queue_id: str) -> None:
        self.steps.append(flag)

    def deliver_now(self, queue_id: str) -> None:
        pass

    def lifetime(self, sender: str) -> dt.timedelta:
        return dt.timedelta(days=5)


def test_the_release_helper_carries_out_the_senders_release_without_approval(
    store: SqliteRecords,
) -> None:
    """Found sensitive by a detector, yet the sender's word is enough: the helper judges
    four eyes again from the record and finds no second person needed."""
    record = store.record(hold(store, "4A1B2C3D57", detected="bsn"))
    asked = confirm(store, record, Review.RELEASE, None)
    queue = HoldQueue(record.queue_id, record.key)
    result = carry_out(store, queue, "mta-a", asked.request_id,
                       clock=lambda: NOW.timestamp() + 600)
    assert result.ok, result.detail
    assert queue.steps == ["-H"]


def test_the_release_helper_still_wants_approval_for_a_lookalike_found_sensitive(
    store: SqliteRecords,
) -> None:
    record_id = hold(store, "4A1B2C3D58", (LOOKALIKE,), rule=Rule.LOOKALIKE)
    record = store.record(record_id)
    asked = store.request(record_id, Review.RELEASE, ReleaseMode.PLAIN, "rita", "checked")
    queue = HoldQueue(record.queue_id, record.key)
    result = carry_out(store, queue, "mta-a", asked.request_id)
    assert not result.ok
    assert "needs a second person" in result.detail
    assert queue.steps == []


# The link itself.

def signed(action: Confirm = Confirm.SEND) -> Link:
    return sign(KEY, 7, "hold-key-7", action, IN_A_WEEK)


@pytest.mark.parametrize("changed", [
    dataclasses.replace(signed(), record_id=8),
    dataclasses.replace(signed(), action=Confirm.CANCEL),
    dataclasses.replace(signed(), expires=IN_A_WEEK + 86400),
    sign(bytes(32), 7, "hold-key-7", Confirm.SEND, IN_A_WEEK),
], ids=["another record", "the other action", "a later expiry", "another key"])
def test_a_changed_link_is_tampered(changed: Link) -> None:
    with pytest.raises(LinkError) as caught:
        check(KEY, parse(changed.token), "hold-key-7", NOW.timestamp())
    assert caught.value.kind == "tampered"


def test_a_link_for_an_earlier_hold_under_the_same_number_is_tampered() -> None:
    with pytest.raises(LinkError) as caught:
        check(KEY, signed(), "hold-key-of-a-later-message", NOW.timestamp())
    assert caught.value.kind == "tampered"


def test_a_link_past_its_expiry_is_expired_and_a_forged_one_still_tampered() -> None:
    check(KEY, signed(), "hold-key-7", IN_A_WEEK)
    with pytest.raises(LinkError) as caught:
        check(KEY, signed(), "hold-key-7", IN_A_WEEK + 1)
    assert caught.value.kind == "expired"
    forged = dataclasses.replace(signed(), expires=IN_A_WEEK - 86400)
    with pytest.raises(LinkError) as caught:
        check(KEY, forged, "hold-key-7", IN_A_WEEK + 1)
    assert caught.value.kind == "tampered"


# The pages.

@pytest.fixture
def learned() -> Learned:
    return Learned()


@pytest.fixture
def app(store: SqliteRecords, learned: Learned) -> Flask:
    links = SenderLinks(KEY, learned, clock=NOW.timestamp)
    return create_app(store, WebSettings(), Passwords(FAST), links)


def opened(client: FlaskClient, link: str, lang: str = "en") -> TestResponse:
    return client.get(f"/confirm/{link}", headers={"Accept-Language": lang})


def press(client: FlaskClient, link: str, **headers: str) -> TestResponse:
    """Open the link as the sender's browser does, then press the page's button."""
    page = opened(client, link)
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(f"/confirm/{link}", data={"csrf": csrf_of(page.get_data(as_text=True))},
                       headers=headers)


def text(response: TestResponse) -> str:
    """The page's words, without tags."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def test_opening_a_link_shows_the_held_message_and_does_nothing(
    app: Flask, store: SqliteRecords, learned: Learned,
) -> None:
    record_id = hold(store, "5A1B2C3D40")
    before = store.audit_head()
    response = opened(app.test_client(), token(store, record_id))
    assert response.status_code == 200
    shown = text(response)
    for words in (SENDER, NEW.address, OTHER_NEW.address, "2026-", "never mailed",
                  "Send it to these recipients"):
        assert words in shown
    assert KNOWN.address not in shown
    assert "Delete this message" not in shown
    assert store.record(record_id).status is Status.HELD
    assert store.audit_head() == before
    assert learned.calls == []
    [cookie] = response.headers.getlist("Set-Cookie")
    assert cookie.startswith("postwacht_confirm=")
    assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/confirm"} <= {
        part.strip() for part in cookie.split(";")}


def test_the_page_speaks_dutch_to_a_dutch_browser(app: Flask, store: SqliteRecords) -> None:
    record_id = hold(store, "5A1B2C3D41")
    shown = text(opened(app.test_client(), token(store, record_id, Confirm.CANCEL), "nl"))
    assert "Verwijder dit bericht" in shown
    assert "Nieuwe ontvangers" in shown


def test_a_press_without_the_pages_token_is_refused(app: Flask, store: SqliteRecords) -> None:
    record_id = hold(store, "5A1B2C3D42")
    link = token(store, record_id)
    client = app.test_client()
    assert client.post(f"/confirm/{link}", data={}).status_code == 403
    opened(client, link)
    assert client.post(f"/confirm/{link}", data={"csrf": "guessed"}).status_code == 403
    stranger = app.test_client()  # the token of another browser, without its cookie
    page = opened(client, link).get_data(as_text=True)
    assert stranger.post(f"/confirm/{link}", data={"csrf": csrf_of(page)}).status_code == 403
    assert store.record(record_id).status is Status.HELD


def test_a_press_from_another_site_is_refused(app: Flask, store: SqliteRecords) -> None:
    record_id = hold(store, "5A1B2C3D43")
    response = press(app.test_client(), token(store, record_id),
                     Origin="https://evil.example")
    assert response.status_code == 403
    assert store.record(record_id).status is Status.HELD


def test_pressing_send_asks_the_release_as_the_sender(
    app: Flask, store: SqliteRecords, learned: Learned,
) -> None:
    record_id = hold(store, "5A1B2C3D44")
    response = press(app.test_client(), token(store, record_id))
    assert response.status_code == 200
    assert "The message is on its way" in text(response)
    assert "audit trail" in text(response)
    record = store.record(record_id)
    assert record.status is Status.REQUESTED
    assert record.request is not None
    assert (record.request.actor, record.request.action, record.request.reason,
            record.request.needs_approval) == (SENDER, Review.RELEASE,
                                               SENDER_REASONS[Review.RELEASE], "")
    [entry] = store.audit_search(action=AuditAction.RELEASE_REQUESTED)
    assert entry.actor == SENDER
    assert learned.calls == [(SENDER, [NEW.address, OTHER_NEW.address])]


def test_pressing_cancel_asks_the_delete_as_the_sender(
    app: Flask, store: SqliteRecords, learned: Learned,
) -> None:
    record_id = hold(store, "5A1B2C3D45")
    response = press(app.test_client(), token(store, record_id, Confirm.CANCEL))
    assert response.status_code == 200
    assert "The message was deleted" in text(response)
    [entry] = store.audit_search(action=AuditAction.DELETE_REQUESTED)
    assert (entry.actor, entry.record_id) == (SENDER, record_id)
    assert learned.calls == []


@pytest.mark.parametrize("damage", [
    lambda t: t.replace(t.split(".")[0], str(int(t.split(".")[0]) + 1), 1),
    lambda t: t.replace(".send.", ".cancel."),
    lambda t: re.sub(r"\.(\d+)\.", lambda m: f".{int(m[1]) + 60}.", t),
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: t[:20],
    lambda t: "999999." + t.split(".", 1)[1],
], ids=["another record", "the other action", "a later expiry", "the signature",
        "cut short", "no such record"])
def test_a_damaged_link_is_a_403_page(app: Flask, store: SqliteRecords, damage: object) -> None:
    record_id = hold(store, "5A1B2C3D46")
    hold(store, "5A1B2C3D47")  # the record one number up exists
    assert callable(damage)
    good = token(store, record_id)
    link = damage(good)
    client = app.test_client()
    page = opened(client, good).get_data(as_text=True)
    for response in (opened(app.test_client(), link),
                     client.post(f"/confirm/{link}", data={"csrf": csrf_of(page)})):
        assert response.status_code == 403
        assert "This link is damaged or was changed" in text(response)
        assert "Traceback" not in text(response)
    assert store.record(record_id).status is Status.HELD


def test_a_link_signed_with_another_key_is_a_403_page(app: Flask, store: SqliteRecords) -> None:
    record_id = hold(store, "5A1B2C3D48")
    response = opened(app.test_client(), token(store, record_id, key=bytes(32)))
    assert response.status_code == 403


def test_an_expired_link_is_a_410_page_with_its_date(app: Flask, store: SqliteRecords) -> None:
    record_id = hold(store, "5A1B2C3D49")
    expired = int((NOW - dt.timedelta(hours=1)).timestamp())
    link = token(store, record_id, expires=expired)
    response = opened(app.test_client(), link)
    assert response.status_code == 410
    assert ("This link has expired on 2026-11-20 08:00 UTC. Your message is still held; "
            "your privacy officer can release it.") in text(response)
    client = app.test_client()
    opened(client, token(store, record_id))  # a fresh page's token for the press
    page = opened(client, token(store, record_id)).get_data(as_text=True)
    assert client.post(f"/confirm/{link}", data={"csrf": csrf_of(page)}).status_code == 410
    assert store.record(record_id).status is Status.HELD


def test_a_message_no_longer_held_is_a_409_page_saying_what_became_of_it(
    app: Flask, store: SqliteRecords,
) -> None:
    confirmed, released, deleted, asked = (hold(store, f"5A1B2C3D5{n}") for n in range(4))
    press(app.test_client(), token(store, confirmed))
    for record_id, action in ((released, Review.RELEASE), (deleted, Review.DELETE)):
        request = ask(store, store.record(record_id), action, ReleaseMode.PLAIN, "rita", "ok")
        store.finish_request(request.request_id, True, "done")
    ask(store, store.record(asked), Review.DELETE, ReleaseMode.PLAIN, "rita", "wrong address")
    expected = {confirmed: "You already confirmed this message",
                released: "This message was already released",
                deleted: "This message was already deleted",
                asked: "A privacy officer has already asked to delete this message"}
    for record_id, words in expected.items():
        response = opened(app.test_client(), token(store, record_id))
        assert response.status_code == 409, record_id
        assert words in text(response)


def test_a_message_held_for_another_reason_is_a_409_page_for_the_privacy_officer(
    app: Flask, store: SqliteRecords,
) -> None:
    record_id = hold(store, "5A1B2C3D60", (NEW, LOOKALIKE))
    response = opened(app.test_client(), token(store, record_id))
    assert response.status_code == 409
    assert "a privacy officer decides whether it may be sent" in text(response)
    assert store.record(record_id).status is Status.HELD


def test_a_site_without_the_link_key_has_no_confirmation_pages(store: SqliteRecords) -> None:
    app = create_app(store, WebSettings(), Passwords(FAST))
    assert app.test_client().get(f"/confirm/{token(store, hold(store, '5A1B2C3D61'))}"
                                 ).status_code == 404


def test_the_sites_composition_signs_with_the_state_key_and_remembers_the_confirmed(
    tmp_path: Path, store: SqliteRecords,
) -> None:
    state = tmp_path / "state"
    load_secret(state, create=True)  # as the daemon makes it
    links = sender_links(str(state), store)
    assert links is not None
    secret = load_secret(state, create=False)
    assert links.key == derive(secret, "links")
    confirm(store, store.record(hold(store, "5A1B2C3D63")), Review.RELEASE, links.remember)
    known = Correspondents(store, derive(secret, "correspondents")).known(
        SENDER, [NEW.address, OTHER_NEW.address, KNOWN.address], Scope.SENDER, Match.ADDRESS,
        NOW - dt.timedelta(days=365 * 10))
    assert known == {NEW.address, OTHER_NEW.address}


def test_a_site_whose_key_is_not_the_mtas_turns_the_links_off(
    tmp_path: Path, store: SqliteRecords,
) -> None:
    for name in ("mta", "elsewhere", "no-key"):
        (tmp_path / name).mkdir()
        if name != "no-key":
            load_secret(tmp_path / name, create=True)
    assert sender_links(str(tmp_path / "mta"), store) is not None  # the first claims it
    assert sender_links(str(tmp_path / "elsewhere"), store) is None
    assert sender_links(str(tmp_path / "no-key"), store) is None
    assert not (tmp_path / "no-key" / "postwacht.key").exists()  # never made here


def test_the_notice_link_is_the_pages_path(store: SqliteRecords) -> None:
    record_id = hold(store, "5A1B2C3D62")
    link = sign(KEY, record_id, store.record(record_id).key, Confirm.SEND, IN_A_WEEK)
    assert url("https://review.samen-veilig.nl/", link).endswith(f"/confirm/{link.token}")
