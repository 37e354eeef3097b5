"""The executor's IBM Qiskit Runtime path: submit into the job's Runtime session through
qiskit-ibm-runtime, wait, and report the job's metered quantum seconds.

The pod never holds the IBM API key: the operator mounts a Secret with a short-lived IAM bearer
token (`token`) that it rotates before expiry. qiskit-ibm-runtime authenticates by exchanging an
API key at `IAM_URL`; so the executor serves that exchange itself on 127.0.0.1, answering with
whatever token the mounted file holds now. The client then refreshes (at 80% of the token's
lifetime) from the rotated file, through its own documented configuration and no patching.

The primitive is qiskit-ibm-runtime's client-side Sampler/Estimator (`executor_sampler`,
`executor_estimator`, program `executor`): SamplerV2/EstimatorV2 are deprecated since 0.50 and
the client-side ones are what `qiskit_ibm_runtime.Sampler` will point to.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from governance.providers.base import RunOutcome, RunRefusal

POD_KEY = "qgov-pod"  # what the client "exchanges": not a credential; the token comes from the file
RESULT_TIMEOUT_S = float(os.environ.get("QGOV_IBM_RESULT_TIMEOUT_SECONDS", "86400"))
# In a session the client polls a job's status every 0.1 s (10 Runtime calls a second per waiting job);
# a QPU job takes seconds to hours, so once a second is plenty
POLL_S = float(os.environ.get("QGOV_IBM_POLL_SECONDS", "1.0"))


class RuntimeRefusal(RunRefusal):
    """IBM refused or ended the work; `deterministic` says whether a retry could help."""


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def serve_mounted_token(token_file: Path) -> tuple[str, ThreadingHTTPServer]:
    """An IAM token endpoint on 127.0.0.1 that hands out the mounted token; returns its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                token = token_file.read_text().strip()
                claims = _claims(token)
                body = {"access_token": token, "token_type": "Bearer", "expiration": int(claims["exp"]),
                        "expires_in": int(claims["exp"]) - int(time.time()), "refresh_token": "not_supported"}
                status = 200
            except (OSError, IndexError, KeyError, ValueError):
                body, status = {"errorCode": "QGOV0001E", "errorMessage": "no usable token is mounted"}, 400
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # no request lines (they would carry nothing, but stay quiet)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def run_in_session(spec: Any, backend: Any, circuits: list[Any]) -> RunOutcome:
    """The ibm provider's run (governance/providers/ibm): the results, the metered usage, and the
    Runtime job and session the result document names."""
    results, usage, runtime_job = run_ibm(spec, backend, circuits)
    return RunOutcome(results, usage, {"runtimeJob": runtime_job, "session": os.environ.get("QGOV_IBM_SESSION")})


def run_ibm(spec: Any, backend: Any, circuits: list[Any]) -> tuple[list[dict[str, Any]], dict[str, str], str]:
    """Run the job's circuits in its Runtime session; returns (per-circuit results, usage, Runtime job id)."""
    token_file = Path(os.environ["QGOV_IBM_TOKEN_FILE"])
    session_id = os.environ["QGOV_IBM_SESSION"]
    mode_name = os.environ.get("QGOV_IBM_SESSION_MODE", "batch")
    iam_url, server = serve_mounted_token(token_file)
    os.environ["IAM_URL"] = iam_url
    try:
        return _submit(spec, backend, circuits, session_id, mode_name)
    finally:
        server.shutdown()


def _submit(spec: Any, backend: Any, circuits: list[Any], session_id: str,
            mode_name: str) -> tuple[list[dict[str, Any]], dict[str, str], str]:
    from qiskit import transpile
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_ibm_runtime import Batch, QiskitRuntimeService, Session
    from qiskit_ibm_runtime.accounts.exceptions import InvalidAccountError
    from qiskit_ibm_runtime.exceptions import (IBMInputValueError, IBMRuntimeError, RuntimeInvalidStateError,
                                               RuntimeJobFailureError, RuntimeJobMaxTimeoutError)
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    from governance.providers.simulate import bind, per_circuit

    points = [spec.binding(j) for j in range(spec.bindings)] if spec.parameter_values else [{}]
    url = os.environ.get("QGOV_IBM_URL") or None
    try:
        service = QiskitRuntimeService(
            channel="ibm_quantum_platform", token=POD_KEY, instance=os.environ["QGOV_IBM_INSTANCE"], url=url,
            url_resolver=(lambda base, instance, private, channel: base.rstrip("/") + "/api/v1") if url else None)
        usage = service.usage()  # an instance at its limit gets nothing submitted
        if usage.get("usage_limit_reached"):
            raise RuntimeRefusal(f"the IBM instance is at its usage limit ({usage.get('usage_consumed_seconds')}s "
                                 f"used of {usage.get('usage_limit_seconds')}s); the job was not submitted",
                                 deterministic=False, reason="InstanceLimitReached")
        mode = (Session if mode_name == "dedicated" else Batch).from_id(session_id, service)
        target = mode._backend if hasattr(mode, "_backend") else service.backend(backend.backend_name)
        if spec.primitive == "sampler":
            from qiskit_ibm_runtime.executor_sampler import Sampler

            compiled = transpile(circuits, target, optimization_level=1, seed_transpiler=0)  # once: then each point
            compiled = [bind(c, point) for c in compiled for point in points]
            job = Sampler(mode=mode).run(compiled, shots=spec.shots)
        else:
            from qiskit_ibm_runtime.executor_estimator import Estimator

            compiled = transpile([c.remove_final_measurements(inplace=False) for c in circuits], target,
                                 optimization_level=1, seed_transpiler=0)
            pubs = [(bind(c, point), [SparsePauliOp(p).apply_layout(c.layout) for p in obs])
                    for c, obs in zip(compiled, spec.observables, strict=True) for point in points]
            job = Estimator(mode=mode).run(pubs, precision=1 / spec.shots ** 0.5)
        _wait_or_cancel(job)
        result = job.result()
        metrics = job.metrics()
    except (RequestsApiError, InvalidAccountError) as exc:  # the latter: instance discovery, building the service
        raise _refusal(_status_of(exc), str(exc)) from None
    except RuntimeJobMaxTimeoutError as exc:
        raise RuntimeRefusal(f"the Runtime session reached its maximum time before the job finished: "
                             f"{_short(str(exc))}", deterministic=False, reason="MaxTimeExceeded") from None
    except RuntimeJobFailureError as exc:
        raise RuntimeRefusal(f"the Runtime job failed: {_short(str(exc))}", deterministic=True,
                             reason="RuntimeJobFailed") from None
    except RuntimeInvalidStateError as exc:
        raise RuntimeRefusal(f"the Runtime job was cancelled (its session was cancelled or closed): "
                             f"{_short(str(exc))}", deterministic=True, reason="JobCancelled") from None
    except (IBMInputValueError, IBMRuntimeError) as exc:
        raise _refusal(_status_of(exc), str(exc)) from None
    results: list[dict[str, Any]] = []
    for pub in result:
        if spec.primitive == "sampler":
            results.append({"counts": dict(sorted(pub.join_data().get_counts().items()))})
        else:
            results.append({"expectationValues": [float(x) for x in pub.data.evs],
                            "stds": [float(x) for x in pub.data.stds]})
    seconds = (metrics.get("usage") or {}).get("quantum_seconds", 0)
    from governance.budget.money import format_quantity

    runs = len(circuits) * len(points)
    usage = {"qpuSeconds": format_quantity(Decimal(str(seconds))), "shots": str(spec.shots * runs),
             "tasks": str(runs)}
    return per_circuit(results, points, spec.parameter_values != ()), usage, job.job_id()


def _refusal(status: int | None, message: str) -> RuntimeRefusal:
    text = _short(message)
    if status == 401:
        return RuntimeRefusal(f"IBM Quantum refused the credentials (HTTP 401): {text}", deterministic=True,
                              reason="CredentialsRefused")
    if status == 409 or "closed" in text.lower() and "session" in text.lower():
        return RuntimeRefusal(f"the Runtime session is closed (HTTP 409): {text}", deterministic=False,
                              reason="SessionClosed")
    if status is not None and status >= 500:
        return RuntimeRefusal(f"IBM Quantum failed after retries (HTTP {status}): {text}", deterministic=False,
                              reason="RuntimeUnavailable")
    if status is not None and 400 <= status < 500:
        return RuntimeRefusal(f"IBM Quantum refused the job (HTTP {status}): {text}", deterministic=True,
                              reason="RuntimeRefused")
    return RuntimeRefusal(f"IBM Quantum: {text}", deterministic=False, reason="RuntimeError")


class _Terminated(BaseException):
    """SIGTERM: the pod is being deleted (its QiskitJob was, or its session)."""


def _wait_or_cancel(job: Any) -> None:
    """Wait for the Runtime job; on SIGTERM cancel it, so that a deleted QiskitJob stops IBM's meter."""
    import signal

    def stop(*_: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        job.wait_for_final_state(timeout=RESULT_TIMEOUT_S, poll_interval=POLL_S)
    except _Terminated:
        try:
            job.cancel()
        except Exception:  # noqa: BLE001 - it may have finished meanwhile; the pod is going either way
            pass
        raise RuntimeRefusal(f"the executor was stopped (its pod was deleted); Runtime job {job.job_id()} was "
                             "cancelled", deterministic=True, reason="JobCancelled") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status behind a client error: its own, its cause's, or urllib3's "too many 503 error
    responses" when the client's retries ran out."""
    import re

    seen: BaseException | None = exc
    while seen is not None:
        for attribute in ("status_code", "code"):
            value = getattr(seen, attribute, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
        found = re.search(r"too many (\d{3}) error responses", str(seen))
        if found:
            return int(found.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def _short(message: str) -> str:
    """IBM's message as a status may show it: short and sanitised (a body may carry anything)."""
    from governance.providers.ibm.answers import brief

    return brief(message, 300)
