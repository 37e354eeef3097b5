"""The few IBM Qiskit Runtime REST calls the operator itself makes: open, inspect, close and
cancel sessions, and read the instance's usage before submitting work.

Jobs are submitted by executor pods (qiskit-ibm-runtime, see executor/ibm.py); the operator only
manages sessions, so it needs neither the client's instance discovery nor its backend objects.
Authentication is a bearer token from the TokenManager; 5xx answers and connection errors are
retried, and every error names the call and IBM's message, never a credential.
"""

from __future__ import annotations

import time
from urllib.parse import quote
from dataclasses import dataclass
from typing import Any

import requests

from ...sessions.tokens import TokenManager
from .answers import brief
from .iam import Credential

DEFAULT_HOST = "quantum.cloud.ibm.com"


class RuntimeApiError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InstanceUsage:
    consumed_seconds: int
    limit_seconds: int | None
    remaining_seconds: int | None
    limit_reached: bool


def runtime_base_url(credential: Credential) -> str:
    """`url` when the credential names a private endpoint; else IBM's regional endpoint."""
    if credential.url:
        return credential.url.rstrip("/") + "/api/v1"
    region = credential.instance.split(":")[5] if credential.instance.count(":") >= 5 else ""
    host = f"{region}.{DEFAULT_HOST}" if region and region != "us-east" else DEFAULT_HOST
    return f"https://{host}/api/v1"


class RuntimeApi:
    def __init__(self, credential: Credential, tokens: TokenManager, *, timeout: float = 30.0,
                 attempts: int = 3, http: requests.Session | None = None) -> None:
        self.credential, self.tokens, self.timeout, self.attempts = credential, tokens, timeout, attempts
        self.base = runtime_base_url(credential)
        self.http = http or requests.Session()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        problem, status = "", None
        for attempt in range(self.attempts):
            headers = {"Authorization": f"Bearer {self.tokens.token(self.credential).value}",
                       "Service-CRN": self.credential.instance, "Accept": "application/json"}
            try:
                response = self.http.request(method, self.base + path, json=body, headers=headers,
                                             timeout=self.timeout)
            except requests.RequestException as exc:
                problem, status = f"cannot reach IBM Quantum at {self.base}: {type(exc).__name__}", None
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                status, problem = response.status_code, _ibm_message(response)
                if status < 500:
                    break
            if attempt + 1 < self.attempts:
                time.sleep(min(4.0, 0.25 * 2 ** attempt))
        raise RuntimeApiError(f"IBM Quantum {method} {path.split('?')[0]}: "
                              f"{f'HTTP {status}: ' if status else ''}{problem}", status)

    def create_session(self, backend: str, mode: str, max_time_s: int) -> str:
        answer = self._call("POST", "/sessions", {"backend": backend, "instance": self.credential.instance,
                                                  "mode": mode, "max_ttl": max_time_s})
        return str(answer["id"])

    def session(self, session_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", f"/sessions/{session_id}")
        return answer

    def close_session(self, session_id: str) -> None:
        """Stop accepting jobs; what is queued or running finishes (accepting_jobs=false)."""
        try:
            self._call("PATCH", f"/sessions/{session_id}", {"accepting_jobs": False})
        except RuntimeApiError as exc:
            if exc.status != 404:
                raise

    def cancel_session(self, session_id: str) -> None:
        """Cancel the session's queued and running jobs and close it."""
        try:
            self._call("DELETE", f"/sessions/{session_id}/close")
        except RuntimeApiError as exc:
            if exc.status != 404:
                raise

    def job(self, job_id: str) -> dict[str, Any]:
        """A Runtime job as IBM describes it (its session_id, status, backend)."""
        answer: dict[str, Any] = self._call("GET", f"/jobs/{quote(job_id, safe='')}")
        return answer

    def job_metrics(self, job_id: str) -> dict[str, Any]:
        """A Runtime job's metrics: `usage.quantum_seconds` is what IBM meters (and bills) for it."""
        answer: dict[str, Any] = self._call("GET", f"/jobs/{quote(job_id, safe='')}/metrics")
        return answer

    def instance_usage(self) -> InstanceUsage:
        data = self._call("GET", "/instances/usage")
        return InstanceUsage(int(data.get("usage_consumed_seconds") or 0), data.get("usage_limit_seconds"),
                             data.get("usage_remaining_seconds"), bool(data.get("usage_limit_reached")))


def _ibm_message(response: requests.Response) -> str:
    """IBM's reason, short and sanitised (answers.brief): a body may carry anything."""
    try:
        data = response.json()
        errors = data.get("errors") or [] if isinstance(data, dict) else []
        if errors:
            return brief("; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict)))
        return brief(data.get("message") if isinstance(data, dict) and data.get("message") else response.reason)
    except ValueError:
        return brief(response.reason or "no detail")
