"""The estimate of what a job uses, from its circuits' shapes: a QPU-time model for devices and a
CPU-time model for local simulators. Providers choose which applies; pricing is costmodel's.

QPU time of one shot is the transpiled circuit's scheduled duration on the device's target plus
the repetition delay between shots (IBM's default is 250 µs, which dominates small circuits). A
job's QPU-seconds = Σ circuits × shots × (duration + rep_delay) plus a per-job overhead,
multiplied by SAFETY_FACTOR. The estimate is what is reserved, so it errs high: settlement
releases the rest, and every settled reservation keeps estimate and actual so the accuracy can
be reported (`qgov ledger report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..budget.costmodel import Usage

SAFETY_FACTOR = Decimal("1.25")  # estimates are reserved 25% above the model
DEFAULT_JOB_OVERHEAD_QPU_S = Decimal("1.0")  # per-job QPU-side set-up time (loading, calibration checks)
DEFAULT_REP_DELAY_S = Decimal("0.00025")
# Aer: seconds of CPU per shot per 2^qubits amplitude per gate is far too fine; a coarse, high
# bound keeps CPU pricing conservative for the small circuits qgov runs locally.
AER_BASE_CPU_S = Decimal("1.5")  # Python + Aer start-up in a fresh pod
AER_CPU_S_PER_GATE_SHOT = Decimal("0.000001")


@dataclass(frozen=True)
class CircuitShape:
    """What the estimate needs to know about one circuit after transpilation."""

    duration_s: Decimal  # scheduled duration of one shot on the target (0 for simulators)
    gates: int
    qubits: int


def _check(shots: int) -> None:
    if shots <= 0:
        raise ValueError("shots must be positive")


def qpu_usage(circuits: Sequence[CircuitShape], shots: int, *, rep_delay_s: Decimal = DEFAULT_REP_DELAY_S,
              overhead_s: Decimal = DEFAULT_JOB_OVERHEAD_QPU_S, safety: Decimal = SAFETY_FACTOR) -> Usage:
    """QPU time of `circuits` × `shots` on a device; with `safety=1` the model itself (what the fake
    provider reports as the modelled QPU time of a run)."""
    _check(shots)
    per_shot = sum(c.duration_s + rep_delay_s for c in circuits)
    qpu = (per_shot * shots + overhead_s) * safety
    return Usage(qpu_seconds=qpu, shots=shots * len(circuits), tasks=len(circuits))


def cpu_usage(circuits: Sequence[CircuitShape], shots: int, *, safety: Decimal = SAFETY_FACTOR) -> Usage:
    """CPU time of `circuits` × `shots` on a local simulator: a coarse, high bound."""
    _check(shots)
    gate_shots = sum(c.gates for c in circuits) * shots
    cpu = AER_BASE_CPU_S + AER_CPU_S_PER_GATE_SHOT * gate_shots
    return Usage(cpu_seconds=cpu * safety, shots=shots * len(circuits), tasks=len(circuits))


def estimate_usage(
    circuits: Sequence[CircuitShape], shots: int, *, simulator: bool,
    rep_delay_s: Decimal = DEFAULT_REP_DELAY_S, overhead_s: Decimal = DEFAULT_JOB_OVERHEAD_QPU_S,
    safety: Decimal = SAFETY_FACTOR,
) -> Usage:
    """A conservative estimate of what running `circuits` × `shots` uses (CPU on a simulator, QPU
    time otherwise). With `safety=1` it is the model itself."""
    if simulator:
        return cpu_usage(circuits, shots, safety=safety)
    return qpu_usage(circuits, shots, rep_delay_s=rep_delay_s, overhead_s=overhead_s, safety=safety)


def shape_on_target(circuit: Any, target: Any, operations: int | None = None) -> CircuitShape:
    """Transpile `circuit` for `target` (a qiskit Target, or None for a simulator) and measure it.

    On a simulator the gates are the circuit's expanded operations: `operations` when the caller
    counted them from the text (governance/opcount.py), else counted here through the gates'
    definitions (a custom gate of 1,000 operations is 1,000, not 1) and loops' iterations.
    CPU-heavy (tens of ms): callers on an event loop run it in a thread.
    """
    from qiskit import transpile

    if target is None:
        gates = operations if operations is not None else expanded_operations(circuit)
        return CircuitShape(Decimal(0), gates, circuit.num_qubits)
    compiled = transpile(circuit, target=target, optimization_level=1, seed_transpiler=0)
    duration = Decimal(str(compiled.estimate_duration(target, unit="s")))
    return CircuitShape(duration, sum(compiled.count_ops().values()), circuit.num_qubits)


def expanded_operations(circuit: Any) -> int:
    """Operations of `circuit` with every non-library gate replaced by its definition (memoised
    per gate name and width) and every for loop by its iterations; library gates, measurements
    and barriers count 1."""
    from qiskit.circuit import ControlFlowOp, ForLoopOp
    from qiskit.circuit.library import get_standard_gate_name_mapping

    standard = set(get_standard_gate_name_mapping())
    memo: dict[tuple[str, int, int], int] = {}

    def size(body: Any) -> int:
        total = 0
        for instruction in body.data:
            op = instruction.operation
            if isinstance(op, ControlFlowOp):
                inner = sum(size(block) for block in op.blocks)
                if isinstance(op, ForLoopOp):
                    inner *= max(1, len(op.params[0]))
                total += max(1, inner)
                continue
            key = (op.name, op.num_qubits, op.num_clbits)
            if key not in memo:
                definition = None if op.name in standard else getattr(op, "definition", None)
                memo[key] = max(1, size(definition)) if definition is not None else 1
            total += memo[key]
        return total

    return size(circuit)
