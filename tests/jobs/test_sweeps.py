"""Parameter sweeps (spec.parameterValues): what admission refuses, with the parameter or the lengths
named, and what a sweep costs: the bound circuits it makes, circuits x points, as the webhook and the
operator both price it (the same assessment.assess)."""

from __future__ import annotations

import pytest

from governance import pricing
from governance.assessment import Estimate, Problem, assess, check_parameters
from governance.api.specs import SpecError, parse_backend, parse_job
from governance.providers.simulate import simulate
from governance.circuits import parse_circuits

SWEPT = ('OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float[64] theta;\nqubit[2] q;\nbit[2] c;\n'
         'h q[0];\nrz(theta) q[0];\ncx q[0], q[1];\nc = measure q;\n')
AER = parse_backend("aer", {"provider": "aer", "name": "aer_simulator", "pricing": {"perCPUSecond": "0.50"}})
MANILA = parse_backend("manila", {"provider": "fake", "name": "fake_manila", "pricing": {"perQPUSecond": "1.60"}})


@pytest.fixture(autouse=True)
def empty_caches() -> None:
    pricing.clear_caches()


def job(**fields: object):
    return parse_job({"backend": "aer", "circuits": [SWEPT], "shots": 100, **fields})


def test_every_parameter_needs_values() -> None:
    problem = check_parameters((), [("theta",)])
    assert problem == Problem("InvalidParameters", "spec.parameterValues: circuit 0 has parameter theta with no "
                                                   "values (give an array of numbers for each)")


def test_a_name_no_circuit_has_is_refused() -> None:
    problem = check_parameters((("phi", (1.0,)), ("theta", (0.0,))), [("theta",)])
    assert problem is not None and problem.reason == "InvalidParameters"
    assert "phi is not a parameter of any circuit (their parameters: theta)" in problem.message


def test_arrays_broadcast_as_qiskit_does() -> None:
    assert check_parameters((("a", (1.0, 2.0, 3.0)), ("b", (5.0,))), [("a", "b")]) is None
    problem = check_parameters((("a", (1.0, 2.0, 3.0)), ("b", (5.0, 6.0))), [("a", "b")])
    assert problem is not None and problem.reason == "InvalidParameters"
    assert "do not broadcast (a has 3, b has 2)" in problem.message


def test_the_spec_refuses_what_is_not_numbers() -> None:
    with pytest.raises(SpecError, match=r"spec.parameterValues.theta\[1\]: must be a finite number"):
        job(parameterValues={"theta": [0.1, "x"]})
    with pytest.raises(SpecError, match="spec.parameterValues.theta: must be a non-empty array"):
        job(parameterValues={"theta": []})


def test_admission_refuses_an_unbound_circuit_and_charges_nothing() -> None:
    problem = assess(job(), AER, "USD")
    assert isinstance(problem, Problem) and problem.reason == "InvalidParameters"
    assert "theta" in problem.message


@pytest.mark.parametrize("backend", [AER, MANILA], ids=["aer", "fake"])
def test_a_sweep_is_priced_as_its_bound_circuits(backend) -> None:
    points = [i / 10 for i in range(20)]
    sweep = assess(job(parameterValues={"theta": points}), backend, "USD")
    bound = [SWEPT.replace("input float[64] theta;\n", "").replace("rz(theta)", f"rz({p})") for p in points]
    twenty = assess(parse_job({"backend": "aer", "circuits": bound, "shots": 100}), backend, "USD")
    assert isinstance(sweep, Estimate) and isinstance(twenty, Estimate)
    assert sweep.usage.tasks == 20 and sweep.usage.shots == 2000
    assert sweep.amount_micro == twenty.amount_micro
    one = assess(job(parameterValues={"theta": [0.5]}), backend, "USD")
    assert isinstance(one, Estimate) and one.usage.tasks == 1 and one.amount_micro < sweep.amount_micro


def test_the_charged_model_counts_the_points_too() -> None:
    from governance import providers

    spec = job(parameterValues={"theta": [0.0, 1.0, 2.0]})
    assert providers.of(MANILA).modelled_usage(spec, MANILA).tasks == 3


def test_a_sweep_runs_every_point_with_its_values() -> None:
    spec = job(parameterValues={"theta": [0.0, 3.141592653589793]})
    outcome = simulate(spec, parse_circuits(spec.circuits), None)
    assert outcome.usage["tasks"] == "2" and outcome.usage["shots"] == "200"
    [circuit] = outcome.results
    assert [p["parameters"] for p in circuit["bindings"]] == [{"theta": 0.0}, {"theta": 3.141592653589793}]
    for point in circuit["bindings"]:
        assert set(point["counts"]) <= {"00", "11"} and sum(point["counts"].values()) == 100


def test_an_estimator_sweep_gives_qiskit_shaped_values_per_point() -> None:
    """The estimator binds each point too, and governance.qiskit shapes what it wrote as Qiskit does:
    <Z> after rx(theta) is cos(theta); an observable with coefficients sums its terms."""
    import math

    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.primitives.containers.estimator_pub import EstimatorPub
    from qiskit.quantum_info import SparsePauliOp

    from governance.qiskit import _estimator_result

    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.rx(theta, 0)
    points = [0.0, math.pi / 2, math.pi]
    pub = EstimatorPub.coerce((circuit, [[SparsePauliOp("Z")], [SparsePauliOp.from_list([("Z", 2), ("X", 1)])]],
                               [[p] for p in points]), 0.01)
    assert pub.shape == (2, 3)
    rotation = ('OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float[64] theta;\nqubit[1] q;\nrx(theta) q[0];\n')
    spec = parse_job({"backend": "aer", "circuits": [rotation], "primitive": "estimator", "shots": 10_000,
                      "observables": [["X", "Z"]], "parameterValues": {"theta": points}})
    assert isinstance(assess(spec, AER, "USD"), Estimate)
    outcome = simulate(spec, parse_circuits(spec.circuits), None)
    result = _estimator_result([pub], [["X", "Z"]], {"circuits": outcome.results}, {})
    evs = result[0].data.evs
    assert evs.shape == (2, 3)
    for j, p in enumerate(points):
        assert abs(evs[0, j] - math.cos(p)) < 0.05 and abs(evs[1, j] - 2 * math.cos(p)) < 0.1


def test_a_parameter_vector_is_swept_under_names_openqasm_3_keeps() -> None:
    """Qiskit's exporter renames θ[0] (and keywords); the QiskitJob a Sampler makes names its inputs
    exactly, so admission binds them."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter, ParameterVector

    from governance.qiskit import _job_body

    angles = ParameterVector("θ", 2)
    circuit = QuantumCircuit(1)
    circuit.rx(angles[0], 0)
    circuit.ry(angles[1], 0)
    circuit.rz(Parameter("phi"), 0)
    circuit.measure_all()
    body = _job_body("t", "aer", "sampler", [circuit], 10, {"θ[0]": [0.0, 1.0], "θ[1]": [2.0], "phi": [3.0]},
                     None, None)
    assert body["spec"]["parameterValues"] == {"qgov_p1": [0.0, 1.0], "qgov_p2": [2.0], "phi": [3.0]}
    estimate = assess(parse_job(body["spec"]), AER, "USD")
    assert isinstance(estimate, Estimate) and estimate.usage.tasks == 2


def test_each_classical_register_has_its_own_counts() -> None:
    """result[0].data.<register> per register, as Qiskit's sampler gives it, from the executor's
    space-separated keys (the last register first)."""
    from qiskit import QuantumCircuit
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    from governance.qiskit import _job_body, _sampler_result

    circuit = QuantumCircuit(2, 1)
    circuit.x(1)
    circuit.measure(0, 0)  # register c: always 0
    circuit.measure_all()  # register meas: q1 set, so "10"
    body = _job_body("t", "aer", "sampler", [circuit], 50, {}, None, None)
    spec = parse_job(body["spec"])
    outcome = simulate(spec, parse_circuits(spec.circuits), None)
    result = _sampler_result([SamplerPub.coerce(circuit, 50)], {"circuits": outcome.results}, {})
    assert result[0].data.c.get_counts() == {"0": 50} and result[0].data.meas.get_counts() == {"10": 50}
