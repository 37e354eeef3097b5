"""Running a job's circuits on qiskit-aer, noiseless or with a device model's noise: the executor's
path for the local providers (aer, fake)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .types import RunOutcome

if TYPE_CHECKING:
    from ..api.specs import JobSpec


def simulate(job: JobSpec, circuits: list[Any], model: Any | None) -> RunOutcome:
    """Sample or estimate on Aer (with `model`'s noise when given); usage is the CPU time it took."""
    from qiskit import transpile
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import EstimatorV2

    simulator = AerSimulator.from_backend(model) if model is not None else AerSimulator()
    cpu0 = time.process_time()
    results: list[dict[str, Any]] = []
    points = [job.binding(j) for j in range(job.bindings)] if job.parameter_values else [{}]
    if job.primitive == "sampler":
        compiled = transpile(circuits, simulator, optimization_level=1, seed_transpiler=0)  # once, for every point
        bound = [bind(c, point) for c in compiled for point in points]
        counts = simulator.run(bound, shots=job.shots).result().get_counts()
        counts = counts if isinstance(counts, list) else [counts]
        results = [{"counts": dict(sorted(c.items()))} for c in counts]
    else:
        options: dict[str, Any] = {"default_precision": 1 / job.shots ** 0.5}
        if model is not None:
            from qiskit_aer.noise import NoiseModel

            options["backend_options"] = {"noise_model": NoiseModel.from_backend(model)}
        estimator = EstimatorV2(options=options)
        pubs = []
        for circuit, observables in zip(circuits, job.observables, strict=True):
            bare = circuit.remove_final_measurements(inplace=False)
            for point in points:
                pubs.append((bind(bare, point), [SparsePauliOp(p) for p in observables]))
        for pub in estimator.run(pubs).result():
            results.append({"expectationValues": [float(x) for x in pub.data.evs],
                            "stds": [float(x) for x in pub.data.stds]})
    cpu = Decimal(str(round(time.process_time() - cpu0, 6)))
    runs = len(circuits) * len(points)
    usage = {"cpuSeconds": str(cpu), "shots": str(job.shots * runs), "tasks": str(runs)}
    return RunOutcome(per_circuit(results, points, job.parameter_values != ()), usage)


def bind(circuit: Any, point: dict[str, float]) -> Any:
    """`circuit` with its parameters set to one point of a sweep (by name; a circuit binds only its own)."""
    if not point or not circuit.parameters:
        return circuit
    return circuit.assign_parameters({p: point[p.name] for p in circuit.parameters})


def per_circuit(flat: list[dict[str, Any]], points: list[dict[str, float]], sweep: bool) -> list[dict[str, Any]]:
    """Results in circuit order; with a sweep each circuit's are its points', under "bindings", each
    with the values it was bound to."""
    if not sweep:
        return flat
    n = len(points)
    return [{"bindings": [{"parameters": points[j], **flat[i * n + j]} for j in range(n)]}
            for i in range(len(flat) // n)]
