"""When a reviewers' digest is due: one name per period, the same on every MTA.

Every daemon sharing a records store computes the same name for the period it is in and
claims it in the store; the first claim wins, so one digest goes out per period however
many MTAs run. Pure: the time comes in.
"""

from __future__ import annotations

import datetime as dt

from postwacht.core.policy import DigestPeriod

DAILY_AT = dt.time(8, 0)
"""The daily digest goes out at this local time."""
IMMEDIATE_BATCH = 5.0
"""Seconds after a hold before an `immediately` digest goes out, so that holds close
together (one message to many, a script's run) share one digest."""
IMMEDIATE_SPACING = 60.0
"""Seconds at least between two `immediately` digests (one per minute name)."""


def period_name(period: DigestPeriod, now: dt.datetime) -> str | None:
    """The claim name of the period `now` (aware, in local time) falls in; None for `off`.

    Hours and minutes are named in UTC, so a clock change never gives two periods one
    name; the daily digest follows the local 08:00, named by the local date it belongs to
    (before 08:00, yesterday's)."""
    utc = now.astimezone(dt.UTC)
    match period:
        case DigestPeriod.IMMEDIATELY:
            return f"digest:minute:{utc:%Y-%m-%dT%H:%M}"
        case DigestPeriod.HOURLY:
            return f"digest:hour:{utc:%Y-%m-%dT%H}"
        case DigestPeriod.DAILY:
            day = now.date() if now.time() >= DAILY_AT else (
                now.date() - dt.timedelta(days=1))
            return f"digest:day:{day.isoformat()}"
        case DigestPeriod.OFF:
            return None
