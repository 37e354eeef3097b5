"""The executor: runs one attempt of a QiskitJob inside its pod.

    python -m executor --namespace NS --job NAME --attempt N

Reads the QiskitJob and its QiskitBackend, runs the circuits (qiskit-aer for `aer`; the
fake_provider backend's noise model on Aer for `fake`), writes `result.json` into a
ConfigMap owned by the job, and reports its usage in the termination message, where the
operator reads it to settle the reservation.

Exit codes: 0 done; 2 a deterministic error (the job itself is wrong: retrying cannot help);
1 anything else (transient: the operator may retry).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from .ibm import RuntimeRefusal

TERMINATION_LOG = Path(os.environ.get("QGOV_TERMINATION_LOG", "/dev/termination-log"))
CONFIGMAP_LIMIT = 900_000  # bytes of data per ConfigMap, below the API server's 1 MiB object limit
EXIT_DETERMINISTIC = 2


class DeterministicError(Exception):
    """The job cannot succeed as written."""


def load_client():  # type: ignore[no-untyped-def]
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client


def run_job(job: dict[str, Any], backend_obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the job; returns (result document, usage)."""
    from qiskit import transpile
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import EstimatorV2

    from governance.admission import modelled_usage
    from governance.api.specs import SpecError, parse_backend, parse_job
    from governance.backends import UnknownBackendModel, fake_backend
    from governance.budget.money import format_quantity
    from governance.circuits import CircuitError, parse_circuits

    admitted = (job.get("status") or {}).get("admittedGeneration")
    generation = job["metadata"].get("generation")
    if admitted is not None and generation != admitted:
        raise DeterministicError(f"the job's spec changed after admission (generation {generation}, admitted and "
                                 f"priced at {admitted}); qgov runs what was paid for: create a new QiskitJob")
    try:
        spec = parse_job(job["spec"])
        backend = parse_backend(backend_obj["metadata"]["name"], backend_obj["spec"])
        circuits = parse_circuits(spec.circuits)
        model = fake_backend(backend.backend_name) if backend.provider == "fake" else None
    except (SpecError, CircuitError, UnknownBackendModel) as exc:
        raise DeterministicError(str(exc)) from None
    if backend.provider == "ibm":
        from .ibm import run_ibm

        wall0 = time.perf_counter()
        results, usage, runtime_job = run_ibm(spec, backend, circuits)  # RuntimeRefusal says what IBM said
        return {"circuits": results, "metadata": {
            "backend": backend.name, "provider": "ibm", "model": backend.backend_name, "primitive": spec.primitive,
            "shots": spec.shots, "runtimeJob": runtime_job, "session": os.environ.get("QGOV_IBM_SESSION"),
            "wallSeconds": round(time.perf_counter() - wall0, 6)}}, usage
    simulator = AerSimulator.from_backend(model) if model is not None else AerSimulator()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results: list[dict[str, Any]] = []
    if spec.primitive == "sampler":
        compiled = transpile(circuits, simulator, optimization_level=1, seed_transpiler=0)
        counts = simulator.run(compiled, shots=spec.shots).result().get_counts()
        counts = counts if isinstance(counts, list) else [counts]
        results = [{"counts": dict(sorted(c.items()))} for c in counts]
    else:
        options: dict[str, Any] = {"default_precision": 1 / spec.shots ** 0.5}
        if model is not None:
            from qiskit_aer.noise import NoiseModel

            options["backend_options"] = {"noise_model": NoiseModel.from_backend(model)}
        estimator = EstimatorV2(options=options)
        pubs = []
        for circuit, observables in zip(circuits, spec.observables):
            bare = circuit.remove_final_measurements(inplace=False)
            pubs.append((bare, [SparsePauliOp(p) for p in observables]))
        for pub in estimator.run(pubs).result():
            results.append({"expectationValues": [float(x) for x in pub.data.evs],
                            "stds": [float(x) for x in pub.data.stds]})
    cpu = Decimal(str(round(time.process_time() - cpu0, 6)))
    usage = {"cpuSeconds": str(cpu), "shots": str(spec.shots * len(circuits)), "tasks": str(len(circuits))}
    if backend.provider == "fake":
        # the model's QPU time to the microsecond: what is charged is the figure a user reads
        usage["qpuSeconds"] = format_quantity(modelled_usage(spec, backend).qpu_seconds)
    document = {"circuits": results, "metadata": {
        "backend": backend.name, "provider": backend.provider, "model": backend.backend_name,
        "primitive": spec.primitive, "shots": spec.shots, "wallSeconds": round(time.perf_counter() - wall0, 6)}}
    return document, usage


def configmaps_for(name: str, document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The result as ConfigMap bodies: plain when small, gzip when large, split when larger still.

    Never truncated: a reader joins the parts listed in the first ConfigMap's annotations.
    """
    text = json.dumps(document, separators=(",", ":"))
    if len(text.encode()) <= CONFIGMAP_LIMIT:
        return [(name, {"data": {"result.json": text}})]
    packed = base64.b64encode(gzip.compress(text.encode(), 9)).decode()
    chunks = [packed[i:i + CONFIGMAP_LIMIT] for i in range(0, len(packed), CONFIGMAP_LIMIT)]
    names = [name] + [f"{name}-{i}" for i in range(1, len(chunks))]
    annotations = {"qgov.dev/encoding": "gzip+base64", "qgov.dev/parts": ",".join(names)}
    return [(n, {"metadata": {"annotations": annotations}, "binaryData": {"result.json.gz.part": c}})
            for n, c in zip(names, chunks)]


def read_result(core: Any, namespace: str, name: str) -> dict[str, Any]:
    """Read a result written by `configmaps_for` (used by the operator, tests and users)."""
    first = core.read_namespaced_config_map(name, namespace)
    if first.data and "result.json" in first.data:
        return json.loads(first.data["result.json"])
    parts = (first.metadata.annotations or {})["qgov.dev/parts"].split(",")
    packed = "".join(core.read_namespaced_config_map(p, namespace).binary_data["result.json.gz.part"]
                     for p in parts)
    return json.loads(gzip.decompress(base64.b64decode(packed)))


def write_result(client: Any, job: dict[str, Any], document: dict[str, Any]) -> str:
    from kubernetes.client.rest import ApiException

    from governance.api import JOB_LABEL, label_value

    core = client.CoreV1Api()
    meta = job["metadata"]
    name = f"{meta['name']}-result"
    owner = {"apiVersion": job["apiVersion"], "kind": job["kind"], "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}
    for cm_name, body in configmaps_for(name, document):
        body.setdefault("metadata", {}).update({"name": cm_name, "ownerReferences": [owner],
                                                "labels": {JOB_LABEL: label_value(meta["name"])}})
        try:
            core.create_namespaced_config_map(meta["namespace"], body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_config_map(cm_name, meta["namespace"], body)  # a retried attempt
    return name


def report(payload: dict[str, Any]) -> None:
    try:
        TERMINATION_LOG.write_text(json.dumps(payload, separators=(",", ":")))
    except OSError:
        pass
    print(json.dumps(payload), flush=True)


def describe(exc: BaseException) -> str:
    """An error for the report: its type and its message on one line, bounded (an API error: the
    server's message, not its headers)."""
    from governance.api.errors import describe_error

    return describe_error(exc, 500)


def run_attempt(client: Any, job: dict[str, Any], backend: dict[str, Any],
                **metadata: Any) -> tuple[dict[str, Any], int]:
    """Run one attempt and say what it did: (the report the operator charges from, the exit code).
    The one-shot executor and a local session's runner both report through here."""
    try:
        document, usage = run_job(job, backend)
        document["metadata"].update(metadata)
        configmap = write_result(client, job, document)
    except DeterministicError as exc:
        return {"error": str(exc), "deterministic": True}, EXIT_DETERMINISTIC
    except RuntimeRefusal as exc:  # IBM's answer, with a reason for the job's condition
        return ({"error": str(exc), "deterministic": exc.deterministic, "reason": exc.reason},
                EXIT_DETERMINISTIC if exc.deterministic else 1)
    except Exception as exc:  # noqa: BLE001 - reported, and the operator decides about a retry
        return {"error": describe(exc), "deterministic": False}, 1
    done: dict[str, Any] = {"usage": usage, "resultConfigMap": configmap}
    if "runtimeJob" in document["metadata"]:
        done["runtimeJob"] = document["metadata"]["runtimeJob"]
    return done, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="executor")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        client = load_client()
        custom = client.CustomObjectsApi()
        job = custom.get_namespaced_custom_object("qgov.dev", "v1alpha1", args.namespace, "qiskitjobs", args.job)
        backend = custom.get_cluster_custom_object("qgov.dev", "v1alpha1", "qiskitbackends", job["spec"]["backend"])
    except Exception as exc:  # noqa: BLE001 - reported, and the operator decides about a retry
        report({"error": describe(exc), "deterministic": False})
        return 1
    outcome, code = run_attempt(client, job, backend, attempt=args.attempt)
    report(outcome)
    return code


if __name__ == "__main__":
    sys.exit(main())
