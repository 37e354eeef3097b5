"""Exact amounts: every amount in the ledger is an integer count of micro-units.

A micro-unit is one millionth of the budget's unit (USD or QPU-second). Integers make
sums exact and comparisons trivial in SQL; Decimal is only used at the edges (parsing
user input, formatting for people).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation

MICRO = 1_000_000
UNITS = ("USD", "QPU-seconds")


class AmountError(ValueError):
    """An amount given by a user that is not a valid, exact, non-negative quantity."""


def parse_amount(text: str | int | Decimal, *, field: str = "amount", allow_negative: bool = False) -> int:
    """Parse a decimal string such as "10.50" into micro-units, exactly.

    Floats are refused on purpose: 0.1 has no exact binary form, and money must be exact.
    More than six decimal places would need rounding, so they are refused too.
    """
    if isinstance(text, bool) or isinstance(text, float):
        raise AmountError(f"{field}: give a decimal string such as \"10.50\", not a {type(text).__name__}")
    try:
        value = Decimal(str(text).strip()) if not isinstance(text, Decimal) else text
    except InvalidOperation:
        raise AmountError(f"{field}: {text!r} is not a number (expected a decimal string such as \"10.50\")") from None
    if not value.is_finite():
        raise AmountError(f"{field}: {text!r} is not a finite number")
    if value < 0 and not allow_negative:
        raise AmountError(f"{field}: {text!r} is negative; amounts must be zero or more")
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise AmountError(f"{field}: {text!r} has more than 6 decimal places")
    return int(micro)


def micro_from_decimal_ceil(value: Decimal) -> int:
    """Round a computed (not user-given) quantity up to whole micro-units: estimates never undercount."""
    return int((value * MICRO).to_integral_value(rounding=ROUND_CEILING))


def to_decimal(micro: int) -> Decimal:
    return Decimal(micro) / MICRO


def format_amount(micro: int, unit: str | None = None) -> str:
    """Format micro-units for people: at least two decimals, more only when they carry value."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    digits = f"{frac:06d}".rstrip("0")
    if len(digits) < 2:
        digits = digits.ljust(2, "0")
    text = f"{sign}{whole}.{digits}"
    return f"{text} {unit}" if unit else text


def format_quantity(value: Decimal | str | int) -> str:
    """A measured quantity (QPU-seconds) for people and status fields: a plain decimal of at most
    six places, rounded half-even, without trailing zeros. Usage derived from a float (a circuit's
    scheduled duration) otherwise shows its binary noise: 1.255663999999999999000."""
    if isinstance(value, float):
        raise TypeError("format_quantity takes a Decimal, a decimal string or an int, not a float")
    quantity = Decimal(str(value)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
    text = f"{quantity:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
