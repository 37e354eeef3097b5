"""The admission decision (validate, price) with its circuit caches: a circuit's text is parsed and
transpiled once (in a pricing worker process), and what a cache returns is exactly what a fresh
assessment returns."""

from __future__ import annotations

from decimal import Decimal

import pytest

from governance import pricing
from governance.assessment import Estimate, Problem, assess
from governance.api.specs import parse_backend, parse_job

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
BROKEN = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[5];\n'
AER = parse_backend("aer", {"provider": "aer", "name": "aer_simulator", "pricing": {"perCPUSecond": "0.50"}})
MANILA = parse_backend("manila", {"provider": "fake", "name": "fake_manila", "pricing": {"perQPUSecond": "1.60"}})


def rotation(angle: float) -> str:
    return BELL.replace("h q[0];", f"h q[0];\nrz({angle}) q[1];")


@pytest.fixture(autouse=True)
def empty_caches() -> None:
    pricing.clear_caches()


class WorkerTasks:
    """How many circuits were sent to a pricing worker (parsed and shaped there) since the test began."""

    def __init__(self) -> None:
        self.start = pricing.worker_tasks

    def __len__(self) -> int:
        return pricing.worker_tasks - self.start


@pytest.fixture
def transpiles() -> WorkerTasks:
    return WorkerTasks()


def job(*texts: str, primitive: str = "sampler", **spec: object) -> object:
    body: dict[str, object] = {"backend": "x", "circuits": list(texts), "shots": 1000, "primitive": primitive, **spec}
    if primitive == "estimator":
        body.setdefault("observables", [["ZZ"]] * len(texts))
    return parse_job(body)


def test_a_repeated_circuit_is_transpiled_once_per_device_and_priced_the_same(transpiles: WorkerTasks) -> None:
    first = assess(job(BELL), MANILA, "USD")
    again = assess(job(BELL), MANILA, "USD")
    assert isinstance(first, Estimate) and first == again
    assert len(transpiles) == 1
    on_aer = assess(job(BELL), AER, "USD")  # another device model: its own shape
    assert isinstance(on_aer, Estimate) and on_aer.usage.qpu_seconds == 0 and on_aer.usage.cpu_seconds > 0
    assert len(transpiles) == 2


def test_cached_estimates_equal_fresh_ones_for_every_circuit_in_a_sweep() -> None:
    sweep = [rotation(0.1 * k) for k in range(6)]
    cached = [assess(job(text, shots=500), MANILA, "USD") for text in sweep + sweep]
    for text, estimate in zip(sweep + sweep, cached, strict=True):
        pricing.clear_caches()
        assert assess(job(text, shots=500), MANILA, "USD") == estimate
    assert all(isinstance(e, Estimate) and e.usage.qpu_seconds > Decimal(0) for e in cached)


def test_an_invalid_circuit_names_its_own_index_every_time() -> None:
    first = assess(job(BROKEN), AER, "USD")
    later = assess(job(BELL, BELL, BROKEN), AER, "USD")
    assert isinstance(first, Problem) and first.reason == "InvalidCircuit"
    assert first.message.startswith("spec.circuits[0] ")
    assert isinstance(later, Problem) and later.message.startswith("spec.circuits[2] ")


def test_the_estimator_does_not_strip_measurements_from_the_sampler_s_circuit() -> None:
    estimated = assess(job(BELL, primitive="estimator"), MANILA, "USD")
    sampled = assess(job(BELL), MANILA, "USD")  # the same text, read again from the cache
    assert isinstance(estimated, Estimate) and isinstance(sampled, Estimate), sampled
    pricing.clear_caches()
    assert assess(job(BELL), MANILA, "USD") == sampled  # measured as a fresh pricing measures it


def test_shapes_are_kept_apart_by_primitive(transpiles: WorkerTasks) -> None:
    sampled = assess(job(BELL), MANILA, "USD")
    estimated = assess(job(BELL, primitive="estimator"), MANILA, "USD")
    assert isinstance(sampled, Estimate) and isinstance(estimated, Estimate)
    assert len(transpiles) == 2  # the estimator's circuit has no measurements: it is shorter
    assert estimated.usage.qpu_seconds < sampled.usage.qpu_seconds


def test_a_huge_circuit_does_not_evict_the_others(transpiles: WorkerTasks) -> None:
    assess(job(BELL), AER, "USD")
    body = "".join(f"x q[{k % 2}];\n" for k in range(70_000))
    huge = BELL.replace("h q[0];\n", "h q[0];\n" + body)
    assert len(huge) > 500_000
    priced = assess(job(huge), AER, "USD")
    assert isinstance(priced, Estimate)
    assert len(transpiles) == 2
    assert isinstance(assess(job(BELL), AER, "USD"), Estimate)
    assert len(transpiles) == 2  # BELL is still known: it did not leave the operator


def test_a_backend_is_looked_up_in_what_is_known_then_read_once() -> None:
    """The operator (its watch) and the webhook (its list) look a backend up the same way: what
    they keep first, else one read, since a backend created a moment ago may not be kept yet; a
    backend that does not exist is None (each caller says so in its own words)."""
    from governance.assessment import backend_from_object, look_up_backend

    obj = {"spec": {"provider": "aer", "pricing": {"perCPUSecond": "0.01"}}}
    known = {"aer-sim": backend_from_object("aer-sim", obj)}
    reads: list[str] = []

    def get(name: str) -> dict | None:
        reads.append(name)
        return obj if name == "new" else None

    assert look_up_backend("aer-sim", known, get) == known["aer-sim"] and reads == []
    assert look_up_backend("new", known, get) == backend_from_object("new", obj) and reads == ["new"]
    assert look_up_backend("gone", known, get) is None and reads == ["new", "gone"]
    broken = look_up_backend("broken", {}, lambda name: {"spec": {"provider": "nope"}})
    assert isinstance(broken, Problem) and broken.reason == "InvalidBackend"
