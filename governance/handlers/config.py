"""Operator settings, from the environment (the Deployment sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..metricsauth import mode_from_env


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def session_interval_seconds() -> float:
    """How often sessions are looked at (idle, maxTime, token refresh). Read at import: kopf's
    timer decorator needs it before start-up."""
    return float(os.environ.get("QGOV_SESSION_INTERVAL_SECONDS", "5"))


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
    metrics_auth: str = "kubernetes"  # who may read it: TokenReview + SubjectAccessReview, or "none" (metricsauth.py)
    executor_image_pull_policy: str | None = None  # executor pods' imagePullPolicy (None: Kubernetes' default)

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
            metrics_auth=mode_from_env(os.environ.get("QGOV_METRICS_AUTH")),
            executor_image_pull_policy=os.environ.get("QGOV_EXECUTOR_IMAGE_PULL_POLICY") or None,
        )
