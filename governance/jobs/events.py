"""What qgov says happened to an object (a job, its budget, a session): one type for every
Event the operator posts. The Kubernetes adapter (handlers/kube.py `emit`) turns it into a
Kubernetes Event, and passes it to whoever listens (metrics, later) first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str  # CamelCase, as the conditions' reasons
    message: str
