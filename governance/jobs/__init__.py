"""The job core: what qgov decides about a QiskitJob, without Kubernetes, kopf or a database.

- phases.py: the phases (Phase, TERMINAL, ACTIVE);
- status.py: JobStatus, a typed view of a job's status;
- admission.py: decide_admission, from a spec to fail / refuse / queue / admit (in a session);
- events.py: Event, what qgov says happened (handlers/kube.py `emit` posts it);
- placement.py: session_not_open, a job whose session is not open: wait, move to a new batch, or end;
- attempts.py: what an attempt costs (attempt_charge) and what follows it (after_attempt: a
  retry at a time after a doubling backoff, or the end and the amount to settle).

handlers/jobs.py reads the cluster and the ledger, calls these, and applies their answers.

The admission's names are loaded when first used: admission.py prices circuits (qiskit), and
what needs only the phases (`qgov ledger audit`, `import governance.jobs.phases`) does not load it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .attempts import (EXIT_DETERMINISTIC, AlreadyCounted, Finish, Retry, after_attempt, attempt_charge,
                       retry_delay)
from .events import Event
from .phases import ACTIVE, TERMINAL, Phase
from .status import JobStatus

if TYPE_CHECKING:
    from .admission import (Admit, AdmissionFacts, Fail, Need, NeedBackend, NeedBudget, NeedEstimate, NeedReservation,
                            NeedSession, Outcome, Priced, Queue, Refuse, decide_admission)

_ADMISSION = frozenset({"Admit", "AdmissionFacts", "Fail", "Need", "NeedBackend", "NeedBudget", "NeedEstimate",
                        "NeedReservation", "NeedSession", "Outcome", "Priced", "Queue", "Refuse", "decide_admission"})


def __getattr__(name: str) -> Any:
    if name in _ADMISSION:
        return getattr(importlib.import_module(".admission", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ACTIVE", "EXIT_DETERMINISTIC", "TERMINAL", "Admit", "AdmissionFacts", "AlreadyCounted", "Event", "Fail", "Finish",
           "JobStatus", "Need", "NeedBackend", "NeedBudget", "NeedEstimate", "NeedReservation", "NeedSession",
           "Outcome", "Phase", "Priced", "Queue", "Refuse", "Retry", "after_attempt", "attempt_charge",
           "decide_admission", "retry_delay"]
