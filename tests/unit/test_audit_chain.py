"""The audit trail's chain on its own: what the hash covers, and what `verify` finds when
an entry is edited, deleted or moved, without any store."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from postwacht.records.audit import GENESIS, entry_hash, hash_of, stamp, verify
from postwacht.records.store import AuditAction, AuditEntry

START = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def chain(count: int = 5) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS
    for seq in range(1, count + 1):
        entry = AuditEntry(seq, START + dt.timedelta(minutes=seq), "anna",
                           AuditAction.HELD if seq % 2 else AuditAction.RELEASED, "mx1",
                           f"ABC00{seq}", seq, "lookalike", ("samen-veiiig.nl",),
                           "looks like ours", False, "", prev, "")
        entry = dataclasses.replace(entry, hash=hash_of(entry))
        entries.append(entry)
        prev = entry.hash
    return entries


def head(entries: list[AuditEntry]) -> tuple[int, str]:
    return (entries[-1].seq, entries[-1].hash) if entries else (0, GENESIS)


def test_an_intact_trail_has_no_problems() -> None:
    entries = chain()
    assert entries[0].hash == entry_hash(1, entries[0].at, "anna", "held", "mx1", "ABC001", 1,
                                         "lookalike", ["samen-veiiig.nl"], "looks like ours",
                                         False, "", GENESIS)
    assert verify(entries, head(entries)) == []
    assert verify([], (0, GENESIS)) == []


@pytest.mark.parametrize("field", ["at", "actor", "action", "mta", "queue_id", "record_id",
                                   "rule", "domains", "reason", "override", "detail", "prev"])
def test_the_hash_covers_every_field(field: str) -> None:
    entry = chain(1)[0]
    other = {"at": START, "actor": "bram", "action": AuditAction.DELETED, "mta": "mx2",
             "queue_id": "DEF001", "record_id": 99, "rule": "retired",
             "domains": ("zorg.example",), "reason": "other", "override": True,
             "detail": "x", "prev": "1" * 64}[field]
    assert hash_of(dataclasses.replace(entry, **{field: other})) != entry.hash


def test_a_time_hashes_alike_in_any_zone_and_is_stamped_in_utc_to_the_microsecond() -> None:
    amsterdam = dt.timezone(dt.timedelta(hours=1))
    local = dt.datetime(2026, 11, 20, 10, 0, 0, 5, tzinfo=amsterdam)
    assert stamp(local) == "2026-11-20T09:00:00.000005+00:00"
    entry = chain(1)[0]
    assert hash_of(dataclasses.replace(entry, at=entry.at.astimezone(amsterdam))) == entry.hash


def test_an_edited_entry_is_named() -> None:
    entries = chain()
    entries[2] = dataclasses.replace(entries[2], reason="nothing to see")
    assert verify(entries, head(entries)) == [
        f"entry 3 ({stamp(entries[2].at)} held): edited after it was written (its hash does "
        "not match its content)"]


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link() -> None:
    entries = chain()
    edited = dataclasses.replace(entries[2], reason="nothing to see")
    entries[2] = dataclasses.replace(edited, hash=hash_of(edited))
    [problem] = verify(entries, head(entries))
    assert problem.startswith("entry 4 ")
    assert "does not follow the entry before it" in problem


def test_a_deleted_entry_is_named() -> None:
    entries = chain()
    del entries[2]
    problems = verify(entries, head(entries))
    assert problems[0].startswith("entry 3 missing: the trail jumps to entry 4")
    assert "entry 4 " in problems[1]
    assert len(problems) == 2


def test_deleted_entries_in_a_row_are_named_as_a_range() -> None:
    entries = chain(6)
    del entries[1:4]
    assert verify(entries, head(entries))[0].startswith("entry 2 to 4 missing")


def test_deleting_the_newest_entries_is_seen_through_the_head() -> None:
    entries = chain()
    kept = entries[:3]
    assert verify(kept, head(entries)) == [
        "the newest entry is 3 but the trail's head says 5: entries after 3 were deleted, "
        "or the head was changed"]
    assert verify([], head(entries))[0].startswith("the newest entry is 0")


def test_reordered_entries_are_named() -> None:
    entries = chain()
    entries[1], entries[2] = entries[2], entries[1]
    problems = verify(entries, head(entries))
    assert any(p.startswith("entry 2 missing: the trail jumps to entry 3") for p in problems)
    assert any(p.startswith("entry 3 ") and "does not follow" in p for p in problems)


def test_swapped_contents_under_the_old_numbers_are_named() -> None:
    entries = chain()
    second, third = entries[1], entries[2]
    entries[1] = dataclasses.replace(third, seq=2)
    entries[2] = dataclasses.replace(second, seq=3)
    problems = verify(entries, head(entries))
    assert any(p.startswith("entry 2 ") and "edited" in p for p in problems)
    assert any(p.startswith("entry 3 ") and "edited" in p for p in problems)
