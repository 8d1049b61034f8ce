"""Reading the `v=NTA7516-1` record: exactly one readable record, valid on the day."""

from __future__ import annotations

import datetime as dt

import pytest
from postwacht.core.nta7516 import NtaHost, RecordError, nta7516_claim, parse_record

TODAY = dt.date(2026, 11, 24)
VALID = ("v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=Zorgmail;"
         "ntamx=20 mx2.secure.example;ntamx=10 mx1.secure.example")


def test_a_valid_record_lists_its_hosts_by_preference() -> None:
    record = parse_record(VALID)
    assert record.start == dt.date(2025, 1, 1)
    assert record.end == dt.date(2027, 12, 31)
    assert record.provider == "Zorgmail"
    assert record.hosts == (NtaHost(10, "mx1.secure.example"), NtaHost(20, "mx2.secure.example"))
    claim = nta7516_claim(["v=spf1 -all", VALID], TODAY)
    assert claim.record == record
    assert "provider Zorgmail, valid 2025-01-01 to 2027-12-31" in claim.detail


def test_without_ntamx_the_domains_own_mx_hosts_receive() -> None:
    claim = nta7516_claim(["v=NTA7516-1; startdate=2026-11; enddate=2026-11; provider=X;"],
                          TODAY)
    assert claim.record is not None
    assert claim.record.hosts == ()
    assert "hosts the domain's MX hosts" in claim.detail


@pytest.mark.parametrize(("day", "counts"), [
    (dt.date(2026, 11, 1), True), (dt.date(2026, 11, 30), True),
    (dt.date(2026, 10, 31), False), (dt.date(2026, 12, 1), False),
    (dt.date(2024, 2, 29), False),
])
def test_the_validity_runs_from_the_first_to_the_last_day_of_the_months(
        day: dt.date, counts: bool) -> None:
    text = "v=NTA7516-1;startdate=2026-11;enddate=2026-11;provider=X"
    assert (nta7516_claim([text], day).record is not None) is counts


def test_an_expired_or_future_record_is_ignored_and_says_so() -> None:
    expired = nta7516_claim(["v=NTA7516-1;startdate=2020-01;enddate=2021-06;provider=X"],
                            TODAY)
    assert expired.record is None
    assert expired.detail.startswith("expired (provider X, valid 2020-01-01 to 2021-06-30")
    future = nta7516_claim(["v=NTA7516-1;startdate=2027-01;enddate=2028-01;provider=X"],
                           TODAY)
    assert future.record is None
    assert future.detail.startswith("not valid yet")


def test_two_records_are_no_claim() -> None:
    claim = nta7516_claim([VALID, VALID.replace("Zorgmail", "Other")], TODAY)
    assert claim.record is None
    assert claim.detail == "2 v=NTA7516-1 records: none counts"


def test_no_record_is_no_claim() -> None:
    assert nta7516_claim(["v=spf1 -all"], TODAY).detail == "no v=NTA7516-1 record"


@pytest.mark.parametrize(("text", "says"), [
    ("v=NTA7516-1;startdate=2025-13;enddate=2027-12;provider=X", "startdate '2025-13'"),
    ("v=NTA7516-1;startdate=2025-01;enddate=2027;provider=X", "enddate '2027' is not YYYY-MM"),
    ("v=NTA7516-1;startdate=2025-01;provider=X", "no enddate"),
    ("v=NTA7516-1;startdate=2025-01;enddate=2027-12", "no provider"),
    ("v=NTA7516-1;startdate=2027-01;enddate=2025-12;provider=X", "is before startdate"),
    ("v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=X;ntamx=mx.example",
     "ntamx 'mx.example' is not PREFERENCE HOST"),
    ("v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=X;ntamx=99999 mx.example",
     "is not PREFERENCE HOST"),
    ("v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=X;ntamx=10 mx..example",
     "ntamx '10 mx..example'"),
    ("v=NTA7516-1;startdate=2025-01;startdate=2025-02;enddate=2027-12;provider=X",
     "'startdate' is given twice"),
    ("v=NTA7516-1;startdate 2025-01;enddate=2027-12;provider=X", "is not name=value"),
])
def test_a_malformed_record_is_ignored_and_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(RecordError) as failed:
        parse_record(text)
    assert says in str(failed.value)
    claim = nta7516_claim([text], TODAY)
    assert claim.record is None
    assert claim.detail.startswith("a v=NTA7516-1 record that cannot be read: ")


def test_a_record_with_too_many_hosts_is_malformed() -> None:
    text = "v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=X;" + ";".join(
        f"ntamx={i} mx{i}.example" for i in range(17))
    with pytest.raises(RecordError, match="more than 16 ntamx hosts"):
        parse_record(text)


@pytest.mark.parametrize("text", [
    "v=NTA7516-1;startdate=0000-01;enddate=2027-12;provider=X",
    "v=NTA7516-1;startdate=2025-01;enddate=0000-12;provider=X",
    "v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=X;ntamx=\u0663 mx.example",
])
def test_a_record_no_calendar_or_number_takes_is_malformed_not_a_crash(text: str) -> None:
    claim = nta7516_claim([text], TODAY)
    assert claim.record is None
    assert claim.detail.startswith("a v=NTA7516-1 record that cannot be read: ")


def test_only_this_version_tag_makes_a_record() -> None:
    assert nta7516_claim(["v=NTA7516-10;startdate=2025-01;enddate=2027-12;provider=X",
                          VALID], TODAY).record == parse_record(VALID)


def test_the_providers_name_is_shown_visible_and_bounded() -> None:
    text = ("v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=P\x1b[2J"
            + "x" * 500)
    provider = parse_record(text).provider
    assert "\x1b" not in provider
    assert len(provider) <= 104


def test_a_host_listed_twice_is_one_host() -> None:
    text = ("v=NTA7516-1;startdate=2025-01;enddate=2027-12;provider=X;"
            "ntamx=10 mx.example;ntamx=10 MX.example.")
    assert parse_record(text).hosts == (NtaHost(10, "mx.example"),)


@pytest.mark.parametrize(("month", "last"), [("2024-02", 29), ("2023-02", 28),
                                             ("2026-12", 31)])
def test_the_end_month_ends_on_its_last_day(month: str, last: int) -> None:
    record = parse_record(f"v=NTA7516-1;startdate=2020-01;enddate={month};provider=X")
    assert record.end.day == last
