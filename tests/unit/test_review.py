"""Review against Postfix's commands: the strictest record decides, ids are checked first."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from postwacht.cli import main
from postwacht.core.decide import RecipientVerdict
from postwacht.core.vocabulary import Action, Rule
from postwacht.records.review import Postfix, ReviewError, held_messages, release
from postwacht.records.sqlite import SqliteRecords

RETIRED = RecipientVerdict("d@bjzutrecht.nl", ("bjzutrecht.nl",), Action.QUARANTINE,
                           Rule.RETIRED, "given up", "bjzutrecht.nl")
LOOKALIKE = RecipientVerdict("x@samen-veiIig.nl", ("samen-veiiig.nl",), Action.QUARANTINE,
                             Rule.LOOKALIKE, "looks like ours", "samen-veilig.nl")


class FakePostfix(Postfix):
    """Postfix's commands, answered from a list of held queue ids; every call is kept."""

    def __init__(self, held: list[str]) -> None:
        super().__init__()
        self.held = held
        self.calls: list[list[str]] = []

    def _run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append([command, *args])
        out = ""
        if command == "postqueue" and args == ("-j",):
            out = "".join(json.dumps({"queue_name": "hold", "queue_id": q, "sender": "s",
                                      "recipients": [{"address": "r@x.nl"}]}) + "\n"
                          for q in self.held)
        elif command == "postsuper":
            self.held.remove(args[1])
        return subprocess.CompletedProcess([command, *args], 0, out, "")


def store_with(tmp_path: Path, *holds: tuple[str, RecipientVerdict]) -> SqliteRecords:
    store = SqliteRecords(tmp_path)
    for queue_id, verdict in holds:
        store.record_quarantine(queue_id, "s@samen-veilig.nl", [verdict], verdict.rule,
                                verdict.reason, "abc")
    return store


def test_a_forged_second_record_cannot_lift_a_retired_hold(tmp_path: Path) -> None:
    store = store_with(tmp_path, ("ABC123", RETIRED), ("ABC123", LOOKALIKE))
    postfix = FakePostfix(["ABC123"])
    [held] = held_messages(store, postfix)
    assert held.record is not None
    assert held.record.rule is Rule.RETIRED
    assert "2 records claim this queue id" in held.note
    with pytest.raises(ReviewError, match=r"retired domain bjzutrecht\.nl.*--force.*2 records"):
        release(store, postfix, "ABC123", "po", "", force=False)
    assert postfix.held == ["ABC123"]
    release(store, postfix, "ABC123", "po", "", force=True)
    assert postfix.held == []


def test_a_held_message_without_a_record_needs_force(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    postfix = FakePostfix(["ABC124"])
    with pytest.raises(ReviewError, match=r"no Postwacht record.*--force"):
        release(store, postfix, "ABC124", "po", "", force=False)
    assert postfix.held == ["ABC124"]
    assert "no Postwacht record (release needs --force)" in held_messages(store, postfix)[0].note


def test_a_lookalike_hold_is_released_without_force(tmp_path: Path) -> None:
    store = store_with(tmp_path, ("ABC125", LOOKALIKE))
    postfix = FakePostfix(["ABC125"])
    release(store, postfix, "ABC125", "po", "checked", force=False)
    assert ["postsuper", "-H", "ABC125", "hold"] in postfix.calls


@pytest.mark.parametrize("bad", ["-x", "ALL", "-", "abc\nDEF"])
def test_no_postfix_command_sees_what_is_not_a_queue_id(tmp_path: Path, bad: str) -> None:
    postfix = FakePostfix(["ABC126"])
    for act in (lambda: postfix.show(bad, body=False), lambda: postfix.postsuper("-d", bad),
                lambda: postfix.deliver_now(bad)):
        with pytest.raises(ReviewError, match="not a Postfix queue id"):
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
        main(["quarantine", "--state", str(tmp_path), "release", "ABC128", "--actor", actor])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "an actor is a login name or an address" in err
    assert "\x1b" not in err


def test_a_queue_id_on_the_command_line_is_checked_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["quarantine", "--state", str(tmp_path), "show", "--", "-x"])
    assert exit_.value.code == 2
    assert "'-x' is not a Postfix queue id" in capsys.readouterr().err


def test_an_unreadable_address_hold_needs_force(tmp_path: Path) -> None:
    # Postfix may unquote "x@bjzutrecht.nl "@samen-veilig.nl and route it to the retired
    # domain; released mail is not filtered again.
    hidden = RecipientVerdict('"x@bjzutrecht.nl "@samen-veilig.nl', (), Action.QUARANTINE,
                              Rule.BAD_ADDRESS, "cannot read", None)
    store = store_with(tmp_path, ("ABC126", hidden))
    postfix = FakePostfix(["ABC126"])
    with pytest.raises(ReviewError, match=r"cannot read.*--force"):
        release(store, postfix, "ABC126", "po", "", force=False)
    assert postfix.held == ["ABC126"]
    release(store, postfix, "ABC126", "po", "", force=True)
    assert postfix.held == []
