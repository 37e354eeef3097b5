"""Malformed QiskitJobs: each gets a clear, specific condition; no pod starts; nothing is charged."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.rest import ApiException

from .conftest import BELL, NS, Env

QASM_HEADER = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
NO_MEASURE = QASM_HEADER + "qreg q[2];\nh q[0];\ncx q[0],q[1];\n"
WIDE = QASM_HEADER + "qreg q[21];\ncreg c[21];\nh q[0];\nmeasure q -> c;\n"
SIX = QASM_HEADER + "qreg q[6];\ncreg c[6];\nh q[0];\nmeasure q -> c;\n"

# name, spec changes, expected phase, expected reason, a fragment the message must contain
CASES = [
    ("bad-syntax", {"circuits": [QASM_HEADER + "qreg q[2];\ncx q[0] q[1];\n"]}, "Failed", "InvalidCircuit",
     "spec.circuits[0] line 4"),
    ("no-header", {"circuits": ["qreg q[2];"]}, "Failed", "InvalidCircuit", "must start with an OPENQASM"),
    ("unknown-gate", {"circuits": [QASM_HEADER + "qreg q[1];\nfoo q[0];\n"]}, "Failed", "InvalidCircuit",
     "'foo' is not defined"),
    ("qasm3-error", {"circuits": ['OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nhh q[0];\n']}, "Failed",
     "InvalidCircuit", "gate 'hh' is not defined"),
    ("second-circuit-bad", {"circuits": [BELL, "OPENQASM 2.0;\nqreg q[1];\nx q[0];\n"]}, "Failed",
     "InvalidCircuit", "spec.circuits[1]"),
    ("no-qubits", {"circuits": ["OPENQASM 2.0;\n"]}, "Failed", "InvalidCircuit", "the circuit has no qubits"),
    ("blank-circuit", {"circuits": ["   "]}, "Failed", "InvalidSpec", "spec.circuits[0]: must be a non-empty"),
    ("unknown-backend", {"backend": "nope"}, "Failed", "UnknownBackend", "no QiskitBackend named 'nope'"),
    ("unknown-model", {"backend": "ghost"}, "Failed", "UnknownBackend", "no fake_provider backend named"),
    ("zero-shots", {"shots": 0}, "Failed", "InvalidSpec", "spec.shots: must be at least 1, got 0"),
    ("backend-shot-limit", {"shots": 200_000}, "Failed", "TooManyShots", "accepts at most 100000"),
    ("too-many-circuits", {"circuits": [BELL] * 5}, "Failed", "TooManyCircuits", "accepts at most 4"),
    ("too-many-qubits", {"circuits": [WIDE]}, "Failed", "TooManyQubits", "21 qubits, backend priced-aer has 20"),
    ("too-many-for-device", {"backend": "manila", "circuits": [SIX]}, "Failed", "TooManyQubits",
     "6 qubits, backend manila has 5"),
    ("estimator-no-observables", {"primitive": "estimator"}, "Failed", "InvalidSpec",
     "needs one list of Pauli strings per circuit"),
    ("observable-width", {"primitive": "estimator", "observables": [["ZZZ"]]}, "Failed", "InvalidObservable",
     "'ZZZ' has 3 terms, circuit 0 has 2 qubits"),
    ("not-a-pauli", {"primitive": "estimator", "observables": [["ZQ"]]}, "Failed", "InvalidSpec",
     "'ZQ' is not a Pauli string"),
    ("observables-on-sampler", {"observables": [["ZZ"]]}, "Failed", "InvalidSpec",
     "observables are for the estimator"),
    ("sampler-without-measurements", {"circuits": [NO_MEASURE]}, "Failed", "NoMeasurements", "measures nothing"),
    ("unknown-budget", {"budget": "other"}, "Refused", "UnknownBudget", "no QiskitBudget 'other'"),
]

# rejected by the API server against the CRD's structural schema: the object never exists
API_REJECTED = [
    ("shots-wrong-type", {"shots": "many"}, "spec.shots"),
    ("circuits-not-a-list", {"circuits": BELL}, "spec.circuits"),
    ("unknown-primitive", {"primitive": "annealer"}, "spec.primitive"),
    ("max-cost-not-a-number", {"maxCost": "ten dollars"}, "spec.maxCost"),
    ("backoff-negative", {"backoffLimit": -1}, "spec.backoffLimit"),
]

# the CRD's size limits (crds/qiskitjobs.yaml): name, spec changes, field, the API server's reason
API_LIMITS = [
    ("billion-shots", {"shots": 10**9}, "spec.shots", "FieldValueInvalid"),
    ("301-circuits", {"circuits": [BELL] * 301}, "spec.circuits", "FieldValueTooMany"),
    ("megabyte-circuit", {"circuits": [BELL + "// " + "x" * (1 << 20) + "\n"]}, "spec.circuits[0]",
     "FieldValueTooLong"),
    ("301-observables", {"primitive": "estimator", "observables": [["ZZ"]] * 301}, "spec.observables",
     "FieldValueTooMany"),
    ("long-pauli", {"primitive": "estimator", "observables": [["Z" * 1001]]}, "spec.observables[0][0]",
     "FieldValueTooLong"),
    ("long-budget-name", {"budget": "b" * 254}, "spec.budget", "FieldValueTooLong"),
]


def test_malformed_jobs_get_specific_conditions_no_pod_and_no_charge(env: Env) -> None:
    env.budget("10.00")
    env.backend("manila", provider="fake", device="fake_manila", pricing={"perQPUSecond": "1.60"})
    env.backend("ghost", provider="fake", device="fake_nothing")
    assert len(CASES) >= 20
    for name, changes, *_ in CASES:
        env.job(name, **changes)
    statuses = env.wait_terminal([c[0] for c in CASES])
    for name, _, phase, reason, fragment in CASES:
        status = statuses[name]
        assert status["phase"] == phase, (name, status)
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert (failed["status"], failed["reason"]) == ("True", reason), (name, failed)
        assert fragment in failed["message"], (name, failed["message"])
        assert status["message"] == failed["message"]
        events = env.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
        assert any(e.reason == reason and e.type == "Warning" for e in events), (name, [e.reason for e in events])
    for name, changes, field in API_REJECTED:
        with pytest.raises(ApiException) as err:
            env.job(name, **changes)
        assert err.value.status == 422
        assert field in [c["field"] for c in json.loads(err.value.body)["details"]["causes"]], name
    for name, changes, field, reason in API_LIMITS:
        with pytest.raises(ApiException) as err:
            env.job(name, **changes)
        assert err.value.status == 422, name
        causes = json.loads(err.value.body)["details"]["causes"]
        assert (reason, field) in [(c["reason"], c["field"]) for c in causes], (name, causes)
    largest = BELL + "// " + "x" * ((1 << 20) - len(BELL) - 4) + "\n"
    assert len(largest) == 1 << 20
    env.job("at-the-limits", circuits=[largest], shots=10_000_000)  # the schema takes it; the backend's limit not
    at_the_limits = env.wait_terminal(["at-the-limits"])["at-the-limits"]
    assert [c["reason"] for c in at_the_limits["conditions"] if c["type"] == "Failed"] == ["TooManyShots"]
    assert env.core.list_namespaced_pod(NS).items == []
    ledger = env.ledger()
    balance = ledger.balance(NS, NS)
    assert (balance.spent_micro, balance.held_micro) == (0, 0)
    assert ledger.open_reservations() == []
    ledger.close()
