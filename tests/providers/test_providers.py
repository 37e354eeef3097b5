"""Each built-in provider through the interface the operator, the webhook and the executor use:
its limits and the messages a user reads when a job exceeds them, the price of a known circuit to
the micro-unit (the same figures as before the providers existed), what an executor pod is given,
and what a reported usage costs."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from governance import providers
from governance.assessment import Estimate, Problem, assess, backend_from_object, modelled_usage
from governance.api.specs import SpecError, parse_backend, parse_job
from governance.budget.money import format_quantity, micro_from_decimal_ceil
from governance.circuits import parse_circuits
from governance.providers.base import ExecutorSession, UnknownBackendModel

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
GHZ = ('OPENQASM 3.0; include "stdgates.inc"; qubit[3] q; bit[3] c; h q[0]; cx q[0], q[1]; cx q[1], q[2]; '
       'c = measure q;')


def wide(qubits: int) -> str:
    return f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{qubits}];\nmeasure q -> c;\n'


def job(*texts: str, shots: int = 1000, primitive: str = "sampler", **spec: object):  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"backend": "x", "circuits": list(texts), "shots": shots, "primitive": primitive, **spec}
    return parse_job(body)


AER = parse_backend("aer", {"provider": "aer", "name": "aer_simulator",
                            "pricing": {"perCPUSecond": "0.50", "perTask": "0.3", "perShot": "0.00035"}})
MANILA = parse_backend("manila", {"provider": "fake", "name": "fake_manila",
                                  "pricing": {"perQPUSecond": "1.60", "perTask": "0.3"}})
TORINO = parse_backend("torino", {"provider": "ibm", "name": "ibm_torino", "pricing": {"perQPUSecond": "1.60"}})


def test_the_registry_holds_the_three_built_in_providers() -> None:
    assert providers.names() == ("aer", "fake", "ibm")
    assert [providers.of(b).name for b in (AER, MANILA, TORINO)] == ["aer", "fake", "ibm"]


def test_an_unknown_provider_is_refused_with_its_field_path() -> None:
    with pytest.raises(SpecError, match=r"^spec.provider: 'braket' is not one of aer, fake, ibm$"):
        parse_backend("b", {"provider": "braket", "name": "sv1"})
    problem = backend_from_object("b", {"spec": {"name": "x"}})
    assert problem == Problem("InvalidBackend", "QiskitBackend b: spec.provider: None is not one of aer, fake, ibm")


# ------------------------------------------------------------------------------------ aer


def test_aer_holds_28_qubits_unless_its_limits_say_fewer() -> None:
    assert providers.get("aer").max_qubits(AER) == 28
    small = parse_backend("small", {"provider": "aer", "name": "aer_simulator", "limits": {"maxQubits": 4}})
    assert assess(job(wide(28)), AER, "USD").qubits == 28  # type: ignore[union-attr]
    assert assess(job(wide(29)), AER, "USD") == Problem(
        "TooManyQubits", "spec.circuits[0]: 29 qubits, backend aer has 28")
    assert assess(job(wide(5)), small, "USD") == Problem("TooManyQubits", "spec.circuits[0]: 5 qubits, backend small has 4")


def test_a_backends_limits_name_the_field_that_exceeds_them() -> None:
    limited = parse_backend("lim", {"provider": "aer", "name": "aer_simulator",
                                    "limits": {"maxShots": 100, "maxCircuits": 1}})
    assert assess(job(BELL, BELL, shots=10), limited, "USD") == Problem(
        "TooManyCircuits", "spec.circuits: 2 circuits, backend lim accepts at most 1")
    assert assess(job(BELL, shots=101), limited, "USD") == Problem(
        "TooManyShots", "spec.shots: 101 shots, backend lim accepts at most 100")


def test_aer_charges_cpu_seconds_tasks_and_shots_to_the_micro_unit() -> None:
    # Bell has 4 operations: 1.5 s + 4 × 1000 gate-shots × 1 µs = 1.504 s, × 1.25 = 1.88 CPU-s
    estimate = assess(job(BELL), AER, "USD")
    assert isinstance(estimate, Estimate)
    assert estimate.usage.cpu_seconds == Decimal("1.88") and estimate.usage.qpu_seconds == 0
    # 1.88 × 0.50 + 1 task × 0.30 + 1000 shots × 0.00035
    assert estimate.amount_micro == 940_000 + 300_000 + 350_000
    assert assess(job(BELL), AER, "QPU-seconds").amount_micro == 0  # type: ignore[union-attr]
    assert providers.of(AER).describe_usage(estimate.usage, AER) == "1.88 CPU-s on aer_simulator"


def test_aer_turns_a_reported_usage_into_cost_rounding_up() -> None:
    aer = providers.of(AER)
    report = {"cpuSeconds": "2.000001", "shots": "1000", "tasks": "1"}
    # 2.000001 × 0.50 = 1.0000005 -> 1.000001; + 0.30 + 0.35
    assert aer.cost(report, AER.prices, "USD") == 1_000_001 + 300_000 + 350_000
    with pytest.raises(ValueError, match="does not match the backend's price currency USD"):
        aer.cost(report, AER.prices, "EUR")


# ------------------------------------------------------------------------------------ fake


def test_fake_has_its_device_models_qubits() -> None:
    assert providers.of(MANILA).max_qubits(MANILA) == 5
    assert assess(job(wide(6)), MANILA, "USD") == Problem("TooManyQubits",
                                                           "spec.circuits[0]: 6 qubits, backend manila has 5")
    missing = parse_backend("nowhere", {"provider": "fake", "name": "fake_nowhere"})
    problem = assess(job(BELL), missing, "USD")
    assert isinstance(problem, Problem) and problem.reason == "UnknownBackend"
    assert problem.message.startswith("backend nowhere: no fake_provider backend named 'fake_nowhere'")


def test_a_fake_backend_without_its_model_fails_the_attempt_for_good() -> None:
    from executor.attempt import EXIT_DETERMINISTIC, run_attempt

    job_obj = {"metadata": {"name": "j", "generation": 1}, "spec": {"backend": "nowhere", "circuits": [BELL]}}
    backend_obj = {"metadata": {"name": "nowhere"}, "spec": {"provider": "fake", "name": "fake_nowhere"}}
    report, code = run_attempt(None, job_obj, backend_obj, attempt=1)
    assert code == EXIT_DETERMINISTIC and report["deterministic"] is True
    assert report["error"].startswith("no fake_provider backend named 'fake_nowhere'")


def test_fake_prices_a_known_sweep_to_the_micro_unit() -> None:
    # the figures qgov gave before providers had an interface (main at d642ed4), to the micro-unit
    sampled = assess(job(BELL, GHZ), MANILA, "USD")
    estimated = assess(job(BELL, GHZ, primitive="estimator", observables=[["ZZ", "XX"], ["ZZZ"]]), MANILA, "USD")
    assert isinstance(sampled, Estimate) and isinstance(estimated, Estimate)
    assert sampled.usage.qpu_seconds == Decimal("1.88974666666666666375000")
    assert (sampled.amount_micro, estimated.amount_micro) == (3_623_595, 3_602_191)
    assert assess(job(BELL, GHZ), MANILA, "QPU-seconds").amount_micro == 1_889_747  # type: ignore[union-attr]
    assert providers.of(MANILA).describe_usage(sampled.usage, MANILA) == "1.889747 QPU-s on fake_manila"


def test_fake_reports_the_modelled_qpu_time_and_is_charged_it() -> None:
    spec = job(BELL, shots=200)
    fake = providers.of(MANILA)
    outcome = fake.run(spec, MANILA, parse_circuits(spec.circuits))
    assert sum(outcome.results[0]["counts"].values()) == 200
    modelled = modelled_usage(spec, MANILA)
    assert outcome.usage["qpuSeconds"] == format_quantity(modelled.qpu_seconds)
    assert (outcome.usage["shots"], outcome.usage["tasks"]) == ("200", "1")
    # 1.60 per QPU-second, rounded up; plus 0.30 for the one task
    qpu = Decimal(outcome.usage["qpuSeconds"])
    assert fake.cost(outcome.usage, MANILA.prices, "USD") == micro_from_decimal_ceil(qpu * Decimal("1.60")) + 300_000


def test_fake_is_priced_like_ibm_by_its_preset() -> None:
    assert providers.get("fake").price_preset == providers.get("ibm").price_preset
    assert providers.get("ibm").price_preset.per_qpu_second_micro == 1_600_000


# ------------------------------------------------------------------------------------ ibm


def test_ibm_estimates_on_the_devices_twin_unless_told_which() -> None:
    assert TORINO.model == "fake_torino" and providers.of(TORINO).max_qubits(TORINO) == 133
    told = parse_backend("t", {"provider": "ibm", "name": "ibm_torino", "model": "fake_manila"})
    assert told.model == "fake_manila" and providers.of(told).max_qubits(told) == 5
    ibm = providers.get("ibm")
    with pytest.raises(UnknownBackendModel):
        ibm.max_qubits(parse_backend("t", {"provider": "ibm", "name": "ibm_nowhere"}))
    assert ibm.model_field({"model": "fake_x"}) == "spec.model" and ibm.model_field({}) == "spec.name"


def test_ibm_prices_a_known_sweep_to_the_micro_unit() -> None:
    sampled = assess(job(BELL, GHZ), TORINO, "USD")
    assert isinstance(sampled, Estimate)
    assert sampled.usage.qpu_seconds == Decimal("1.879355000000000000250000")
    assert sampled.amount_micro == 3_006_969
    assert assess(job(BELL, GHZ), TORINO, "QPU-seconds").amount_micro == 1_879_356  # type: ignore[union-attr]


def test_ibm_turns_metered_quantum_seconds_and_session_time_into_cost() -> None:
    ibm = providers.of(TORINO)
    assert ibm.cost({"qpuSeconds": "2.5", "shots": "4000", "tasks": "2"}, TORINO.prices, "USD") == 4_000_000
    assert ibm.cost({"qpuSeconds": "2.5"}, TORINO.prices, "QPU-seconds") == 2_500_000
    assert ibm.session_cost(600, TORINO.prices, "USD") == 960_000_000  # a dedicated session's 10 minutes


def test_ibm_runs_in_sessions_with_credentials_and_the_local_providers_do_not() -> None:
    ibm, aer, fake = providers.get("ibm"), providers.get("aer"), providers.get("fake")
    assert ibm.needs_session and ibm.remote_sessions and ibm.needs_credentials
    assert not any(p.needs_session or p.remote_sessions or p.needs_credentials for p in (aer, fake))
    assert (ibm.session_mode("dedicated"), ibm.session_mode(None)) == ("dedicated", "batch")
    assert (aer.session_mode("dedicated"), fake.session_mode("batch")) == ("batch", "batch")


def test_an_ibm_executor_pod_gets_the_session_and_a_mounted_token_never_a_key() -> None:
    session = ExecutorSession("sess-1", "dedicated", "s-token", "crn:v1:x", "https://private.example", None, None)
    needs = providers.get("ibm").executor_needs(session)
    assert needs.env_list() == [
        {"name": "QGOV_IBM_SESSION", "value": "sess-1"}, {"name": "QGOV_IBM_SESSION_MODE", "value": "dedicated"},
        {"name": "QGOV_IBM_INSTANCE", "value": "crn:v1:x"},
        {"name": "QGOV_IBM_TOKEN_FILE", "value": "/var/run/qgov/ibm/token"},
        {"name": "QGOV_IBM_URL", "value": "https://private.example"}]
    assert needs.volumes == ({"name": "ibm-token", "secret": {"secretName": "s-token"}},)
    assert needs.mounts == ({"name": "ibm-token", "mountPath": "/var/run/qgov/ibm", "readOnly": True},)
    assert providers.get("aer").executor_needs(None).env_list() == []


def test_the_providers_and_the_executor_import_neither_kopf_kubernetes_nor_sqlalchemy() -> None:
    code = ("import sys, executor.__main__, executor.attempt, governance.providers, governance.providers.ibm.iam, "
            "governance.providers.ibm.runtime_api; "
            "print(sorted(m for m in ('kopf', 'kubernetes', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
