"""Budget periods: which [start, end) window a moment belongs to.

All times are timezone-aware UTC. A period is anchored: a daily budget anchored at 06:00
rolls over at 06:00 every day; a monthly budget anchored on the 31st rolls over on the last
day of shorter months. `none` is a single period that never ends.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

PERIODS = ("none", "daily", "weekly", "monthly")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime | None  # None: the period never ends

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


def utc(moment: datetime) -> datetime:
    """Normalise to aware UTC; naive datetimes (as SQLite returns them) are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.month - 1 + months
    year, month = anchor.year + total // 12, total % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def window_at(period: str, anchor: datetime, moment: datetime) -> Window:
    """The period window that contains `moment`."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")
    anchor, moment = utc(anchor), utc(moment)
    if period == "none":
        return Window(anchor, None)
    if period in ("daily", "weekly"):
        step = timedelta(days=1 if period == "daily" else 7)
        k = (moment - anchor) // step
        start = anchor + k * step
        return Window(start, start + step)
    months = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
    start = _add_months(anchor, months)
    while start > moment:
        months -= 1
        start = _add_months(anchor, months)
    while _add_months(anchor, months + 1) <= moment:
        months += 1
        start = _add_months(anchor, months)
    return Window(start, _add_months(anchor, months + 1))
