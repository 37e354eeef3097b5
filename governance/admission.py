"""The admission decision for a QiskitJob, before any money moves: validate, then price.

Pure with respect to Kubernetes and the ledger: given a job spec, its backend and the unit
of the budget that pays, it returns an estimate or the first problem, each with a reason a
status condition can carry. Reserving the estimate is the ledger's job.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from collections.abc import Mapping

from . import providers
from .api.specs import Backend, JobSpec, SpecError, parse_backend
from .budget.costmodel import Usage, amount_in_unit
from .budget.money import format_amount
from .circuits import CircuitError, digest, shared_circuit
from .providers.base import Provider, UnknownBackendModel
from .providers.estimate import CircuitShape, shape_on_target


@dataclass(frozen=True)
class Problem:
    reason: str  # CamelCase, for conditions and Events
    message: str


@dataclass(frozen=True)
class Estimate:
    usage: Usage
    amount_micro: int  # in the budget's unit
    unit: str
    qubits: int

    def describe(self) -> str:
        return format_amount(self.amount_micro, self.unit)


def backend_from_object(name: str, obj: Mapping[str, Any]) -> Backend | Problem:
    """A QiskitBackend object as admission uses it, or why it cannot be used."""
    try:
        return parse_backend(name, obj.get("spec") or {})
    except SpecError as exc:
        return Problem("InvalidBackend", f"QiskitBackend {name}: {exc}")


def unknown_backend(name: str) -> Problem:
    return Problem("UnknownBackend", f"spec.backend: no QiskitBackend named {name!r} "
                                     "(see `kubectl get qiskitbackends`)")


def choose_budget(namespace: str, wanted: str | None, budgets: Mapping[str, str],
                  allow_unbudgeted: bool) -> tuple[str, str] | Problem | None:
    """(name, unit) of the budget that pays, among the namespace's `budgets` (name -> unit);
    None when the namespace has none and unbudgeted work is allowed."""
    if wanted:
        if wanted not in budgets:
            return Problem("UnknownBudget", f"spec.budget: no QiskitBudget {wanted!r} in namespace {namespace!r}"
                                            + (f" (budgets here: {', '.join(sorted(budgets))})" if budgets else ""))
        return wanted, budgets[wanted]
    if len(budgets) == 1:
        return next(iter(budgets.items()))
    if budgets:
        return Problem("AmbiguousBudget", f"namespace {namespace!r} has budgets {', '.join(sorted(budgets))}: "
                                          "set spec.budget to the one that pays")
    if allow_unbudgeted:
        return None
    return Problem("NoBudget", f"namespace {namespace!r} has no QiskitBudget, so no quantum work is admitted "
                               f"here: create one, e.g. `kubectl apply -n {namespace} -f samples/budget.yaml` "
                               "(kind: QiskitBudget, spec.limit: \"10.00\")")


def assess(job: JobSpec, backend: Backend, unit: str) -> Estimate | Problem:
    """Validate the job against its backend and estimate what it will cost: its provider says how
    many qubits the backend has, which device model to transpile for and what the circuits use."""
    provider = providers.of(backend)
    limits = backend.limits
    if limits.max_circuits and len(job.circuits) > limits.max_circuits:
        return Problem("TooManyCircuits", f"spec.circuits: {len(job.circuits)} circuits, backend {backend.name} "
                                          f"accepts at most {limits.max_circuits}")
    if limits.max_shots and job.shots > limits.max_shots:
        return Problem("TooManyShots", f"spec.shots: {job.shots} shots, backend {backend.name} accepts at most "
                                       f"{limits.max_shots}")
    keys = [digest(source) for source in job.circuits]
    try:
        circuits = [shared_circuit(i, source, key) for i, (source, key) in enumerate(zip(job.circuits, keys))]
        capacity = provider.max_qubits(backend)
    except CircuitError as exc:
        return Problem("InvalidCircuit", str(exc))
    except UnknownBackendModel as exc:
        return Problem("UnknownBackend", f"backend {backend.name}: {exc}")
    for i, circuit in enumerate(circuits):
        if circuit.num_qubits > capacity:
            return Problem("TooManyQubits", f"spec.circuits[{i}]: {circuit.num_qubits} qubits, backend "
                                            f"{backend.name} has {capacity}")
        if job.primitive == "sampler" and circuit.num_clbits == 0:
            return Problem("NoMeasurements", f"spec.circuits[{i}]: the sampler needs measurements; the circuit "
                                             "measures nothing")
        if job.primitive == "estimator":
            for j, pauli in enumerate(job.observables[i]):
                if len(pauli) != circuit.num_qubits:
                    return Problem("InvalidObservable", f"spec.observables[{i}][{j}]: {pauli!r} has {len(pauli)} "
                                                        f"terms, circuit {i} has {circuit.num_qubits} qubits")
    try:
        shapes = [_shape(key, circuit, provider, backend, job.primitive) for key, circuit in zip(keys, circuits)]
    except Exception as exc:  # noqa: BLE001 - the transpiler's many error types
        return Problem("TranspileFailed", f"cannot transpile for {backend.name}: {' '.join(str(exc).split())}")
    usage = provider.estimate(shapes, job.shots)
    try:
        amount = amount_in_unit(usage, backend.prices, unit)
    except ValueError as exc:
        return Problem("CurrencyMismatch", str(exc))
    estimate = Estimate(usage, amount, unit, max(c.num_qubits for c in circuits))
    if job.max_cost_micro is not None and amount > job.max_cost_micro:
        return Problem("MaxCostExceeded", f"estimated {estimate.describe()} is above spec.maxCost "
                                          f"{format_amount(job.max_cost_micro, unit)}")
    return estimate


_shapes: LRUCache[tuple[bytes, str, str], CircuitShape] = LRUCache(maxsize=65536)
_shapes_lock = threading.Lock()


def _shape(key: bytes, circuit: Any, provider: Provider, backend: Backend, primitive: str) -> CircuitShape:
    """A circuit's shape on the backend's device model. Transpiling for a device takes tens of ms
    per circuit, and the same text is priced again and again (a sweep's repeats, a restarted
    operator's replay), so shapes are kept by (text, device model (else provider), primitive)."""
    cache_key = (key, provider.device_model(backend) or provider.name, primitive)
    with _shapes_lock:
        shape = _shapes.get(cache_key)
    if shape is None:
        measured = circuit.remove_final_measurements(inplace=False) if primitive == "estimator" else circuit
        shape = shape_on_target(measured, provider.target(backend))
        with _shapes_lock:
            _shapes[cache_key] = shape
    return shape


def modelled_usage(job: JobSpec, backend: Backend) -> Usage:
    """What the fake provider reports as the QPU time of a run: the model without its margin."""
    return providers.of(backend).modelled_usage(job, backend)
