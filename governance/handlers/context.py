"""What the handlers share for the life of the operator process: config, ledger, batcher, clients.

(Not IBM Qiskit Runtime: that is governance/providers/ibm/runtime_api.py.)"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
import threading
from typing import Any

import kubernetes

from ..budget.batcher import ReservationBatcher
from ..budget.ledger import Ledger
from . import apiwrites
from .config import OperatorConfig
from .jobphases import JobPhases


@dataclass
class OperatorContext:
    config: OperatorConfig
    ledger: Ledger
    batcher: ReservationBatcher
    kopf_context: contextvars.Context | None = None  # an object handler's context (see in_kopf_context)
    expiry: Any = None  # alarms.Alarms: finished jobs' deletion times (expiry.py)
    active_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> latest body of unfinished jobs
    backends: dict[str, Any] = field(default_factory=dict)  # QiskitBackend name -> parsed Backend | Problem (watched)
    budget_units: dict[str, dict[str, str]] = field(default_factory=dict)  # namespace -> budget name -> unit
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
            local.rbac = kubernetes.client.RbacAuthorizationV1Api(api)
            local.http = apiwrites.Connection(api) if apiwrites.Connection.supported(api) else None
        return local

    @property
    def core(self) -> Any:
        return self._clients().core

    @property
    def custom(self) -> Any:
        return self._clients().custom

    @property
    def rbac(self) -> Any:
        return self._clients().rbac

    @property
    def http(self) -> apiwrites.Connection | None:
        """The thread's connection for the admission's writes (apiwrites.py); None: use the client."""
        return self._clients().http


_context: OperatorContext | None = None


def set_context(context: OperatorContext | None) -> None:
    global _context
    _context = context


def started() -> bool:
    """False before start-up and after clean-up (events and timers can still fire then)."""
    return _context is not None


def remember_kopf_context() -> None:
    """Called by object handlers: kopf.event needs context variables that kopf sets only for its
    per-object tasks, so the operator's own threads (the status writer, the pod sweep) borrow a
    copy of the first such context."""
    if _context is not None and _context.kopf_context is None:
        _context.kopf_context = contextvars.copy_context()


def in_kopf_context(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a copy of a kopf handler's context (or of the caller's, before there is one)."""
    context = _context.kopf_context if _context is not None else None
    return (context.copy() if context is not None else contextvars.copy_context()).run(fn, *args)


def ctx() -> OperatorContext:
    if _context is None:
        raise RuntimeError("the operator has not started (no ledger yet)")
    return _context
