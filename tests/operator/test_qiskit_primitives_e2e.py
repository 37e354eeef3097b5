"""Qiskit code run through qgov (governance/qiskit.py) as docs/qiskit.md tells it, with a kubeconfig: a
Sampler's counts of a Bell pair, an Estimator's <ZZ> of one, a 20-point sweep that is one QiskitJob
priced as 20 bound circuits; the ledger charges what the QiskitJobs say; a job the budget cannot pay
raises QgovJobRefused with the budget's message."""

from __future__ import annotations

import math

import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp

from governance.qiskit import Estimator, QgovJobRefused, Sampler

from .conftest import NS, Env

TASK = 300_000  # priced-aer: 0.30 USD a bound circuit


def bell(measure: bool = True) -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return circuit


def test_sampler_estimator_and_a_sweep_are_charged_what_their_jobs_say_and_a_refusal_raises(env: Env) -> None:
    env.budget("7.00")
    where = {"namespace": NS, "backend": "priced-aer", "kubeconfig": str(env.cluster.kubeconfig)}

    job = Sampler(**where).run([bell()], shots=1000)
    result = job.result(timeout=180)
    counts = result[0].data.meas.get_counts()
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 1000 and abs(counts["00"] - 500) < 5 * 16
    assert job.status() == JobStatus.DONE and job.estimated_cost == job.actual_cost == "0.30"
    assert result.metadata["qgov"]["actualCost"] == "0.30" and result.metadata["qgov"]["currency"] == "USD"

    estimated = Estimator(**where).run([(bell(measure=False), SparsePauliOp("ZZ"))]).result(timeout=180)
    assert abs(float(estimated[0].data.evs) - 1) < 0.1 and float(estimated[0].data.stds) < 0.1

    theta = Parameter("theta")
    rotation = QuantumCircuit(1)
    rotation.rx(theta, 0)
    rotation.measure_all()
    points = [math.pi * i / 19 for i in range(20)]
    sweep_job = Sampler(**where).run([(rotation, [[p] for p in points])], shots=200)
    swept = sweep_job.result(timeout=240)
    bits = swept[0].data.meas
    assert bits.shape == (20,)
    assert bits[0].get_counts() == {"0": 200} and bits[19].get_counts() == {"1": 200}  # rx(0), rx(pi)
    assert sum(bits[10].get_counts().values()) == 200
    [created] = [j for j in env.jobs() if j["metadata"]["name"] == sweep_job.job_id()]  # one job for 20 points
    assert list(created["spec"]["parameterValues"]) == ["theta"]
    status = env.status(sweep_job.job_id())
    assert int(status["estimatedMicro"]) == int(status["usedMicro"]) == 20 * TASK and status["actualCost"] == "6.00"

    statuses = [env.status(j["metadata"]["name"]) for j in env.jobs()]
    assert len(statuses) == 3 and all(s["phase"] == "Succeeded" for s in statuses)
    ledger = env.ledger()
    try:
        assert ledger.balance(NS, NS).spent_micro == sum(int(s["usedMicro"]) for s in statuses) == 22 * TASK
    finally:
        ledger.close()

    # 0.40 USD left; a 2-point sweep needs 0.60: refused with the budget's words, nothing charged
    refused = Sampler(**where).run([(rotation, [[0.0], [1.0]])], shots=10)
    with pytest.raises(QgovJobRefused) as caught:
        refused.result(timeout=180)
    assert caught.value.reason == "BudgetExceeded"
    assert caught.value.message.startswith(f"exceeded budget {NS}/{NS}: requested 0.60 USD, spent 6.60 USD")
    assert refused.status() == JobStatus.ERROR
