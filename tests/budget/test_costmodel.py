"""Cost model: exact prices and conservative estimates from real transpiled circuits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from qiskit import qasm2
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from governance.budget.costmodel import PriceList, Usage, amount_in_unit, price
from governance.providers.estimate import SAFETY_FACTOR, estimate_usage, shape_on_target
from governance.providers.ibm import IBM_PAY_AS_YOU_GO
from governance.providers.presets import BRAKET_STYLE
from governance.budget.money import AmountError, micro_from_decimal_ceil

BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'


def test_ibm_pay_as_you_go_is_1_60_per_qpu_second() -> None:
    assert price(Usage(qpu_seconds=Decimal("2.5")), IBM_PAY_AS_YOU_GO) == 4_000_000


def test_braket_style_charges_per_task_and_per_shot() -> None:
    # 0.30 per task + 0.00035 per shot: 2 tasks × 1000 shots
    assert price(Usage(shots=2000, tasks=2), BRAKET_STYLE) == 600_000 + 700_000


def test_fractions_of_a_micro_unit_round_up_never_down() -> None:
    assert price(Usage(qpu_seconds=Decimal("0.0000001")), IBM_PAY_AS_YOU_GO) == 1


def test_price_list_from_user_strings_is_exact_and_validated() -> None:
    prices = PriceList.from_strings(perQPUSecond="1.60", perShot="0.00035", perTask="0.30")
    assert (prices.per_qpu_second_micro, prices.per_shot_micro, prices.per_task_micro) == (1_600_000, 350, 300_000)
    with pytest.raises(AmountError, match="pricing.perShot"):
        PriceList.from_strings(perShot="-0.1")


def test_estimate_from_a_transpiled_circuit_bounds_the_modelled_usage() -> None:
    backend = FakeManilaV2()
    shape = shape_on_target(qasm2.loads(BELL), backend.target)
    assert Decimal(0) < shape.duration_s < Decimal("0.0001")  # microseconds on real hardware timings
    estimate = estimate_usage([shape], 1000, simulator=False)
    modelled = estimate_usage([shape], 1000, simulator=False, safety=Decimal(1))
    assert estimate.qpu_seconds == modelled.qpu_seconds * SAFETY_FACTOR
    # 1000 × (duration + 250 µs rep delay) + 1 s overhead
    assert modelled.qpu_seconds == 1000 * (shape.duration_s + Decimal("0.00025")) + 1
    usd = amount_in_unit(estimate, IBM_PAY_AS_YOU_GO, "USD")
    qpu = amount_in_unit(estimate, IBM_PAY_AS_YOU_GO, "QPU-seconds")
    assert qpu == micro_from_decimal_ceil(estimate.qpu_seconds)
    assert usd == micro_from_decimal_ceil(estimate.qpu_seconds * Decimal("1.60"))


def test_more_shots_and_more_circuits_never_cost_less() -> None:
    shape = shape_on_target(qasm2.loads(BELL), FakeManilaV2().target)
    costs = [amount_in_unit(estimate_usage([shape] * c, s, simulator=False), IBM_PAY_AS_YOU_GO, "USD")
             for c, s in ((1, 100), (1, 1000), (2, 1000), (4, 4000))]
    assert costs == sorted(costs) and len(set(costs)) == 4


def test_local_simulators_cost_cpu_seconds_at_a_configurable_price() -> None:
    shape = shape_on_target(qasm2.loads(BELL), None)
    usage = estimate_usage([shape], 1000, simulator=True)
    assert usage.qpu_seconds == 0 and usage.cpu_seconds > 0
    assert amount_in_unit(usage, PriceList(), "USD") == 0  # free by default
    assert amount_in_unit(usage, PriceList(per_cpu_second_micro=10_000), "USD") > 0
    assert amount_in_unit(usage, PriceList(), "QPU-seconds") == 0


def test_a_budget_unit_that_is_not_the_price_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        amount_in_unit(Usage(qpu_seconds=Decimal(1)), PriceList(currency="EUR", per_qpu_second_micro=1), "USD")
