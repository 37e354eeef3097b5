"""What the handlers share for the life of the operator process: config, ledger, batcher, clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..budget.batcher import ReservationBatcher
from ..budget.ledger import Ledger
from .config import OperatorConfig


@dataclass
class Runtime:
    config: OperatorConfig
    ledger: Ledger
    batcher: ReservationBatcher
    core: Any  # kubernetes.client.CoreV1Api
    custom: Any  # kubernetes.client.CustomObjectsApi
    dirty_budgets: set[tuple[str, str]] = field(default_factory=set)  # (namespace, name) whose status is stale
    status_written: dict[tuple[str, str], float] = field(default_factory=dict)  # monotonic time of last write


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def rt() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator has not started (no ledger yet)")
    return _runtime
