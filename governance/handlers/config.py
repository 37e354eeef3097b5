"""Operator settings, from the environment (the Deployment sets them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from collections.abc import Mapping

from .pods import DEFAULT_RESOURCES, ExecutorPodSettings

from ..costapi import port_from_env as costapi_port
from ..metricsauth import mode_from_env


def listen_address(environ: Mapping[str, str] = os.environ) -> str:
    """Where the replica's listeners bind: QGOV_LISTEN_ADDRESS, else the pod's IP (POD_IP from the
    downward API: the address the kubelet probes and Prometheus scrapes), else every address."""
    return environ.get("QGOV_LISTEN_ADDRESS") or environ.get("POD_IP") or ""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def session_interval_seconds() -> float:
    """How often sessions are looked at (idle, maxTime, token refresh). Read at import: kopf's
    timer decorator needs it before start-up."""
    return float(os.environ.get("QGOV_SESSION_INTERVAL_SECONDS", "5"))


def _json(name: str, default: Any, kind: type) -> Any:
    """A setting holding JSON (a pod spec's field as it is written there); a wrong one stops the
    operator at start with its name, rather than every executor pod being refused later."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a JSON {'object' if kind is dict else 'list'}, not {raw!r}")
    return value


def executor_pod_settings() -> ExecutorPodSettings:
    """QGOV_EXECUTOR_RESOURCES (JSON, as a container's `resources`), QGOV_EXECUTOR_NODE_SELECTOR
    (JSON object), QGOV_EXECUTOR_TOLERATIONS (JSON list), QGOV_EXECUTOR_IMAGE_PULL_SECRETS (names,
    comma-separated), QGOV_EXECUTOR_PRIORITY_CLASS_NAME."""
    resources = _json("QGOV_EXECUTOR_RESOURCES", DEFAULT_RESOURCES, dict)
    unknown = set(resources) - {"requests", "limits", "claims"}
    if unknown:
        raise ValueError(f"QGOV_EXECUTOR_RESOURCES: unknown field(s) {sorted(unknown)} (requests, limits)")
    return ExecutorPodSettings(
        resources=resources,
        node_selector={str(k): str(v) for k, v in _json("QGOV_EXECUTOR_NODE_SELECTOR", {}, dict).items()},
        tolerations=_json("QGOV_EXECUTOR_TOLERATIONS", [], list),
        image_pull_secrets=tuple(n.strip() for n in os.environ.get("QGOV_EXECUTOR_IMAGE_PULL_SECRETS", "").split(",")
                                 if n.strip()),
        priority_class_name=os.environ.get("QGOV_EXECUTOR_PRIORITY_CLASS_NAME") or None)


@dataclass(frozen=True)
class OperatorConfig:
    database_url: str | None
    executor_image: str
    allow_unbudgeted: bool
    retry_base_seconds: float
    status_interval_seconds: float  # at most one status write per budget this often (budgetstatus.py)
    batch_window_seconds: float = 5.0  # ibm jobs arriving within this window share one Runtime batch
    batch_max_jobs: int = 20
    batch_idle_seconds: int = 60  # an automatic batch closes after this long without work
    batch_max_time_seconds: int = 28800  # and never lives longer than this
    ibm_default_secret: str = "ibm-quantum"  # the credentials Secret of jobs that name none
    instance_retry_seconds: float = 60.0  # how soon to look again at an instance at its usage limit
    pod_sweep_seconds: float = 30.0  # how often pods deleted while Pending are looked for (podsweep.py)
    job_ttl_seconds: int | None = None  # finished QiskitJobs without spec.ttlSecondsAfterFinished (expiry.py)
    provision_executor_identity: bool = True  # ServiceAccount + RoleBinding qgov-executor per budget (identity.py)
    metrics_port: int = 9090  # Prometheus /metrics (governance/metrics.py); 0 serves none
    cost_api_port: int = 9091  # the cost API, GET /costs (governance/costapi.py); 0 serves none
    metrics_auth: str = "kubernetes"  # who may read it: TokenReview + SubjectAccessReview, or "none" (metricsauth.py)
    executor_image_pull_policy: str | None = None  # executor pods' imagePullPolicy (None: Kubernetes' default)
    executor_pod: ExecutorPodSettings = field(default_factory=ExecutorPodSettings)  # resources, scheduling

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(
            database_url=os.environ.get("QGOV_DATABASE_URL"),
            executor_image=os.environ.get("QGOV_EXECUTOR_IMAGE", "ghcr.io/qgov/executor:0.1.0"),
            allow_unbudgeted=_flag("QGOV_ALLOW_UNBUDGETED"),
            retry_base_seconds=float(os.environ.get("QGOV_RETRY_BASE_SECONDS", "2")),
            status_interval_seconds=float(os.environ.get("QGOV_STATUS_INTERVAL_SECONDS", "1")),
            batch_window_seconds=float(os.environ.get("QGOV_BATCH_WINDOW_SECONDS", "5")),
            batch_max_jobs=int(os.environ.get("QGOV_BATCH_MAX_JOBS", "20")),
            batch_idle_seconds=int(os.environ.get("QGOV_BATCH_IDLE_SECONDS", "60")),
            batch_max_time_seconds=int(os.environ.get("QGOV_BATCH_MAX_TIME_SECONDS", "28800")),
            ibm_default_secret=os.environ.get("QGOV_IBM_DEFAULT_SECRET", "ibm-quantum"),
            instance_retry_seconds=float(os.environ.get("QGOV_INSTANCE_RETRY_SECONDS", "60")),
            pod_sweep_seconds=float(os.environ.get("QGOV_POD_SWEEP_SECONDS", "30")),
            job_ttl_seconds=int(os.environ["QGOV_JOB_TTL_SECONDS"]) if os.environ.get("QGOV_JOB_TTL_SECONDS") else None,
            provision_executor_identity=os.environ.get("QGOV_PROVISION_EXECUTOR_IDENTITY", "true").lower()
            not in ("0", "false", "no"),
            metrics_port=int(os.environ.get("QGOV_METRICS_PORT", "9090")),
            cost_api_port=costapi_port(os.environ.get("QGOV_COST_API_PORT")),
            metrics_auth=mode_from_env(os.environ.get("QGOV_METRICS_AUTH")),
            executor_image_pull_policy=os.environ.get("QGOV_EXECUTOR_IMAGE_PULL_POLICY") or None,
            executor_pod=executor_pod_settings(),
        )
