"""Operator settings, from the environment (the Deployment sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class OperatorConfig:
    database_url: str | None
    executor_image: str
    allow_unbudgeted: bool
    retry_base_seconds: float
    status_interval_seconds: float

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(
            database_url=os.environ.get("QGOV_DATABASE_URL"),
            executor_image=os.environ.get("QGOV_EXECUTOR_IMAGE", "ghcr.io/qgov/executor:0.1.0"),
            allow_unbudgeted=_flag("QGOV_ALLOW_UNBUDGETED"),
            retry_base_seconds=float(os.environ.get("QGOV_RETRY_BASE_SECONDS", "2")),
            status_interval_seconds=float(os.environ.get("QGOV_STATUS_INTERVAL_SECONDS", "5")),
        )
