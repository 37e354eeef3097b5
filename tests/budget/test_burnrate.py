"""The burn rate a budget's status shows: exact, from per-day figures, and the date funds run out."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.budget.burnrate import NO_SPEND, burn_rate, burn_status, next_midnight
from governance.budget.types import BudgetSpec, ReserveRequest

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
TODAY = NOON.date()


def days_back(**amounts: int) -> dict[date, int]:
    """d0=today, d1=yesterday, ... in micro-units."""
    return {TODAY - timedelta(days=int(k[1:])): v for k, v in amounts.items()}


@pytest.mark.parametrize("daily, remaining, last_day, last_week, basis, exhausted_on", [
    # 2 USD today at noon, nothing before: 2 a day over the last 24 h; 2/7 a day over the week
    (days_back(d0=2_000_000), 8_000_000, "2.00", "0.285714", "last day", "2026-11-28"),
    # yesterday counts for the half of it that is within 24 h of noon today
    (days_back(d1=4_000_000), 10_000_000, "2.00", "0.571429", "last day", "2026-11-29"),
    # a steady 1 a day (half of it so far today): both rates 1 a day (the eighth day back counts for half)
    ({TODAY - timedelta(days=i): 1_000_000 if i else 500_000 for i in range(8)}, 3_000_000, "1.00", "1.00", "last day", "2026-11-27"),
    # a burst a week ago: the week's rate is higher, and it is the one the forecast uses
    (days_back(d6=7_000_000), 5_000_000, "0.00", "1.00", "last week", "2026-11-29"),
    # nothing remains: exhausted now
    (days_back(d0=1_000_000), 0, "1.00", "0.142857", "last day", "2026-11-24"),
])
def test_rates_and_exhaustion(daily: dict[date, int], remaining: int, last_day: str, last_week: str, basis: str,
                              exhausted_on: str) -> None:
    burn = burn_rate(daily, NOON, remaining)
    status = burn_status(burn, "USD", None)
    assert (status["lastDay"], status["lastWeek"], burn.basis) == (last_day, last_week, basis)
    assert status.get("exhaustedOn") == exhausted_on
    if remaining:
        assert status["forecast"].startswith("at this rate (") and status["forecast"].endswith(exhausted_on)
        assert f"the {basis}'s" in status["forecast"]
    else:
        assert status["forecast"] == "exhausted: nothing remains in this period"


def test_no_spend_means_no_forecast_and_nothing_to_refresh() -> None:
    burn = burn_rate(days_back(d8=5_000_000, d30=1), NOON, 1_000_000)  # older than the week: not counted
    status = burn_status(burn, "USD", None)
    assert status == {"lastDay": "0.00", "lastWeek": "0.00", "forecast": NO_SPEND}
    assert burn.exhausted_at is None and not burn.spending


def test_funds_that_outlast_the_period_say_so() -> None:
    burn = burn_rate(days_back(d0=1_000_000), NOON, 9_000_000)
    status = burn_status(burn, "QPU-seconds", datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert "exhaustedOn" not in status
    assert status["forecast"] == ("at this rate (1.00 QPU-seconds a day, the last day's), funds last until the "
                                  "period ends on 2026-12-01")


def test_the_status_never_holds_a_float_and_rounds_once() -> None:
    status = burn_status(burn_rate(days_back(d0=1, d3=2), NOON, 10), "USD", None)
    assert all(isinstance(v, str) for v in status.values())
    assert status["lastWeek"] == "0.00"  # 3/7 micro-units a day rounds to 0 (half to even)


def test_next_midnight() -> None:
    assert next_midnight(NOON) == datetime(2026, 11, 25, tzinfo=timezone.utc)
    assert next_midnight(datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc)) == datetime(2027, 1, 1, tzinfo=timezone.utc)


amounts = st.integers(min_value=0, max_value=10**12)


@given(st.lists(amounts, min_size=9, max_size=9), st.integers(min_value=0, max_value=86_399_999_999),
       st.integers(min_value=0, max_value=10**13))
def test_exact_against_a_direct_computation(spend: list[int], us: int, remaining: int) -> None:
    now = datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(microseconds=us)
    daily = {TODAY - timedelta(days=i): v for i, v in enumerate(spend)}
    burn = burn_rate(daily, now, remaining)
    left = 1 - Fraction(us, 86_400_000_000)
    day = spend[0] + spend[1] * left
    week = (sum(spend[:7]) + spend[7] * left) / 7
    assert burn.last_day == round(day) and burn.last_week == round(week)
    assert burn.rate == max(day, week)
    assert burn.last_day <= sum(spend[:2]) and burn.last_week * 7 <= sum(spend[:8]) + 7
    if remaining == 0:
        assert burn.exhausted_at == now
    elif burn.rate == 0:
        assert burn.exhausted_at is None
    else:  # the exact moment, never later (floored to the microsecond)
        exact = remaining * 86_400_000_000 / burn.rate
        got = (burn.exhausted_at - now) // timedelta(microseconds=1)
        assert got <= exact < got + 1 or got == 36_525 * 86_400_000_000 < exact  # or a century ahead
        # more money left never runs out sooner
        later = burn_rate(daily, now, remaining + 1_000_000).exhausted_at
        assert later is not None and later >= burn.exhausted_at


def test_the_ledger_gives_spend_per_day(ledger, clock) -> None:  # type: ignore[no-untyped-def]
    """Spent + held per UTC day of admission, on SQLite and PostgreSQL, released work excluded."""
    ledger.upsert_budget(BudgetSpec("ns", "b", 100_000_000, period="monthly"))
    ledger.reserve(ReserveRequest("a", "ns", "b", 3_000_000, job="ns/a", backend="x"))
    ledger.settle("a", 2_500_000)
    clock.advance(days=1)
    ledger.reserve(ReserveRequest("b", "ns", "b", 1_000_000, job="ns/b", backend="x"))
    ledger.reserve(ReserveRequest("c", "ns", "b", 4_000_000, job="ns/c", backend="y"))
    ledger.release("c")
    today = clock().date()
    assert ledger.daily_spend("ns", "b") == {today - timedelta(days=1): 2_500_000, today: 1_000_000}
    burn = burn_rate(ledger.daily_spend("ns", "b"), clock(), ledger.balance("ns", "b").remaining_micro)
    assert burn.spending and burn.remaining == 100_000_000 - 3_500_000
