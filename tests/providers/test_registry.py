"""Adding a provider is one module and one registration: a provider defined here, in the test,
and registered, is parsed, validated, priced and run by the unchanged admission, spec parsing and
executor code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from executor.attempt import DeterministicError, run_attempt, run_job
from governance import providers
from governance.assessment import Estimate, Problem, assess, backend_from_object
from governance.api.specs import Backend, JobSpec, SpecError, parse_backend, parse_job
from governance.budget.costmodel import Usage
from governance.providers.base import Provider, RunOutcome, RunRefusal
from governance.providers.estimate import SAFETY_FACTOR, CircuitShape

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
WIDE = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[5];\ncreg c[5];\nmeasure q -> c;\n'


class TaskQueueProvider(Provider):
    """A remote 4-qubit device that bills per task and shot and needs its region named."""

    name: ClassVar[str] = "taskqueue"

    def check(self, spec: Mapping[str, Any]) -> None:
        if spec.get("region") not in ("eu", "us"):
            raise SpecError("spec.region", f"{spec.get('region')!r} is not one of eu, us")

    def max_qubits(self, backend: Backend) -> int:
        return min(4, backend.limits.max_qubits or 4)

    def estimate(self, shapes: Sequence[CircuitShape], shots: int, *, safety: Decimal = SAFETY_FACTOR) -> Usage:
        return Usage(shots=shots * len(shapes), tasks=len(shapes))

    def run(self, job: JobSpec, backend: Backend, circuits: list[Any]) -> RunOutcome:
        if job.shots > 1000:
            raise RunRefusal("the queue is full; try later", deterministic=False, reason="QueueFull")
        return RunOutcome([{"counts": {"0" * c.num_clbits: job.shots}} for c in circuits],
                          {"shots": str(job.shots * len(circuits)), "tasks": str(len(circuits))},
                          {"queue": "q-7"})


SPEC = {"provider": "taskqueue", "name": "tq-1", "region": "eu", "pricing": {"perTask": "0.25", "perShot": "0.0001"}}


@pytest.fixture
def registered() -> Iterator[Provider]:
    provider = providers.register(TaskQueueProvider())
    yield provider
    providers.unregister("taskqueue")


def test_a_registered_provider_is_parsed_validated_and_priced_through_assess(registered: Provider) -> None:
    backend = parse_backend("tq", SPEC)
    assert backend.provider == "taskqueue" and providers.of(backend) is registered
    job = parse_job({"backend": "tq", "circuits": [BELL, BELL], "shots": 2000})
    estimate = assess(job, backend, "USD")
    # 2 tasks × 0.25 + 4000 shots × 0.0001, exactly
    assert estimate == Estimate(Usage(shots=4000, tasks=2), 900_000, "USD", 2)
    assert estimate.describe() == "0.90 USD"  # type: ignore[union-attr]
    # the generic checks hold for it, with its own limits and the job's field paths
    assert assess(parse_job({"backend": "tq", "circuits": [WIDE]}), backend, "USD") == Problem(
        "TooManyQubits", "spec.circuits[0]: 5 qubits, backend tq has 4")
    capped = parse_job({"backend": "tq", "circuits": [BELL], "shots": 2000, "maxCost": "0.40"})
    assert assess(capped, backend, "USD") == Problem("MaxCostExceeded",
                                                     "estimated 0.45 USD is above spec.maxCost 0.40 USD")
    # what an executor reports becomes cost the same way
    assert registered.cost({"shots": "4000", "tasks": "2"}, backend.prices, "USD") == 900_000


def test_a_registered_providers_own_validation_has_its_field_path(registered: Provider) -> None:
    with pytest.raises(SpecError, match=r"^spec.region: 'mars' is not one of eu, us$"):
        parse_backend("tq", {**SPEC, "region": "mars"})
    assert backend_from_object("tq", {"spec": {**SPEC, "region": None}}) == Problem(
        "InvalidBackend", "QiskitBackend tq: spec.region: None is not one of eu, us")
    # and an unknown provider's message lists it with the built-in ones
    with pytest.raises(SpecError, match=r"is not one of aer, fake, ibm, taskqueue$"):
        parse_backend("x", {"provider": "nope"})


def test_the_executor_runs_a_registered_provider(registered: Provider) -> None:
    job = {"metadata": {"name": "j", "generation": 1}, "status": {"admittedGeneration": 1},
           "spec": {"backend": "tq", "circuits": [BELL], "shots": 10}}
    document, usage = run_job(job, {"metadata": {"name": "tq"}, "spec": SPEC})
    assert document["circuits"] == [{"counts": {"00": 10}}]
    assert {k: v for k, v in document["metadata"].items() if k != "wallSeconds"} == {
        "backend": "tq", "provider": "taskqueue", "model": "tq-1", "primitive": "sampler", "shots": 10,
        "queue": "q-7"}
    assert usage == {"shots": "10", "tasks": "1"}
    with pytest.raises(DeterministicError, match="spec.region"):
        run_job(job, {"metadata": {"name": "tq"}, "spec": {**SPEC, "region": "mars"}})


def test_a_registered_providers_refusal_reaches_the_attempts_report(registered: Provider) -> None:
    job = {"metadata": {"name": "j", "generation": 1}, "status": {"admittedGeneration": 1},
           "spec": {"backend": "tq", "circuits": [BELL], "shots": 5000}}
    report, code = run_attempt(None, job, {"metadata": {"name": "tq"}, "spec": SPEC}, attempt=1)
    assert (report, code) == ({"error": "the queue is full; try later", "deterministic": False,
                               "reason": "QueueFull"}, 1)  # exit 1: the operator may retry


def test_without_its_registration_the_provider_is_unknown() -> None:
    with pytest.raises(SpecError, match=r"^spec.provider: 'taskqueue' is not one of aer, fake, ibm$"):
        parse_backend("tq", SPEC)
