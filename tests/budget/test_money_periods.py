"""Exact amounts and period windows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.budget.money import AmountError, format_amount, parse_amount
from governance.budget.periods import window_at

UTC = timezone.utc


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_is_exact(micro: int) -> None:
    assert parse_amount(format_amount(micro)) == micro


@pytest.mark.parametrize("text, micro", [("10", 10_000_000), ("0.1", 100_000), ("3.20", 3_200_000),
                                         ("0.000001", 1), (" 7.5 ", 7_500_000), ("1e2", 100_000_000)])
def test_parse_amount(text: str, micro: int) -> None:
    assert parse_amount(text) == micro


@pytest.mark.parametrize("bad, message", [(0.1, "not a float"), ("abc", "not a number"), ("-1", "negative"),
                                          ("1.0000001", "more than 6 decimal places"), ("inf", "finite"),
                                          (True, "not a bool")])
def test_parse_amount_refuses(bad, message: str) -> None:
    with pytest.raises(AmountError, match=message):
        parse_amount(bad)


def test_format_amount_keeps_two_decimals_and_every_significant_digit() -> None:
    assert format_amount(3_200_000, "USD") == "3.20 USD"
    assert format_amount(1) == "0.000001"
    assert format_amount(-2_500_000) == "-2.50"
    assert parse_amount(Decimal("0.1") + Decimal("0.2")) == 300_000  # where floats would drift


def test_monthly_windows_clamp_to_short_months() -> None:
    anchor = datetime(2026, 1, 31, 6, 0, tzinfo=UTC)
    w = window_at("monthly", anchor, datetime(2026, 3, 1, tzinfo=UTC))
    assert (w.start, w.end) == (datetime(2026, 2, 28, 6, tzinfo=UTC), datetime(2026, 3, 31, 6, tzinfo=UTC))
    w = window_at("monthly", anchor, datetime(2028, 2, 29, 7, tzinfo=UTC))
    assert w.start == datetime(2028, 2, 29, 6, tzinfo=UTC)


def test_daily_and_weekly_windows_follow_the_anchor_time() -> None:
    anchor = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # a Monday, 06:00
    assert window_at("daily", anchor, datetime(2026, 11, 24, 5, 59, tzinfo=UTC)).start == datetime(
        2026, 11, 23, 6, tzinfo=UTC)
    assert window_at("weekly", anchor, datetime(2026, 11, 24, 12, tzinfo=UTC)).start == datetime(
        2026, 11, 23, 6, tzinfo=UTC)
    assert window_at("none", anchor, datetime(2030, 1, 1, tzinfo=UTC)).end is None


@given(period=st.sampled_from(["daily", "weekly", "monthly"]),
       anchor=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
       offset=st.integers(min_value=-10**9, max_value=10**9))
def test_windows_contain_the_moment_and_tile_time(period: str, anchor: datetime, offset: int) -> None:
    moment = anchor + timedelta(seconds=offset)
    w = window_at(period, anchor, moment)
    assert w.contains(moment)
    assert window_at(period, anchor, w.end).start == w.end  # the next window starts where this one ends
    assert window_at(period, anchor, w.start - timedelta(microseconds=1)).end == w.start
