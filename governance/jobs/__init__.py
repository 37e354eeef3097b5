"""The job core: what qgov decides about a QiskitJob, without Kubernetes, kopf or a database.

- phases.py: the phases (Phase, TERMINAL, ACTIVE, FAILURES);
- status.py: JobStatus, a typed view of a job's status; stalled_with (said stalled for a reason
  already?), queued_priced and queued_change (a job left Queued after the ledger decided it);
  the status builders the controller writes (terminal_status, admitted_status, job_conditions);
- admission.py: decide_admission, from a spec to fail / refuse / queue / admit (in a session);
- events.py: Event, what qgov says happened (handlers/kube.py `emit` posts it);
- placement.py: session_not_open, a job whose session is not open: wait, move to a new batch, or end;
- attempts.py: what an attempt costs (attempt_charge, from its trusted usage) and what follows
  it (after_attempt: a retry at a time after a doubling backoff, or the end and the amount to
  settle, from the ledger's counted attempts);
- ownpod.py: whether a pod is the operator's own attempt pod (its UID is the ledger's record);
- runnerreport.py: a local session's runner's report ConfigMap per attempt;
- results.py: an attempt's result ConfigMaps, and whether a given attempt wrote one.

handlers/jobs.py and its job*.py parts read the cluster and the ledger, call these, and apply
their answers.

The package imports the light modules only: admission.py prices circuits (qiskit), so it is
imported as `governance.jobs.admission` by those that decide admissions, and what needs only
the phases (`qgov ledger audit`) does not load qiskit.
"""

from __future__ import annotations

from .attempts import (EXIT_DETERMINISTIC, AlreadyCounted, Finish, Retry, after_attempt, attempt_charge,
                       retry_delay)
from .events import Event
from .phases import ACTIVE, FAILURES, TERMINAL, Phase
from .status import STALLED, JobStatus, queued_change, queued_priced, stalled_with

__all__ = ["ACTIVE", "EXIT_DETERMINISTIC", "FAILURES", "TERMINAL", "AlreadyCounted", "Event", "Finish", "JobStatus", "Phase", "Retry",
           "STALLED", "after_attempt", "attempt_charge", "queued_change",
           "queued_priced", "retry_delay", "stalled_with"]
