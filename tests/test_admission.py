"""The admission decision (validate, price) with its circuit caches: a circuit's text is parsed and
transpiled once, and what a cache returns is exactly what a fresh assessment returns."""

from __future__ import annotations

from decimal import Decimal

import pytest

from governance import admission, circuits
from governance.admission import Estimate, Problem, assess
from governance.api.specs import parse_backend, parse_job
from governance.providers import estimate as estimates

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
BROKEN = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[5];\n'
AER = parse_backend("aer", {"provider": "aer", "name": "aer_simulator", "pricing": {"perCPUSecond": "0.50"}})
MANILA = parse_backend("manila", {"provider": "fake", "name": "fake_manila", "pricing": {"perQPUSecond": "1.60"}})


def rotation(angle: float) -> str:
    return BELL.replace("h q[0];", f"h q[0];\nrz({angle}) q[1];")


@pytest.fixture(autouse=True)
def empty_caches() -> None:
    with circuits._parsed_lock:
        circuits._parsed.clear()
    with admission._shapes_lock:
        admission._shapes.clear()


@pytest.fixture
def transpiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The real shape_on_target, with a record of each circuit it measured."""
    calls: list[str] = []
    real = estimates.shape_on_target

    def recording(circuit, target):  # type: ignore[no-untyped-def]
        calls.append(circuit.name)
        return real(circuit, target)

    monkeypatch.setattr(admission, "shape_on_target", recording)
    return calls


def job(*texts: str, primitive: str = "sampler", **spec: object) -> object:
    body: dict[str, object] = {"backend": "x", "circuits": list(texts), "shots": 1000, "primitive": primitive, **spec}
    if primitive == "estimator":
        body.setdefault("observables", [["ZZ"]] * len(texts))
    return parse_job(body)


def test_a_repeated_circuit_is_transpiled_once_per_device_and_priced_the_same(transpiles: list[str]) -> None:
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
    for text, estimate in zip(sweep + sweep, cached):
        with admission._shapes_lock:
            admission._shapes.clear()
        with circuits._parsed_lock:
            circuits._parsed.clear()
        assert assess(job(text, shots=500), MANILA, "USD") == estimate
    assert all(isinstance(e, Estimate) and e.usage.qpu_seconds > Decimal(0) for e in cached)


def test_an_invalid_circuit_names_its_own_index_every_time() -> None:
    first = assess(job(BROKEN), AER, "USD")
    later = assess(job(BELL, BELL, BROKEN), AER, "USD")
    assert isinstance(first, Problem) and first.reason == "InvalidCircuit"
    assert first.message.startswith("spec.circuits[0] ")
    assert isinstance(later, Problem) and later.message.startswith("spec.circuits[2] ")


def test_the_estimator_does_not_strip_measurements_from_the_shared_circuit() -> None:
    assert isinstance(assess(job(BELL, primitive="estimator"), MANILA, "USD"), Estimate)
    sampled = assess(job(BELL), MANILA, "USD")  # the same text, read again from the cache
    assert isinstance(sampled, Estimate), sampled
    assert circuits.shared_circuit(0, BELL).num_clbits == 2
    assert "measure" in circuits.shared_circuit(0, BELL).count_ops()


def test_shapes_are_kept_apart_by_primitive(transpiles: list[str]) -> None:
    sampled = assess(job(BELL), MANILA, "USD")
    estimated = assess(job(BELL, primitive="estimator"), MANILA, "USD")
    assert isinstance(sampled, Estimate) and isinstance(estimated, Estimate)
    assert len(transpiles) == 2  # the estimator's circuit has no measurements: it is shorter
    assert estimated.usage.qpu_seconds < sampled.usage.qpu_seconds


def test_a_huge_circuit_is_not_cached_and_does_not_evict_the_others() -> None:
    assess(job(BELL), AER, "USD")
    body = "".join(f"x q[{k % 2}];\n" for k in range(circuits.CACHED_SOURCE_CHARS // 16 // 8 + 10))
    huge = BELL.replace("h q[0];\n", "h q[0];\n" + body)
    assert len(huge) > circuits.CACHED_SOURCE_CHARS // 16
    assert isinstance(assess(job(huge), AER, "USD"), Estimate)
    with circuits._parsed_lock:
        kept = list(circuits._parsed.keys())
    assert kept == [circuits.digest(BELL)]
