"""What the operator's own threads and late events need of kopf, shared by the objects startup.py
builds: whether the operator is running, and a kopf handler's context variables.

(Not IBM Qiskit Runtime: that is governance/providers/ibm/runtime_api.py.)"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any


class KopfContext:
    def __init__(self) -> None:
        self.running = False  # between start-up and clean-up (events and timers can still fire outside)
        self._context: contextvars.Context | None = None  # an object handler's context (see remember)

    def remember(self) -> None:
        """Called by object handlers: kopf.event needs context variables that kopf sets only for its
        per-object tasks, so the operator's own threads (the status writer, the pod sweep) borrow a
        copy of the first such context."""
        if self._context is None:
            self._context = contextvars.copy_context()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in a copy of a kopf handler's context (or of the caller's, before there is one)."""
        context = self._context
        return (context.copy() if context is not None else contextvars.copy_context()).run(fn, *args)
