"""Review from the records alone: what may be asked, by whom, and that ids are checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from postwacht.cli import main
from postwacht.core.decide import RecipientVerdict
from postwacht.core.roles import Role
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.queue import Postfix, PostfixError
from postwacht.records.review import ReviewError, approve, ask, decline, dismiss, find, wait
from postwacht.records.sqlite import SqliteRecords
from postwacht.records.store import (
    ConflictError,
    Hold,
    QuarantineRecord,
    ReleaseMode,
    Review,
    Status,
)

RETIRED = RecipientVerdict("d@bjzutrecht.nl", ("bjzutrecht.nl",), Action.QUARANTINE,
                           Rule.RETIRED, "given up", "bjzutrecht.nl")
LOOKALIKE = RecipientVerdict("x@samen-veiIig.nl", ("samen-veiiig.nl",), Action.QUARANTINE,
                             Rule.LOOKALIKE, "looks like ours", "samen-veilig.nl")
INSECURE = RecipientVerdict("z@zorg.example", ("zorg.example",), Action.QUARANTINE,
                            Rule.INSECURE_TRANSPORT, "no verified TLS", None)
HIDDEN = RecipientVerdict('"x@bjzutrecht.nl "@samen-veilig.nl', (), Action.QUARANTINE,
                          Rule.BAD_ADDRESS, "cannot read", None)


def hold(store: SqliteRecords, queue_id: str, verdict: RecipientVerdict,
         route: str | None = None) -> int:
    record = store.record_quarantine(Hold(
        "mta-a", queue_id, f"key-{queue_id}-{verdict.rule}", "s@samen-veilig.nl", (verdict,),
        verdict.rule, verdict.reason, "abc", route=route))
    return record.record_id


@pytest.fixture
def store(tmp_path: Path) -> SqliteRecords:
    return SqliteRecords(tmp_path, mta="mta-a")


@pytest.fixture
def officers(store: SqliteRecords) -> SqliteRecords:
    """The store with accounts: po (reviewer) asks, and someone else may approve."""
    store.add_user("po", Role.REVIEWER, "", "", "root")
    store.add_user("second", Role.APPROVER, "", "", "root")
    return store


def test_a_forged_second_record_makes_the_queue_id_ambiguous(store: SqliteRecords) -> None:
    hold(store, "ABC123", RETIRED)
    second = hold(store, "ABC123", LOOKALIKE)
    with pytest.raises(ReviewError, match=r"2 records claim queue id ABC123.*#N"):
        find(store, "ABC123")
    assert find(store, f"#{second}").rule is Rule.LOOKALIKE


@pytest.mark.parametrize("mode", list(ReleaseMode))
def test_mail_to_a_retired_domain_is_never_released(store: SqliteRecords,
                                                    mode: ReleaseMode) -> None:
    record = find(store, f"#{hold(store, 'ABC124', RETIRED)}")
    with pytest.raises(ReviewError, match=r"retired domain bjzutrecht\.nl.*bounce"):
        ask(store, record, Review.RELEASE, mode, "po", "checked")
    assert store.record(record.record_id).status is Status.HELD
    ask(store, record, Review.DELETE, ReleaseMode.PLAIN, "po", "old address")


def test_an_unreadable_address_leaves_only_as_an_override(
    store: SqliteRecords, officers: SqliteRecords,
) -> None:
    record = find(store, f"#{hold(store, 'ABC126', HIDDEN)}")
    with pytest.raises(ReviewError, match=r"cannot read.*--override"):
        ask(store, record, Review.RELEASE, ReleaseMode.PLAIN, "po", "checked")
    asked = ask(store, record, Review.RELEASE, ReleaseMode.OVERRIDE, "po", "checked")
    assert asked.mode is ReleaseMode.OVERRIDE
    [*_, entry] = store.audit_entries()
    assert (entry.action, entry.override) == ("release-requested", True)


def test_insecure_transport_mail_goes_through_the_route_or_as_an_override(
    store: SqliteRecords, officers: SqliteRecords,
) -> None:
    routed = find(store, f"#{hold(store, 'ABC127', INSECURE, route='relay:[s.example]:587')}")
    with pytest.raises(ReviewError, match=r"in the clear.*--route.*relay:\[s\.example\]"):
        ask(store, routed, Review.RELEASE, ReleaseMode.PLAIN, "po", "checked")
    with pytest.raises(ReviewError, match=r"leaves through it whatever is asked.*--route"):
        ask(store, routed, Review.RELEASE, ReleaseMode.OVERRIDE, "po", "checked")
    assert ask(store, routed, Review.RELEASE, ReleaseMode.ROUTE, "po", "ok").mode is \
        ReleaseMode.ROUTE
    plain = find(store, f"#{hold(store, 'ABC128', INSECURE)}")
    with pytest.raises(ReviewError, match=r"no secure route.*--override"):
        ask(store, plain, Review.RELEASE, ReleaseMode.ROUTE, "po", "checked")
    ask(store, plain, Review.RELEASE, ReleaseMode.OVERRIDE, "po", "sender confirmed")


def test_a_reason_is_required(store: SqliteRecords) -> None:
    record = find(store, f"#{hold(store, 'ABC129', LOOKALIKE)}")
    for action in (Review.RELEASE, Review.DELETE):
        with pytest.raises(ReviewError, match="a reason is required"):
            ask(store, record, action, ReleaseMode.PLAIN, "po", "  ")


def test_the_second_reviewer_is_told_who_acted_first(store: SqliteRecords) -> None:
    record = find(store, f"#{hold(store, 'ABC12A', LOOKALIKE)}")
    ask(store, record, Review.RELEASE, ReleaseMode.PLAIN, "anna", "checked")
    with pytest.raises(ReviewError, match=r"anna requested release"):
        ask(store, record, Review.DELETE, ReleaseMode.PLAIN, "bert", "typo")


def test_only_listed_reviewers_review_once_there_is_a_list(store: SqliteRecords) -> None:
    record = find(store, f"#{hold(store, 'ABC12B', LOOKALIKE)}")
    store.add_reviewer("anna", "root")
    with pytest.raises(ReviewError, match="bert may not review"):
        ask(store, record, Review.RELEASE, ReleaseMode.PLAIN, "bert", "checked")
    ask(store, record, Review.RELEASE, ReleaseMode.PLAIN, "anna", "checked")


def test_only_a_record_whose_message_is_gone_is_dismissed(store: SqliteRecords) -> None:
    record = find(store, f"#{hold(store, 'ABC12C', LOOKALIKE)}")
    with pytest.raises(ReviewError, match="only a record whose message is gone"):
        dismiss(store, record, "po", "seen")
    store.close_gone(record.record_id, "left the hold queue")
    dismiss(store, find(store, "ABC12C"), "po", "deleted by the postmaster")
    assert store.record(record.record_id).status is Status.DISMISSED


def test_waiting_ends_with_the_outcome_or_the_deadline(store: SqliteRecords) -> None:
    record = find(store, f"#{hold(store, 'ABC12D', LOOKALIKE)}")
    asked = ask(store, record, Review.DELETE, ReleaseMode.PLAIN, "po", "typo")
    assert wait(store, asked.request_id, 0).outcome == ""
    naps: list[float] = []

    def finish(seconds: float) -> None:
        naps.append(seconds)
        store.finish_request(asked.request_id, True, "deleted")

    assert wait(store, asked.request_id, 30, sleep=finish).outcome == "done"
    assert len(naps) == 1


class FakePostfix(Postfix):
    """Postfix's commands, answered from a list of held queue ids; every call is kept."""

    def __init__(self, held: list[str]) -> None:
        super().__init__()
        self.held_ids = held
        self.calls: list[list[str]] = []

    def _run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append([command, *args])
        out = ""
        if command == "postqueue" and args == ("-j",):
            out = "".join(json.dumps({"queue_name": "hold", "queue_id": q, "sender": "s",
                                      "recipients": [{"address": "r@x.nl"}]}) + "\n"
                          for q in self.held_ids)
        return subprocess.CompletedProcess([command, *args], 0, out, "")


@pytest.mark.parametrize("bad", ["-x", "ALL", "-", "abc\nDEF"])
def test_no_postfix_command_sees_what_is_not_a_queue_id(bad: str) -> None:
    postfix = FakePostfix(["ABC126"])
    for act in (lambda: postfix.show(bad, body=False), lambda: postfix.postsuper("-d", bad),
                lambda: postfix.deliver_now(bad)):
        with pytest.raises(PostfixError, match="not a Postfix queue id"):
            act()
    assert postfix.calls == []


def test_postcat_is_told_where_options_end() -> None:
    postfix = FakePostfix([])
    postfix.show("ABC127", body=True)
    assert postfix.calls == [["postcat", "-e", "-h", "-b", "-q", "--", "ABC127"]]


@pytest.mark.parametrize("actor", ["\x1b[31mroot", "a\nb", "two words", "x" * 65, ""])
def test_an_actor_that_is_not_one_printable_word_is_a_usage_error(
    tmp_path: Path, actor: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["quarantine", "--state", str(tmp_path), "release", "ABC128", "--reason", "x",
              "--actor", actor])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "an actor is a login name or an address" in err
    assert "\x1b" not in err


def test_a_reference_that_is_no_queue_id_is_refused_before_anything_runs(
    store: SqliteRecords, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    store.close()
    code = main(["quarantine", "--state", str(tmp_path), "show", "--", "-x"])
    assert code == 1
    assert "'-x' is neither a record number (#N) nor a Postfix queue id" in \
        capsys.readouterr().err


def test_an_unreadable_address_is_not_released_by_the_route_alone(
    store: SqliteRecords, officers: SqliteRecords,
) -> None:
    record = store.record_quarantine(Hold(
        "mta-a", "ABC12E", "key-both", "s@samen-veilig.nl", (HIDDEN, INSECURE),
        Rule.BAD_ADDRESS, "cannot read", "abc", route="relay:[s.example]:587"))
    with pytest.raises(ReviewError, match=r"cannot read.*--override"):
        ask(store, record, Review.RELEASE, ReleaseMode.ROUTE, "po", "checked")
    ask(store, record, Review.RELEASE, ReleaseMode.OVERRIDE, "po", "checked")


def test_an_export_goes_on_after_the_last_entry_of_the_one_before(
    store: SqliteRecords, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    for queue_id in ("ABC130", "ABC131", "ABC132"):
        hold(store, queue_id, LOOKALIKE)
    store.close()
    assert main(["audit", "--state", str(tmp_path), "export", "--after-seq", "2"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert (json.loads(line)["seq"], json.loads(line)["queue_id"]) == (3, "ABC132")
    assert main(["audit", "--state", str(tmp_path), "verify"]) == 0
    assert "audit trail intact: 3 entries" in capsys.readouterr().out


def hold_sensitive(store: SqliteRecords, queue_id: str) -> QuarantineRecord:
    record = store.record_quarantine(Hold(
        "mta-a", queue_id, f"key-{queue_id}", "s@samen-veilig.nl", (LOOKALIKE,),
        Rule.LOOKALIKE, LOOKALIKE.reason, "abc", detected="bsn"))
    return find(store, f"#{record.record_id}")


def test_a_release_of_mail_a_detector_found_sensitive_waits_for_a_second_person(
    store: SqliteRecords,
) -> None:
    store.add_user("anna", Role.REVIEWER, "", "", "root")
    store.add_user("bert", Role.APPROVER, "", "", "root")
    record = hold_sensitive(store, "ABC130")
    asked = ask(store, record, Review.RELEASE, ReleaseMode.PLAIN, "anna", "checked by phone")
    assert asked.awaiting_approval
    assert "detector" in asked.needs_approval
    assert store.pending_requests("mta-a") == []  # the daemon does not act on it yet
    with pytest.raises(ReviewError, match="anna is a reviewer: to approve takes the role "
                                          "approver"):
        approve(store, find(store, "ABC130"), "anna", "fine")
    approved = approve(store, find(store, "ABC130"), "bert", "agreed")
    assert approved.approved_by == "bert"
    [(pending, _)] = store.pending_requests("mta-a")
    assert pending.request_id == asked.request_id
    actions = [e.action for e in store.audit_entries()]
    assert actions[-2:] == ["release-requested", "approved"]


def test_nobody_approves_their_own_request_and_the_requester_may_withdraw_it(
    store: SqliteRecords,
) -> None:
    store.add_user("carl", Role.APPROVER, "", "", "root")
    store.add_user("dora", Role.APPROVER, "", "", "root")
    record = find(store, f"#{hold(store, 'ABC131', INSECURE)}")
    asked = ask(store, record, Review.RELEASE, ReleaseMode.OVERRIDE, "carl", "partner asked")
    assert "overrides the insecure-transport hold" in asked.needs_approval
    with pytest.raises(ReviewError, match="nobody approves their own request"):
        approve(store, find(store, "ABC131"), "carl", "self")
    with pytest.raises(ConflictError, match="nobody approves their own request"):
        store.approve(asked.request_id, "carl", "self")  # the store refuses it too
    decline(store, find(store, "ABC131"), "carl", "asked the partner for a portal instead")
    again = store.record(record.record_id)
    assert again.status is Status.HELD
    assert again.request is not None
    assert again.request.outcome == "declined"
    with pytest.raises(ReviewError, match="no request waiting for approval"):
        approve(store, again, "someone", "late")


def test_an_ordinary_release_needs_no_second_person(store: SqliteRecords) -> None:
    record = find(store, f"#{hold(store, 'ABC132', LOOKALIKE)}")
    asked = ask(store, record, Review.RELEASE, ReleaseMode.PLAIN, "po", "the right domain")
    assert not asked.awaiting_approval
    assert [r.request_id for r, _ in store.pending_requests("mta-a")] == [asked.request_id]


def test_once_accounts_exist_a_viewer_may_not_act(store: SqliteRecords) -> None:
    store.add_user("vera", Role.VIEWER, "", "", "root")
    record = find(store, f"#{hold(store, 'ABC133', LOOKALIKE)}")
    with pytest.raises(ReviewError, match="vera is a viewer: to act takes the role reviewer"):
        ask(store, record, Review.DELETE, ReleaseMode.PLAIN, "vera", "typo")


def test_a_release_that_needs_a_second_person_is_refused_when_nobody_could_approve_it(
    store: SqliteRecords,
) -> None:
    record = find(store, f"#{hold(store, 'ABC134', INSECURE)}")
    with pytest.raises(ReviewError, match=r"needs a second person .* no account but yours "
                                          r"may approve"):
        ask(store, record, Review.RELEASE, ReleaseMode.OVERRIDE, "po", "partner agreed")
    store.add_user("po", Role.APPROVER, "", "", "root")
    with pytest.raises(ReviewError, match="no account but yours"):
        ask(store, record, Review.RELEASE, ReleaseMode.OVERRIDE, "po", "partner agreed")
    assert store.record(record.record_id).status is Status.HELD
