"""A QiskitJob assessed before any money moves: validated, then priced, and which budget pays.

What the admission decision (`jobs.admission.decide_admission`: fail, refuse, queue or admit)
asks for, here so the controller, the webhook and the CLI price a job the same way.

Pure with respect to Kubernetes and the ledger: given a job spec, its backend and the unit
of the budget that pays, it returns an estimate or the first problem, each with a reason a
status condition can carry. Reserving the estimate is the ledger's job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import pricing, providers
from .api.specs import Backend, JobSpec, SpecError, parse_backend
from .budget.costmodel import Usage, amount_in_unit
from .budget.money import format_amount
from .circuits import CircuitError, digest
from .providers.base import UnknownBackendModel


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


def look_up_backend(name: str, known: Mapping[str, Backend | Problem],
                    get: Callable[[str], Mapping[str, Any] | None]) -> Backend | Problem | None:
    """The QiskitBackend `name` as admission uses it: from `known` (what a watch or a list kept),
    else from `get` (one read of the object; None when it does not exist), since a backend created
    a moment ago may not be known yet. None: there is no such QiskitBackend."""
    found = known.get(name)
    if found is not None:
        return found
    obj = get(name)
    return None if obj is None else backend_from_object(name, obj)


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


def check_parameters(values: Sequence[tuple[str, Sequence[float]]],
                     circuit_parameters: Sequence[Sequence[str]]) -> Problem | None:
    """Why spec.parameterValues cannot bind the circuits (None: it can). Every parameter of every
    circuit needs values, every name given must be some circuit's parameter, and the arrays
    broadcast as Qiskit's do: all N long, or 1 long to be used at every one of the N points."""
    given = {name for name, _ in values}
    for i, names in enumerate(circuit_parameters):
        missing = sorted(set(names) - given)
        if missing:
            return Problem("InvalidParameters", f"spec.parameterValues: circuit {i} has parameter"
                                                f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                                "with no values (give an array of numbers for each)")
    used = {name for names in circuit_parameters for name in names}
    unknown = sorted(given - used)
    if unknown:
        return Problem("InvalidParameters", f"spec.parameterValues: {', '.join(unknown)} "
                                            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
                                            f"of any circuit (their parameters: {', '.join(sorted(used)) or 'none'})")
    lengths = {len(array) for _, array in values} - {1}
    if len(lengths) > 1:
        described = ", ".join(f"{name} has {len(array)}" for name, array in values)
        return Problem("InvalidParameters", f"spec.parameterValues: the arrays do not broadcast ({described}): "
                                            "each must have the same length N, or length 1 to be used at every point")
    return None


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
    size_limits = pricing.Limits.from_env()
    keys = [digest(source) for source in job.circuits]
    try:
        counts = [pricing.count(i, source, key) for i, (source, key) in enumerate(zip(job.circuits, keys, strict=True))]
        for i, counted in enumerate(counts):
            pricing.check_size(i, counted, size_limits)
        total = sum(c.operations for c in counts)
        if total > size_limits.max_operations:
            return Problem("TooManyOperations", f"spec.circuits: the {len(counts)} circuits expand to {total} "
                                                f"operations, above the limit of {size_limits.max_operations} "
                                                "(QGOV_MAX_EXPANDED_OPERATIONS)")
        capacity = provider.max_qubits(backend)
        model = provider.device_model(backend)
        facts: list[pricing.Facts | None] = []
        transpile_error = None
        for i, (source, key, counted) in enumerate(zip(job.circuits, keys, counts, strict=True)):
            try:
                facts.append(pricing.circuit_facts(i, source, key, model, job.primitive, capacity,
                                                   counted.operations, size_limits))
            except pricing.TranspileError as exc:  # after the other checks, as a transpile came last
                transpile_error = transpile_error or exc
                facts.append(None)
    except CircuitError as exc:
        return Problem("InvalidCircuit", str(exc))
    except pricing.OverLimit as exc:
        return Problem(exc.reason, exc.message)
    except UnknownBackendModel as exc:
        return Problem("UnknownBackend", f"backend {backend.name}: {exc}")
    for i, circuit in enumerate(facts):
        if circuit is None:
            continue
        if circuit.qubits > capacity:
            return Problem("TooManyQubits", f"spec.circuits[{i}]: {circuit.qubits} qubits, backend "
                                            f"{backend.name} has {capacity}")
        if job.primitive == "sampler" and circuit.clbits == 0:
            return Problem("NoMeasurements", f"spec.circuits[{i}]: the sampler needs measurements; the circuit "
                                             "measures nothing")
        if job.primitive == "estimator":
            for j, pauli in enumerate(job.observables[i]):
                if len(pauli) != circuit.qubits:
                    return Problem("InvalidObservable", f"spec.observables[{i}][{j}]: {pauli!r} has {len(pauli)} "
                                                        f"terms, circuit {i} has {circuit.qubits} qubits")
    if all(circuit is not None for circuit in facts):
        unbindable = check_parameters(job.parameter_values, [c.parameters for c in facts if c is not None])
        if unbindable is not None:
            return unbindable
    if transpile_error is not None:
        return Problem("TranspileFailed", f"cannot transpile for {backend.name}: {transpile_error}")
    # a sweep runs each circuit once per point: priced as the bound circuits it makes
    shapes = [circuit.shape for circuit in facts if circuit is not None and circuit.shape is not None] * job.bindings
    usage = provider.estimate(shapes, job.shots)
    try:
        amount = amount_in_unit(usage, backend.prices, unit)
    except ValueError as exc:
        return Problem("CurrencyMismatch", str(exc))
    estimate = Estimate(usage, amount, unit, max(c.qubits for c in facts if c is not None))
    if job.max_cost_micro is not None and amount > job.max_cost_micro:
        return Problem("MaxCostExceeded", f"estimated {estimate.describe()} is above spec.maxCost "
                                          f"{format_amount(job.max_cost_micro, unit)}")
    return estimate


def modelled_usage(job: JobSpec, backend: Backend) -> Usage:
    """What the fake provider reports as the QPU time of a run: the model without its margin."""
    return providers.of(backend).modelled_usage(job, backend)
