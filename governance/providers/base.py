"""What every provider answers: its limits and validation, its estimate, what its executor needs,
and how the usage an executor reports becomes cost. One subclass per provider (aer.py, fake.py,
ibm/); the registry (__init__.py) maps a QiskitBackend's spec.provider to one.

Pure: no kopf, kubernetes or sqlalchemy (the executor image imports this); qiskit is imported
only by the methods that transpile or run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from ..budget.costmodel import PriceList, Usage, amount_in_unit
from ..budget.money import format_quantity
from .estimate import SAFETY_FACTOR, CircuitShape
from .types import ExecutorNeeds, ExecutorSession, RunOutcome, RunRefusal, UnknownBackendModel

if TYPE_CHECKING:
    from ..api.specs import Backend, JobSpec

__all__ = ["AER_DEFAULT_MAX_QUBITS", "ExecutorNeeds", "ExecutorSession", "Provider", "RunOutcome", "RunRefusal",
           "UnknownBackendModel"]

AER_DEFAULT_MAX_QUBITS = 28  # a statevector of 2^28 amplitudes is 4 GiB: the most a dev box should try


class Provider:
    """The defaults describe a local, noiseless simulator charged CPU-seconds; providers override."""

    name: ClassVar[str]
    simulator: ClassVar[bool] = False  # charged CPU time (True) or QPU time (False)
    remote_sessions: ClassVar[bool] = False  # sessions are opened at a remote service (else a local runner)
    session_modes: ClassVar[tuple[str, ...]] = ("batch",)  # the session modes it honours; the first is the default
    needs_session: ClassVar[bool] = False  # every job runs in a session (an automatic batch when none is named)
    needs_credentials: ClassVar[bool] = False  # sessions and jobs authenticate with a credentials Secret
    price_preset: ClassVar[PriceList] = PriceList()  # what the service charges, for samples and demos

    # ---------------------------------------------------------------- the backend's spec
    def model(self, backend_name: str, requested: str) -> str:
        """The spec.model a Backend keeps (the device twin estimates are made on, if the provider has one)."""
        return requested

    def check(self, spec: Mapping[str, Any]) -> None:
        """Provider-specific checks of a QiskitBackend spec; raise SpecError with its field path."""

    def model_field(self, spec: Mapping[str, Any]) -> str:
        """The spec field an UnknownBackendModel is about."""
        return "spec.name"

    # ---------------------------------------------------------------- limits and the estimate
    def device_model(self, backend: Backend) -> str | None:
        """The fake_provider model that stands for the device, None for a noiseless simulator."""
        return None

    def max_qubits(self, backend: Backend) -> int:
        name = self.device_model(backend)
        if name:
            from .devices import fake_backend

            model: int = fake_backend(name).num_qubits
            return min(model, backend.limits.max_qubits or model)
        return backend.limits.max_qubits or AER_DEFAULT_MAX_QUBITS

    def target(self, backend: Backend) -> Any:
        """The Target that durations are estimated on; None for a noiseless simulator."""
        name = self.device_model(backend)
        if not name:
            return None
        from .devices import fake_backend

        return fake_backend(name).target

    def estimate(self, shapes: Sequence[CircuitShape], shots: int, *, safety: Decimal = SAFETY_FACTOR) -> Usage:
        """What running `shapes` × `shots` uses, `safety` above the model."""
        from .estimate import cpu_usage, qpu_usage

        if self.simulator:
            return cpu_usage(shapes, shots, safety=safety)
        return qpu_usage(shapes, shots, safety=safety)

    def modelled_usage(self, job: JobSpec, backend: Backend) -> Usage:
        """What the run uses by the model itself, without its margin (what `fake` reports as QPU time)."""
        from ..circuits import parse_circuits
        from .estimate import shape_on_target

        target = self.target(backend)
        shapes = [shape_on_target(c, target) for c in parse_circuits(job.circuits)] * job.bindings  # a sweep's points
        return self.estimate(shapes, job.shots, safety=Decimal(1))

    def describe_usage(self, usage: Usage, backend: Backend) -> str:
        """What an estimate is made of, in the backend's own terms."""
        if self.simulator:
            return f"{format_quantity(usage.cpu_seconds)} CPU-s on {backend.backend_name}"
        return f"{format_quantity(usage.qpu_seconds)} QPU-s on {backend.backend_name}"

    # ---------------------------------------------------------------- what is charged
    # Where an attempt's charged usage comes from (README, "Who decides what is charged"): never
    # from anything a namespace member can write (the job's status, a pod's termination message,
    # a runner's report), which is shown at most.
    usage_source: ClassVar[str] = "the model's usage of the admitted circuits (no safety margin), computed by the operator"
    metered: ClassVar[bool] = False  # the service meters each job; the operator reads the meter (charged_usage)

    def model_of_estimate(self, estimate: Usage) -> Usage:
        """The model's usage of the priced circuits, without the safety margin the estimate added:
        what the operator records at admission (the ledger's job_money) and charges from."""
        from .estimate import SAFETY_FACTOR

        return Usage(qpu_seconds=Decimal(format_quantity(estimate.qpu_seconds / SAFETY_FACTOR)),
                     cpu_seconds=Decimal(format_quantity(estimate.cpu_seconds / SAFETY_FACTOR)),
                     shots=estimate.shots, tasks=estimate.tasks)

    def charged_usage(self, modelled: Usage, metered: Usage | None, succeeded: bool) -> Usage | None:
        """What an ended attempt is charged for: `modelled` is the model's usage of the admitted
        circuits (the ledger's), `metered` what the service's meter says for the attempt's remote
        job, read by the operator and checked to be this job's (None: none, or no meter). A local
        provider charges a succeeded attempt the model; a failed one, nothing (None)."""
        return modelled if succeeded else None

    # ---------------------------------------------------------------- usage -> cost
    def usage_from_report(self, report: Mapping[str, Any]) -> Usage:
        """An executor's usage report (decimal strings) as a Usage."""
        return Usage(qpu_seconds=Decimal(report.get("qpuSeconds", "0")),
                     cpu_seconds=Decimal(report.get("cpuSeconds", "0")),
                     shots=int(report.get("shots", 0)), tasks=int(report.get("tasks", 0)))

    def cost(self, report: Mapping[str, Any], prices: PriceList, unit: str) -> int:
        """What a reported usage costs in a budget's `unit` (micro-units), rounded up."""
        return amount_in_unit(self.usage_from_report(report), prices, unit)

    def session_cost(self, seconds: int, prices: PriceList, unit: str) -> int:
        """What `seconds` of a dedicated session's wall-clock time cost (billed as QPU time)."""
        return amount_in_unit(Usage(qpu_seconds=Decimal(seconds)), prices, unit)

    def session_mode(self, requested: str | None) -> str:
        """The mode a session of this provider runs in: the requested one if honoured, else the default."""
        return requested if requested in self.session_modes else self.session_modes[0]

    # ---------------------------------------------------------------- the executor
    def executor_needs(self, session: ExecutorSession | None) -> ExecutorNeeds:
        """Env, volumes and mounts an executor pod needs (a remote session's token, say)."""
        return ExecutorNeeds()

    def run(self, job: JobSpec, backend: Backend, circuits: list[Any]) -> RunOutcome:
        """Run the job's circuits (inside the executor pod)."""
        from .simulate import simulate

        return simulate(job, circuits, None)
