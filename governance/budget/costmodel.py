"""Cost model: price lists and what a usage costs, exactly.

Prices are integer micro-units of a currency; a usage (estimated by a provider, or reported by an
executor) costs Σ usage × price, rounded up to the micro-unit. What a job is estimated to use is
the providers' (governance/providers/estimate.py, chosen per provider); price presets live with
the provider they describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import MICRO, micro_from_decimal_ceil, parse_amount


@dataclass(frozen=True)
class PriceList:
    """Prices of one backend, in micro-units of `currency` (exact)."""

    currency: str = "USD"
    per_qpu_second_micro: int = 0
    per_shot_micro: int = 0
    per_task_micro: int = 0  # a task is one circuit execution request (AWS Braket style)
    per_cpu_second_micro: int = 0  # local simulators

    @classmethod
    def from_strings(
        cls, *, currency: str = "USD", perQPUSecond: str = "0", perShot: str = "0", perTask: str = "0",
        perCPUSecond: str = "0",
    ) -> PriceList:
        """Build from a QiskitBackend's `spec.pricing` (decimal strings, as users write them)."""
        return cls(
            currency=currency,
            per_qpu_second_micro=parse_amount(perQPUSecond, field="pricing.perQPUSecond"),
            per_shot_micro=parse_amount(perShot, field="pricing.perShot"),
            per_task_micro=parse_amount(perTask, field="pricing.perTask"),
            per_cpu_second_micro=parse_amount(perCPUSecond, field="pricing.perCPUSecond"),
        )


@dataclass(frozen=True)
class Usage:
    """What a job uses (estimated or measured)."""

    qpu_seconds: Decimal = Decimal(0)
    cpu_seconds: Decimal = Decimal(0)
    shots: int = 0
    tasks: int = 0


def price(usage: Usage, prices: PriceList) -> int:
    """Cost in micro-units of the price list's currency, rounded up to the micro-unit."""
    exact = (
        usage.qpu_seconds * prices.per_qpu_second_micro
        + usage.cpu_seconds * prices.per_cpu_second_micro
        + Decimal(usage.shots * prices.per_shot_micro + usage.tasks * prices.per_task_micro)
    )
    return micro_from_decimal_ceil(exact / MICRO)


def amount_in_unit(usage: Usage, prices: PriceList, unit: str) -> int:
    """The amount a budget in `unit` is charged: money for USD budgets, QPU-seconds otherwise."""
    if unit == "QPU-seconds":
        return micro_from_decimal_ceil(usage.qpu_seconds)
    if unit != prices.currency:
        raise ValueError(f"budget unit {unit} does not match the backend's price currency {prices.currency}")
    return price(usage, prices)

