"""Burn rate: what a budget commits per day lately, and when it runs out at that rate.

Pure functions over the ledger's per-day figures (spent + held of the reservations created on each
UTC day, from the report aggregates' day cells; `Ledger.daily_spend`). Exact: micro-units and
fractions throughout, rounded once, to the micro-unit, where a figure is shown.

The aggregates are per UTC day, so "the last 24 hours" is today so far plus the part of yesterday
that is less than 24 hours ago, yesterday's spend taken as spread evenly across it; "the last 7
days" likewise (six whole days, today, and the remainder of the eighth day back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from fractions import Fraction
from typing import Any

from .money import format_amount

DAY_US = 86_400 * 1_000_000  # microseconds in a day
WEEK = 7
HORIZON_US = 36_525 * DAY_US  # the furthest exhaustion date shown: 100 years ahead
NO_SPEND = "no spend in the last 7 days"


@dataclass(frozen=True)
class BurnRate:
    last_day: int  # micro-units committed over the last 24 hours
    last_week: int  # micro-units per day, averaged over the last 7 days
    rate: Fraction  # the rate the forecast uses (micro-units a day): the higher of the two, exactly
    basis: str  # "last day" or "last week": which one that is
    exhausted_at: datetime | None  # when the remaining funds are gone at `rate` (None: no spend)
    remaining: int  # micro-units left in the period

    @property
    def spending(self) -> bool:
        return self.rate > 0


def _round(value: Fraction) -> int:
    """To whole micro-units, half to even (the one rounding a shown rate gets)."""
    return round(value)


def burn_rate(daily: Mapping[date, int], now: datetime, remaining: int) -> BurnRate:
    """The burn rate at `now` from `daily` (UTC day -> micro-units committed that day), and when
    `remaining` micro-units are gone at the higher of the last day's and the last week's rate
    (the earlier warning). No spend in the last week: rate 0 and no exhaustion time."""
    now = now.astimezone(timezone.utc)
    today = now.date()
    midnight = datetime.combine(today, time.min, timezone.utc)
    elapsed = Fraction((now - midnight) // timedelta(microseconds=1), DAY_US)  # of today, in [0, 1)
    left = 1 - elapsed  # the part of the day a window's start cuts that lies inside the window

    def day(back: int) -> int:
        return daily.get(today - timedelta(days=back), 0)

    last_day = day(0) + day(1) * left
    last_week = (sum(day(i) for i in range(WEEK)) + day(WEEK) * left) / WEEK
    rate, basis = max((last_day, "last day"), (last_week, "last week"), key=lambda r: r[0])
    exhausted = None
    if remaining <= 0:
        exhausted = now
    elif rate > 0:
        # floor: never late; a century at most (a trickle against a large limit would overflow a date)
        exhausted = now + timedelta(microseconds=min(int(remaining * DAY_US / rate), HORIZON_US))
    return BurnRate(_round(last_day), _round(last_week), rate, basis, exhausted, remaining)


def _per_day(rate: Fraction, unit: str) -> str:
    return f"{format_amount(_round(rate))} {unit} a day"


def burn_status(burn: BurnRate, unit: str, period_end: datetime | None) -> dict[str, Any]:
    """The budget status' `burnRate`: amounts as exact decimal strings (micro-units), the date the
    funds run out if that comes before the period ends (when they are replenished), and one line
    that says it all."""
    status: dict[str, Any] = {"lastDay": format_amount(burn.last_day), "lastWeek": format_amount(burn.last_week)}
    if burn.remaining <= 0 and burn.exhausted_at is not None:
        status["forecast"] = "exhausted: nothing remains in this period"
        status["exhaustedOn"] = burn.exhausted_at.date().isoformat()
    elif burn.exhausted_at is None:
        status["forecast"] = NO_SPEND
    elif period_end is not None and burn.exhausted_at >= period_end:
        status["forecast"] = (f"at this rate ({_per_day(burn.rate, unit)}, the {burn.basis}'s), funds last until "
                              f"the period ends on {period_end.date().isoformat()}")
    else:
        status["exhaustedOn"] = burn.exhausted_at.date().isoformat()
        status["forecast"] = (f"at this rate ({_per_day(burn.rate, unit)}, the {burn.basis}'s), exhausted on "
                              f"{status['exhaustedOn']}")
    return status


def next_midnight(now: datetime) -> datetime:
    """When the figures next change with no new spend: a day leaves the windows at UTC midnight."""
    return datetime.combine(now.astimezone(timezone.utc).date() + timedelta(days=1), time.min, timezone.utc)
