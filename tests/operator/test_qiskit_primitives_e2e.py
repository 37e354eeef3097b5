"""Qiskit code run through qgov (governance/qiskit.py) as docs/qiskit.md tells it, with a kubeconfig: a
Sampler's counts of a Bell pair, an Estimator's <ZZ> of one, a 20-point sweep that is one QiskitJob
priced as 20 bound circuits; the ledger charges what the QiskitJobs say; a job the budget cannot pay
raises QgovJobRefused with the budget's message."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import Parameter
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp

from governance.qiskit import Estimator, QgovJobRefused, Sampler

from .conftest import NS, Env
from .test_kubectl_plugin_e2e import plugin

TASK = 300_000  # priced-aer: 0.30 USD a bound circuit


def bell(measure: bool = True) -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return circuit


def test_sampler_estimator_and_a_sweep_are_charged_what_their_jobs_say_and_a_refusal_raises(env: Env,
                                                                                           tmp_path: Path) -> None:
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
    manifest = tmp_path / "sweep.yaml"  # the same sweep as a manifest: kubectl qgov estimate prices it as 20 circuits
    manifest.write_text(yaml.safe_dump({"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
                                        "metadata": {"name": "sweep", "namespace": NS},
                                        "spec": {"backend": "priced-aer", "circuits": [qasm3.dumps(rotation)],
                                                 "shots": 200, "parameterValues": {"theta": points}}}))
    estimate = plugin(env, "estimate", "-f", str(manifest))
    assert estimate.returncode == 0 and "estimated 6.00 USD" in estimate.stdout, estimate.stdout + estimate.stderr
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

    shown = plugin(env, "-n", NS, "results", sweep_job.job_id())  # one line per point, with its values
    lines = shown.stdout.splitlines()
    assert shown.returncode == 0 and len(lines) == 20, shown.stdout + shown.stderr
    assert lines[0] == "circuit 0 [0] (theta=0): 0: 200" and lines[19] == f"circuit 0 [19] (theta={math.pi:g}): 1: 200"

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

    # a manifest whose circuit has a parameter without values: failed at admission, the parameter named
    unbound = ('OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float[64] phi;\nqubit[1] q;\nbit[1] c;\n'
               'rx(phi) q[0];\nc[0] = measure q[0];\n')
    env.job("unbound", circuits=[unbound], shots=10, parameterValues={"theta": [1.0]})
    status = env.wait_terminal(["unbound"])["unbound"]
    assert status["phase"] == "Failed" and not status.get("attempts") and status["message"] == (
        "spec.parameterValues: circuit 0 has parameter phi with no values (give an array of numbers for each)")
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Failed"] == ["InvalidParameters"]

    # a job admission finds wrong (more shots than the backend takes) raises QgovJobRefused too, not Failed
    too_many = Sampler(**where).run([bell()], shots=200_000)
    with pytest.raises(QgovJobRefused) as wrong:
        too_many.result(timeout=120)
    assert wrong.value.reason == "TooManyShots" and "accepts at most 100000" in wrong.value.message
