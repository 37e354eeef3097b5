"""One attempt of a QiskitJob, inside its executor pod (`python -m executor`, executor/__main__.py)
or a local session's runner (executor/session.py).

Takes the QiskitJob and its QiskitBackend, runs the circuits through the backend's provider
(governance/providers: qiskit-aer for `aer`; the fake_provider backend's noise model on Aer
for `fake`; a Runtime session for `ibm`, executor/ibm.py), writes `result.json` into a
ConfigMap owned by the job, and says how the attempt ended in the termination message (exit
code, error, the usage it saw). The operator takes that as the signal that the attempt ended and
whether it succeeded; what it charges comes from its own trusted source (the provider's model of
the admitted circuits, or IBM's meter), never from this report, which anyone who can exec into
the pod could rewrite.

Exit codes: 0 done; 2 a deterministic error (the job itself is wrong: retrying cannot help);
1 anything else (transient: the operator may retry).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from governance.jobs import results
from governance.jobs.attempts import EXIT_DETERMINISTIC  # one home: the operator reads the same code
from governance.jobs.results import CONFIGMAP_LIMIT, configmaps_for
from governance.providers.base import RunRefusal

__all__ = ["CONFIGMAP_LIMIT", "EXIT_DETERMINISTIC", "DeterministicError", "configmaps_for", "read_result", "run_attempt", "run_job",
           "write_result"]

TERMINATION_LOG = Path(os.environ.get("QGOV_TERMINATION_LOG", "/dev/termination-log"))


class DeterministicError(Exception):
    """The job cannot succeed as written."""


def load_client() -> Any:
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client


def runner_of(backend: Any) -> Any:
    """What runs a job on `backend` in this pod: a remote provider's client lives here in the
    executor (executor/ibm.py: qiskit-ibm-runtime in the pod's Runtime session), the local
    providers' simulation in the provider. The executor depends on the providers, never the reverse."""
    from governance import providers

    if backend.provider == "ibm":
        from .ibm import run_in_session

        return run_in_session
    return providers.of(backend).run


def run_job(job: dict[str, Any], backend_obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the job on its backend's provider (governance/providers); returns (result document, usage)."""
    from governance.api.specs import SpecError, parse_backend, parse_job
    from governance.circuits import CircuitError, parse_circuits
    from governance.providers.base import UnknownBackendModel

    admitted = (job.get("status") or {}).get("admittedGeneration")
    generation = job["metadata"].get("generation")
    if admitted is not None and generation != admitted:
        raise DeterministicError(f"the job's spec changed after admission (generation {generation}, admitted and "
                                 f"priced at {admitted}); qgov runs what was paid for: create a new QiskitJob")
    try:
        spec = parse_job(job["spec"])
        backend = parse_backend(backend_obj["metadata"]["name"], backend_obj["spec"])
        circuits = parse_circuits(spec.circuits)
    except (SpecError, CircuitError) as exc:
        raise DeterministicError(str(exc)) from None
    wall0 = time.perf_counter()
    try:  # a remote provider's refusal (RunRefusal) says itself whether a retry could help
        outcome = runner_of(backend)(spec, backend, circuits)
    except UnknownBackendModel as exc:  # the backend names a device model that does not exist
        raise DeterministicError(str(exc)) from None
    document = {"circuits": outcome.results, "metadata": {
        "backend": backend.name, "provider": backend.provider, "model": backend.backend_name,
        "primitive": spec.primitive, "shots": spec.shots, **outcome.metadata,
        "wallSeconds": round(time.perf_counter() - wall0, 6)}}
    return document, outcome.usage


def read_result(core: Any, namespace: str, name: str) -> dict[str, Any]:
    """Read a result written by `configmaps_for` (used by the operator, tests and users)."""
    return results.read_result(lambda part: core.read_namespaced_config_map(part, namespace), name)


def write_result(client: Any, job: dict[str, Any], document: dict[str, Any], attempt: int = 1) -> str:
    """Write the result as ConfigMaps owned by the job; returns the first one's name.

    `<job>-result`, created, never updated: the executor may create ConfigMaps, not change one. If
    that name exists already and is this job's (an earlier attempt wrote it, then died before
    reporting), this attempt writes `<job>-result-attempt-<n>` and reports that name. If it is
    anyone else's, nothing is written over it: the attempt fails and says the name is taken."""
    from governance.api import JOB_LABEL, label_value
    from governance.jobs.results import ATTEMPT_ANNOTATION, result_names
    from governance.kubeerrors import Conflict, api_errors

    core = client.CoreV1Api()
    meta = job["metadata"]
    owner = {"apiVersion": job["apiVersion"], "kind": job["kind"], "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}
    for name in result_names(meta["name"], attempt):
        taken = None
        for cm_name, body in configmaps_for(name, document):
            body.setdefault("metadata", {}).update({"name": cm_name, "ownerReferences": [owner],
                                                    "labels": {JOB_LABEL: label_value(meta["name"])}})
            body["metadata"].setdefault("annotations", {})[ATTEMPT_ANNOTATION] = str(attempt)
            try:
                with api_errors():
                    core.create_namespaced_config_map(meta["namespace"], body)
            except Conflict:
                taken = core.read_namespaced_config_map(cm_name, meta["namespace"])
                break
        if taken is None:
            return name
        if not any(ref.uid == meta["uid"] for ref in taken.metadata.owner_references or ()):
            raise DeterministicError(f"ConfigMap {meta['namespace']}/{taken.metadata.name} exists and is not this "
                                     "job's: the result is never written over it (delete it, or rename the job)")
    raise RuntimeError(f"ConfigMap {meta['namespace']}/{meta['name']}-result-attempt-{attempt} exists already "
                       "(this attempt ran before): a new attempt writes its own")


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
    """Run one attempt and say what it did: (the report the operator reads how it ended from, the exit code).
    The one-shot executor and a local session's runner both report through here."""
    try:
        document, usage = run_job(job, backend)
        document["metadata"].update(metadata)
        configmap = write_result(client, job, document, int(metadata.get("attempt") or 1))
    except DeterministicError as exc:
        return {"error": str(exc), "deterministic": True}, EXIT_DETERMINISTIC
    except RunRefusal as exc:  # a remote service's answer (IBM's), with a reason for the job's condition
        return ({"error": str(exc), "deterministic": exc.deterministic, "reason": exc.reason},
                EXIT_DETERMINISTIC if exc.deterministic else 1)
    except Exception as exc:  # noqa: BLE001 - reported, and the operator decides about a retry
        return {"error": describe(exc), "deterministic": False}, 1
    done: dict[str, Any] = {"usage": usage, "resultConfigMap": configmap}
    if "runtimeJob" in document["metadata"]:
        done["runtimeJob"] = document["metadata"]["runtimeJob"]
    return done, 0
