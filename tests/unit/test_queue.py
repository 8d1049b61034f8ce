"""The release helper's pure parts: which header key counts, and which postsuper step."""

from __future__ import annotations

import datetime as dt

import pytest
from postwacht.records.queue import Step, quarantine_key, step_for
from postwacht.records.store import ReleaseMode, Request, Review

NOW = dt.datetime(2026, 11, 20, 17, 0, tzinfo=dt.UTC)
LIFETIME = dt.timedelta(days=5)


def test_only_the_last_quarantine_header_counts() -> None:
    headers = ("Subject: x\nX-Postwacht-Quarantine: rule=lookalike; key=forged\n"
               "X-Postwacht-Quarantine: rule=lookalike; policy=abc;\n key=real\n")
    assert quarantine_key(headers) == "real"


def test_a_header_without_a_key_is_told_from_no_header() -> None:
    assert quarantine_key("X-Postwacht-Quarantine: rule=retired; policy=abc\n") == ""
    assert quarantine_key("Subject: x\n") is None


def request(action: Review, mode: ReleaseMode = ReleaseMode.PLAIN) -> Request:
    return Request(1, 1, action, mode, "po", "checked", NOW)


@pytest.mark.parametrize(("held_for", "mode", "step"), [
    (dt.timedelta(hours=2), ReleaseMode.PLAIN, Step.RELEASE),
    (dt.timedelta(days=5), ReleaseMode.PLAIN, Step.REQUEUE),  # a Friday hold on Wednesday
    (dt.timedelta(days=1), ReleaseMode.OVERRIDE, Step.REQUEUE),
    (dt.timedelta(days=5), ReleaseMode.ROUTE, Step.RELEASE),  # -r would drop the route
])
def test_old_holds_are_requeued_unless_they_carry_the_route(
    held_for: dt.timedelta, mode: ReleaseMode, step: Step,
) -> None:
    assert step_for(request(Review.RELEASE, mode), held_for, LIFETIME) is step


def test_an_expiry_returns_or_deletes_and_nothing_else() -> None:
    assert step_for(request(Review.EXPIRE, ReleaseMode.RETURN), dt.timedelta(0),
                    LIFETIME) is Step.RETURN
    assert step_for(request(Review.EXPIRE), dt.timedelta(0), LIFETIME) is Step.DELETE
    with pytest.raises(ValueError, match="an expiry deletes or returns"):
        step_for(request(Review.EXPIRE, ReleaseMode.ROUTE), dt.timedelta(0), LIFETIME)
    assert step_for(request(Review.DELETE), dt.timedelta(0), LIFETIME) is Step.DELETE
