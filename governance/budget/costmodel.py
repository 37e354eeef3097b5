"""Cost model: price lists per backend and a conservative estimate of a job's usage.

QPU time of one shot is the transpiled circuit's scheduled duration on the backend's
target plus the repetition delay between shots (IBM's default is 250 µs, which dominates
small circuits). A job's QPU-seconds = Σ circuits × shots × (duration + rep_delay) plus a
per-job overhead, multiplied by SAFETY_FACTOR. The estimate is what is reserved, so it
errs high: settlement releases the rest, and every settled reservation keeps estimate and
actual so the accuracy can be reported (`qgov ledger report`).

Local simulators (Aer) are charged CPU-seconds at a configurable price, 0 by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from .money import MICRO, micro_from_decimal_ceil, parse_amount

SAFETY_FACTOR = Decimal("1.25")  # estimates are reserved 25% above the model
DEFAULT_JOB_OVERHEAD_QPU_S = Decimal("1.0")  # per-job QPU-side set-up time (loading, calibration checks)
DEFAULT_REP_DELAY_S = Decimal("0.00025")
# Aer: seconds of CPU per shot per 2^qubits amplitude per gate is far too fine; a coarse, high
# bound keeps CPU pricing conservative for the small circuits qgov runs locally.
AER_BASE_CPU_S = Decimal("1.5")  # Python + Aer start-up in a fresh pod
AER_CPU_S_PER_GATE_SHOT = Decimal("0.000001")

IBM_PAYG_USD_PER_QPU_SECOND = Decimal("1.60")


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


IBM_PAY_AS_YOU_GO = PriceList(per_qpu_second_micro=int(IBM_PAYG_USD_PER_QPU_SECOND * MICRO))
BRAKET_STYLE = PriceList(per_task_micro=300_000, per_shot_micro=350)


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


@dataclass(frozen=True)
class CircuitShape:
    """What the estimate needs to know about one circuit after transpilation."""

    duration_s: Decimal  # scheduled duration of one shot on the target (0 for simulators)
    gates: int
    qubits: int


def estimate_usage(
    circuits: Sequence[CircuitShape], shots: int, *, simulator: bool,
    rep_delay_s: Decimal = DEFAULT_REP_DELAY_S, overhead_s: Decimal = DEFAULT_JOB_OVERHEAD_QPU_S,
    safety: Decimal = SAFETY_FACTOR,
) -> Usage:
    """A conservative estimate of what running `circuits` × `shots` uses.

    With `safety=1` it is the model itself: what the fake provider reports as the
    modelled QPU time of a run.
    """
    if shots <= 0:
        raise ValueError("shots must be positive")
    total_shots = shots * len(circuits)
    if simulator:
        gate_shots = sum(c.gates for c in circuits) * shots
        cpu = AER_BASE_CPU_S + AER_CPU_S_PER_GATE_SHOT * gate_shots
        return Usage(cpu_seconds=cpu * safety, shots=total_shots, tasks=len(circuits))
    per_shot = sum(c.duration_s + rep_delay_s for c in circuits)
    qpu = (per_shot * shots + overhead_s) * safety
    return Usage(qpu_seconds=qpu, shots=total_shots, tasks=len(circuits))


def shape_on_target(circuit, target) -> CircuitShape:  # type: ignore[no-untyped-def]
    """Transpile `circuit` for `target` (a qiskit Target, or None for a simulator) and measure it.

    CPU-heavy (tens of ms): callers on an event loop run it in a thread.
    """
    from qiskit import transpile

    if target is None:
        return CircuitShape(Decimal(0), sum(circuit.count_ops().values()), circuit.num_qubits)
    compiled = transpile(circuit, target=target, optimization_level=1, seed_transpiler=0)
    duration = Decimal(str(compiled.estimate_duration(target, unit="s")))
    return CircuitShape(duration, sum(compiled.count_ops().values()), circuit.num_qubits)
