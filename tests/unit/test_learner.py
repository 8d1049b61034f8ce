"""The daemon's side of the guard: bounded learning, and nothing under a foreign key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.core.policy import Policy
from postwacht.records.correspondents import Correspondents
from postwacht.records.learner import CorrespondentLearner
from postwacht.records.sqlite import SqliteRecords

from tests.labs.util import poll

SENDER = "jan@samen-veilig.nl"


@pytest.fixture
def guard(write_policy: Callable[[str], Path]) -> Policy:
    return load(write_policy("""
version: 1
organisation: O
owned_domains: [samen-veilig.nl]
misaddressing: {first_recipient: {mode: monitor}}
"""))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRecords]:
    records = SqliteRecords(tmp_path / "state", create=True, mta="t")
    yield records
    records.close()


def test_what_left_is_learnt_by_the_thread_and_then_known(
        guard: Policy, store: SqliteRecords) -> None:
    learner = CorrespondentLearner(Correspondents(store, b"k" * 32), lambda: guard)
    learner.start()
    try:
        learner.left(SENDER, ["a@x.example", "b@y.example"])
        poll(lambda: learner.known(SENDER, ["a@x.example", "c@z.example"], guard)
             == {"a@x.example"}, "the learnt recipient known")
    finally:
        learner.stop()


def test_the_waiting_pairs_are_bounded_whatever_the_messages(
        guard: Policy, store: SqliteRecords) -> None:
    learner = CorrespondentLearner(Correspondents(store, b"k" * 32), lambda: guard,
                                   pairs_waiting=100)
    learner.left(SENDER, [f"r{i}@x.example" for i in range(60)])
    learner.left(SENDER, [f"s{i}@x.example" for i in range(60)])  # over the bound
    learner.left(SENDER, [f"t{i}@x.example" for i in range(1000)])
    assert learner.dropped == 2


def test_under_another_key_nothing_is_asked_or_written(
        guard: Policy, store: SqliteRecords) -> None:
    correspondents = Correspondents(store, b"k" * 32)
    correspondents.learn(SENDER, ["a@x.example"], dt.datetime.now(dt.UTC))
    learner = CorrespondentLearner(correspondents, lambda: guard,
                                   key_problem="hashed with another key")
    assert learner.known(SENDER, ["a@x.example"], guard) == frozenset()
    before = correspondents.count()
    learner.left(SENDER, ["b@x.example"])
    assert learner.dropped == 0
    assert correspondents.count() == before
