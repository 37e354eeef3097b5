"""Qiskit's primitives, run through qgov: `Sampler` and `Estimator` (BaseSamplerV2, BaseEstimatorV2)
turn the pubs of one `run` into one QiskitJob, so the work is priced, reserved in the namespace's
QiskitBudget and charged like any other; the job object they return waits for the QiskitJob and
gives a `PrimitiveResult` shaped as Qiskit's own primitives give it.

    from governance.qiskit import Sampler
    job = Sampler(namespace="team-a", backend="aer").run([bell], shots=1000)
    print(job.result()[0].data.meas.get_counts())

Circuits travel as OpenQASM 3 (qiskit.qasm3.dumps), a pub's parameter values as
spec.parameterValues (one sweep per job: each circuit runs once per point, priced as the bound
circuits it makes). The Kubernetes client is configured as kubectl is: a named kubeconfig, else
the pod's ServiceAccount, else $KUBECONFIG or ~/.kube/config (governance/kubeconfig.py).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
from qiskit import qasm3
from qiskit.circuit import Parameter
from qiskit.primitives import (BaseEstimatorV2, BasePrimitiveJob, BaseSamplerV2, DataBin, PrimitiveResult,
                               PubResult, SamplerPubResult)
from qiskit.primitives.containers import BitArray
from qiskit.primitives.containers.bindings_array import BindingsArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import JobStatus

from .api import GROUP, VERSION
from .jobs import Phase, results
from .jobs.status import reason_of

DEFAULT_SHOTS = 1024  # what Qiskit's reference sampler takes when neither run() nor the sampler says
DEFAULT_PRECISION = 0.015625  # Qiskit's reference estimator's: 4096 shots
POLL_SECONDS = 0.5

# QiskitJob phase -> what Qiskit calls it; a job not yet looked at by the operator is queued
PHASES = {"": JobStatus.QUEUED, Phase.QUEUED.value: JobStatus.QUEUED, Phase.ADMITTED.value: JobStatus.QUEUED,
          Phase.RUNNING.value: JobStatus.RUNNING, Phase.SUCCEEDED.value: JobStatus.DONE,
          Phase.FAILED.value: JobStatus.ERROR, Phase.REFUSED.value: JobStatus.ERROR,
          Phase.CANCELLED.value: JobStatus.CANCELLED}


class QgovJobRefused(Exception):
    """qgov did not admit the job (the webhook or the operator): `message` says why, e.g. the
    budget's own words; nothing was charged."""

    def __init__(self, job: str, reason: str, message: str) -> None:
        super().__init__(f"QiskitJob {job} was refused ({reason}): {message}" if reason else
                         f"QiskitJob {job} was refused: {message}")
        self.job, self.reason, self.message = job, reason, message


class QgovJobFailed(Exception):
    """The job was admitted and ran, and failed (what its attempts used was charged)."""

    def __init__(self, job: str, message: str, actual_cost: str | None) -> None:
        super().__init__(f"QiskitJob {job} failed: {message}")
        self.job, self.message, self.actual_cost = job, message, actual_cost


class _Cluster:
    """Where the QiskitJobs go: one namespace, one API client."""

    def __init__(self, namespace: str | None, kubeconfig: str | None, api_client: Any | None) -> None:
        import kubernetes

        from .kubeconfig import client_configuration

        self.api = api_client or kubernetes.client.ApiClient(client_configuration(kubeconfig))
        self.namespace = namespace or _default_namespace(kubeconfig)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.core = kubernetes.client.CoreV1Api(self.api)

    def create(self, body: dict[str, Any]) -> str:
        from .kubeerrors import BadRequest, Forbidden, Invalid, api_errors

        try:
            with api_errors():
                created = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "qiskitjobs",
                                                                      body)
        except (BadRequest, Forbidden, Invalid) as exc:  # the admission webhook's (or the schema's) refusal
            raise QgovJobRefused(f"{self.namespace}/{body['metadata'].get('generateName', '')}", "",
                                 exc.message) from None
        return str(created["metadata"]["name"])

    def get(self, name: str) -> dict[str, Any] | None:
        from .kubeerrors import unless_gone

        found = unless_gone(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                                             "qiskitjobs", name))
        return None if found is None else dict(found)


def _default_namespace(kubeconfig: str | None) -> str:
    """The namespace kubectl would use: the pod's own, else the context's, else default."""
    from pathlib import Path

    own = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if kubeconfig is None and own.exists():
        return own.read_text().strip()
    import kubernetes

    try:
        _, context = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
        return str((context.get("context") or {}).get("namespace") or "default")
    except Exception:  # noqa: BLE001 - no kubeconfig: kubectl's default
        return "default"


class QgovJob(BasePrimitiveJob[PrimitiveResult, JobStatus]):  # type: ignore[misc]  # qiskit is untyped
    """One QiskitJob. `result()` waits for it; `estimated_cost` and `actual_cost` are what its status
    says (exact decimal strings in the budget's currency)."""

    def __init__(self, cluster: _Cluster, name: str, build: Any) -> None:
        super().__init__(name)
        self._cluster, self._build = cluster, build
        self._result: PrimitiveResult | None = None
        self._last: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return str(self._job_id)

    def _status(self) -> dict[str, Any] | None:
        found = self._cluster.get(self._job_id)
        if found is not None:
            self._last = dict(found.get("status") or {})
        return found

    @property
    def estimated_cost(self) -> str | None:
        self._status()
        return self._last.get("estimatedCost")

    @property
    def actual_cost(self) -> str | None:
        self._status()
        return self._last.get("actualCost")

    @property
    def currency(self) -> str | None:
        return self._last.get("currency")

    def status(self) -> JobStatus:
        if self._result is not None:
            return JobStatus.DONE
        if self._status() is None:
            return JobStatus.CANCELLED
        return PHASES.get(str(self._last.get("phase") or ""), JobStatus.QUEUED)

    def done(self) -> bool:
        return bool(self.status() == JobStatus.DONE)

    def running(self) -> bool:
        return bool(self.status() == JobStatus.RUNNING)

    def cancelled(self) -> bool:
        return bool(self.status() == JobStatus.CANCELLED)

    def in_final_state(self) -> bool:
        return bool(self.status() in (JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED))

    def cancel(self) -> None:
        """Delete the QiskitJob: the operator stops its pod and charges what it used so far."""
        from .kubeerrors import unless_gone

        cluster = self._cluster
        unless_gone(lambda: cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace,
                                                                           "qiskitjobs", self._job_id))

    def result(self, timeout: float | None = None) -> PrimitiveResult:
        """Wait for the job (at most `timeout` seconds) and give its results as Qiskit's own
        primitives do. Raises QgovJobRefused, QgovJobFailed, or TimeoutError."""
        if self._result is not None:
            return self._result
        deadline = None if timeout is None else time.monotonic() + timeout
        full = f"{self._cluster.namespace}/{self._job_id}"
        while True:
            obj = self._status()
            if obj is None:
                raise QgovJobFailed(full, "the QiskitJob was deleted (cancelled) before it finished", None)
            phase = self._last.get("phase")
            if phase == Phase.REFUSED.value or (phase == Phase.FAILED.value and not self._last.get("attempts")):
                # Failed before any attempt: admission found the job itself wrong (InvalidParameters, ...)
                raise QgovJobRefused(full, reason_of(self._last), str(self._last.get("message") or ""))
            if phase == Phase.FAILED.value:
                raise QgovJobFailed(full, str(self._last.get("message") or ""), self._last.get("actualCost"))
            if phase == Phase.SUCCEEDED.value and self._last.get("resultConfigMap"):
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"QiskitJob {full} is still {phase or 'Pending'} after {timeout} s")
            time.sleep(POLL_SECONDS)
        core, namespace = self._cluster.core, self._cluster.namespace
        document = results.read_result(lambda part: core.read_namespaced_config_map(part, namespace),
                                       str(self._last["resultConfigMap"]))
        self._result = self._build(document, self._last)
        return self._result


def _sweep(values: BindingsArray, where: str) -> dict[str, list[float]]:
    """A pub's parameter values as spec.parameterValues: name -> the values at each point (a flat,
    at most one-dimensional sweep)."""
    if values.ndim > 1:
        raise ValueError(f"{where}: qgov runs one-dimensional sweeps; these parameter values have shape "
                         f"{values.shape}")
    sweep: dict[str, list[float]] = {}
    for names, array in values.data.items():
        for k, name in enumerate(names):
            sweep[str(name)] = [float(v) for v in np.asarray(array)[..., k].reshape(-1)]
    return sweep


def _exported(circuit: Any) -> tuple[str, dict[str, str]]:
    """The circuit as OpenQASM 3, and its parameters' names there (Qiskit's name -> the input's name).
    The exporter renames what is not a plain identifier (a ParameterVector's `θ[0]`, a keyword);
    those become qgov_p<i>, so that spec.parameterValues names exactly the circuit's inputs."""
    names = {p.name: p.name for p in circuit.parameters}
    for attempt in range(2):
        text = qasm3.dumps(circuit.assign_parameters(
            {p: Parameter(names[p.name]) for p in circuit.parameters if names[p.name] != p.name}) if attempt else circuit)
        kept = {p.name for p in qasm3.loads(text).parameters}
        lost = [name for name in sorted(names) if names[name] not in kept]
        if not lost:
            return text, names
        for i, name in enumerate(sorted(names)):
            if name in lost:
                names[name] = f"qgov_p{i}"
    raise ValueError(f"the circuit's parameters {', '.join(lost)} cannot be named in OpenQASM 3")


def _job_body(prefix: str, backend: str, primitive: str, circuits: list[Any], shots: int,
              sweep: dict[str, list[float]], budget: str | None, max_cost: str | None,
              observables: list[list[str]] | None = None) -> dict[str, Any]:
    exported = [_exported(c) for c in circuits]
    renamed = {old: new for _, names in exported for old, new in names.items()}
    spec: dict[str, Any] = {"backend": backend, "primitive": primitive, "shots": shots,
                            "circuits": [text for text, _ in exported]}
    if sweep:
        spec["parameterValues"] = {renamed.get(name, name): values for name, values in sweep.items()}
    if observables is not None:
        spec["observables"] = observables
    if budget:
        spec["budget"] = budget
    if max_cost:
        spec["maxCost"] = max_cost
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QiskitJob",
            "metadata": {"name": f"{prefix}-{uuid.uuid4().hex[:10]}"}, "spec": spec}


def _one_sweep(sweeps: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """One QiskitJob binds one sweep: at most one pub may carry parameter values."""
    given = [s for s in sweeps if s]
    if len(given) > 1:
        raise ValueError("qgov runs one parameter sweep per job: run each parametrized pub in its own run() call")
    if given and len(sweeps) > 1:
        raise ValueError("a parametrized pub runs alone (every circuit of a QiskitJob runs at every point of its "
                         "sweep): run it in its own run() call")
    return given[0] if given else {}


class _Primitive:
    def __init__(self, *, backend: str, namespace: str | None = None, budget: str | None = None,
                 max_cost: str | None = None, kubeconfig: str | None = None, api_client: Any | None = None,
                 name_prefix: str = "qiskit") -> None:
        """`backend`: the QiskitBackend's name; `budget`: the QiskitBudget that pays (may be left out
        when the namespace has one); `max_cost`: refuse a job estimated above it (a decimal string)."""
        self.backend, self.budget, self.max_cost, self.name_prefix = backend, budget, max_cost, name_prefix
        self._cluster = _Cluster(namespace, kubeconfig, api_client)

    @property
    def namespace(self) -> str:
        return self._cluster.namespace


class Sampler(_Primitive, BaseSamplerV2):  # type: ignore[misc]
    """BaseSamplerV2 through qgov: each `run` is one QiskitJob (primitive: sampler)."""

    def __init__(self, *, default_shots: int = DEFAULT_SHOTS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.default_shots = default_shots

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> QgovJob:
        coerced = [SamplerPub.coerce(pub, shots if shots is not None else self.default_shots) for pub in pubs]
        if not coerced:
            raise ValueError("no pubs to run")
        if len({p.shots for p in coerced}) > 1:
            raise ValueError("one QiskitJob runs every circuit with the same shots: give the pubs equal shots")
        for i, pub in enumerate(coerced):
            if not pub.circuit.cregs:
                raise ValueError(f"pub {i}: the sampler needs measurements into a classical register")
        sweep = _one_sweep([_sweep(p.parameter_values, f"pub {i}") for i, p in enumerate(coerced)])
        body = _job_body(self.name_prefix, self.backend, "sampler", [p.circuit for p in coerced], coerced[0].shots,
                         sweep, self.budget, self.max_cost)
        name = self._cluster.create(body)
        return QgovJob(self._cluster, name, lambda document, status: _sampler_result(coerced, document, status))


def _circuits_of(pubs: list[Any], document: dict[str, Any]) -> list[dict[str, Any]]:
    """The result's circuits, one per pub, or a ValueError saying they do not match."""
    circuits = document.get("circuits") or []
    if len(circuits) != len(pubs):
        raise ValueError(f"the job's result holds {len(circuits)} circuits for the {len(pubs)} pubs it ran")
    return list(circuits)


def _sampler_result(pubs: list[SamplerPub], document: dict[str, Any], status: dict[str, Any]) -> PrimitiveResult:
    out = []
    for pub, circuit in zip(pubs, _circuits_of(pubs, document), strict=True):
        points = circuit["bindings"] if "bindings" in circuit else [circuit]
        registers = {}
        for position, creg in enumerate(reversed(pub.circuit.cregs)):  # Aer's keys: the last register first
            per_point = []
            for point in points:
                counts: dict[str, int] = {}
                for key, n in point["counts"].items():
                    bits = key.split(" ")[position] if " " in key else key
                    counts[bits] = counts.get(bits, 0) + n
                per_point.append(counts)
            array = BitArray.from_counts(per_point, creg.size)
            registers[creg.name] = array if pub.parameter_values.shape else array.reshape(())
        shape = pub.parameter_values.shape
        out.append(SamplerPubResult(DataBin(**registers, shape=shape),
                                    metadata={"shots": pub.shots, "circuit_metadata": pub.circuit.metadata}))
    return PrimitiveResult(out, metadata=_metadata(document, status))


def _metadata(document: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"qgov": {"estimatedCost": status.get("estimatedCost"), "actualCost": status.get("actualCost"),
                     "currency": status.get("currency"), **(document.get("metadata") or {})}}


class Estimator(_Primitive, BaseEstimatorV2):  # type: ignore[misc]
    """BaseEstimatorV2 through qgov: each `run` is one QiskitJob (primitive: estimator). Observables
    go as their Pauli terms; each observable's value is the sum of its terms' values by coefficient."""

    def __init__(self, *, default_precision: float = DEFAULT_PRECISION, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.default_precision = default_precision

    def run(self, pubs: Iterable[Any], *, precision: float | None = None) -> QgovJob:
        coerced = [EstimatorPub.coerce(pub, precision if precision is not None else self.default_precision)
                   for pub in pubs]
        if not coerced:
            raise ValueError("no pubs to run")
        if len({p.precision for p in coerced}) > 1:
            raise ValueError("one QiskitJob runs every circuit with the same shots: give the pubs equal precision")
        sweep = _one_sweep([_sweep(p.parameter_values, f"pub {i}") for i, p in enumerate(coerced)])
        terms = [sorted({label for obs in p.observables.ravel().tolist() for label in obs}) for p in coerced]
        shots = max(1, math.ceil(1 / coerced[0].precision ** 2))  # the executor's precision is 1/sqrt(shots)
        body = _job_body(self.name_prefix, self.backend, "estimator", [p.circuit for p in coerced], shots, sweep,
                         self.budget, self.max_cost, observables=terms)
        name = self._cluster.create(body)
        return QgovJob(self._cluster, name,
                       lambda document, status: _estimator_result(coerced, terms, document, status))


def _estimator_result(pubs: list[EstimatorPub], terms: list[list[str]], document: dict[str, Any],
                      status: dict[str, Any]) -> PrimitiveResult:
    out = []
    for pub, labels, circuit in zip(pubs, terms, _circuits_of(pubs, document), strict=True):
        points = circuit["bindings"] if "bindings" in circuit else [circuit]
        shape = pub.shape
        observables = pub.observables.ravel().tolist()
        obs_index = np.broadcast_to(np.arange(len(observables)).reshape(pub.observables.shape), shape)
        par_index = np.broadcast_to(np.arange(max(1, pub.parameter_values.size)).reshape(
            pub.parameter_values.shape), shape)
        evs, stds = np.zeros(shape), np.zeros(shape)
        for at in np.ndindex(*shape):
            point = points[int(par_index[at])]
            value = dict(zip(labels, point["expectationValues"], strict=True))
            spread = dict(zip(labels, point["stds"], strict=True))
            observable = observables[int(obs_index[at])]
            evs[at] = float(sum(np.real(c) * value[label] for label, c in observable.items()))
            stds[at] = math.sqrt(sum(abs(c) ** 2 * spread[label] ** 2 for label, c in observable.items()))
        out.append(PubResult(DataBin(evs=evs, stds=stds, shape=shape),
                             metadata={"target_precision": pub.precision, "circuit_metadata": pub.circuit.metadata}))
    return PrimitiveResult(out, metadata=_metadata(document, status))


__all__ = ["Estimator", "QgovJob", "QgovJobFailed", "QgovJobRefused", "Sampler"]
