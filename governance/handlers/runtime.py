"""What the handlers share for the life of the operator process: config, ledger, batcher, clients."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
import threading
from typing import Any

import kubernetes

from ..budget.batcher import ReservationBatcher
from ..budget.ledger import Ledger
from ..sessions.batching import Batcher
from ..sessions.tokens import TokenManager
from .config import OperatorConfig
from .jobphases import JobPhases


@dataclass
class Runtime:
    config: OperatorConfig
    ledger: Ledger
    batcher: ReservationBatcher
    dirty_budgets: set[tuple[str, str]] = field(default_factory=set)  # (namespace, name) whose status is stale
    status_written: dict[tuple[str, str], float] = field(default_factory=dict)  # monotonic time of last write
    backends: dict[str, Any] = field(default_factory=dict)  # QiskitBackend name -> parsed Backend | Problem (watched)
    budget_units: dict[str, dict[str, str]] = field(default_factory=dict)  # namespace -> budget name -> unit
    tokens: TokenManager = field(default_factory=TokenManager)  # IAM bearer tokens per credential
    batches: Batcher | None = None  # automatic Runtime batches of ibm jobs
    batch_lock: threading.Lock = field(default_factory=threading.Lock)
    executor: Executor | None = None  # kopf's thread pool, for work that async handlers hand off
    job_phases: JobPhases = field(default_factory=JobPhases)  # counts per budget and phase, from the watch
    _local: threading.local = field(default_factory=threading.local)

    def _clients(self) -> Any:
        """One kubernetes ApiClient per thread: kopf's worker threads sharing one client end up
        sharing HTTP connections (ProtocolError: ResponseNotReady)."""
        local = self._local
        if not hasattr(local, "core"):
            api = kubernetes.client.ApiClient()
            local.core, local.custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        return local

    @property
    def core(self) -> Any:
        return self._clients().core

    @property
    def custom(self) -> Any:
        return self._clients().custom


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def started() -> bool:
    """False before start-up and after clean-up (events and timers can still fire then)."""
    return _runtime is not None


def rt() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator has not started (no ledger yet)")
    return _runtime
