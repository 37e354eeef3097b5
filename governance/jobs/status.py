"""A typed view of a QiskitJob's status, parsed from the object the API server returns.

A display: money state (what a job was admitted against, its counted attempts and charges) is the
ledger's, keyed by the job's UID (Ledger.job_terms, attempt_totals); nothing here is read back to
decide a charge. Its fields drive what the operator does next (phase, attempt, retry time), and a
namespace member who writes them can only confuse its own job, never lower what it is charged."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..budget.types import Decision, QueueChange, ReservationState
from ..conditions import set_condition
from ..timestamps import now_iso
from .phases import FAILURES, TERMINAL, Phase



class Condition(str, enum.Enum):
    """The types of a QiskitJob's status.conditions (what `kubectl wait --for=condition=...` takes)."""

    ADMITTED = "Admitted"  # True: paid for (or unbudgeted); False: queued or refused, the reason says which
    COMPLETE = "Complete"  # the job ended: True when it succeeded
    FAILED = "Failed"  # the job ended failed or refused
    STALLED = "Stalled"  # why an admitted job's pod does not start
    LEDGER_UNAVAILABLE = "LedgerUnavailable"  # its work waits for the ledger


STALLED = Condition.STALLED.value
LEDGER_UNAVAILABLE = Condition.LEDGER_UNAVAILABLE.value


@dataclass(frozen=True)
class JobStatus:
    phase: str | None = None
    attempts: int = 0  # the current attempt's number (0: none started)
    counted_attempt: int = 0  # the last attempt whose usage is in used_micro
    retry_at: str | None = None  # ISO time of the next attempt, while a retry waits
    used_micro: int = 0  # what the counted attempts used, in the budget's unit
    qpu_seconds: Decimal = Decimal(0)
    currency: str = "USD"
    budget: str | None = None  # the budget that pays (None: unbudgeted, or a dedicated session pays)
    session: str | None = None  # the QiskitSession it runs in
    paid_by_session: bool = False  # a dedicated session reserved its wall-clock time
    estimated_micro: int | None = None  # None: not priced (yet)
    session_moves: int = 0  # automatic batches it was moved on from
    start_time: str | None = None
    completion_time: str | None = None
    message: str = ""
    conditions: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> JobStatus:
        """The status of a job object (a missing or empty status is the default)."""
        return cls.parse(job.get("status") or {})

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> JobStatus:
        estimated = s.get("estimatedMicro")
        return cls(
            phase=s.get("phase"), attempts=int(s.get("attempts") or 0),
            counted_attempt=int(s.get("countedAttempt") or 0), retry_at=s.get("retryAt") or None,
            used_micro=int(s.get("usedMicro") or 0), qpu_seconds=Decimal(str(s.get("qpuSeconds") or 0)),
            currency=s.get("currency") or "USD", budget=s.get("budget") or None, session=s.get("session") or None,
            paid_by_session=bool(s.get("paidBySession")), estimated_micro=int(estimated) if estimated not in (None, "") else None,
            session_moves=int(s.get("sessionMoves") or 0), start_time=s.get("startTime"),
            completion_time=s.get("completionTime"),
            message=str(s.get("message") or ""), conditions=tuple(s.get("conditions") or ()))

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def condition_is(self, type_: str, value: str) -> bool:
        return any(c.get("type") == type_ and c.get("status") == value for c in self.conditions)

    def counted(self, attempt: int) -> bool:
        """Whether this attempt's usage is already in used_micro."""
        return self.counted_attempt >= attempt


def reason_of(status: Mapping[str, Any]) -> str:
    """Why a job is where it is, as its conditions say: the Failed condition's reason once it
    failed or was refused, else the Admitted condition's (Queued, OverBudget, Reserved, ...). The
    metrics label and the Qiskit client's refusal read the same."""
    wanted = Condition.FAILED.value if status.get("phase") in FAILURES else Condition.ADMITTED.value
    for condition in status.get("conditions") or ():
        if condition.get("type") == wanted:
            return str(condition.get("reason") or "")
    return ""


def queued_priced(status: Mapping[str, Any]) -> bool:
    """A job's status (as the API server returns it) says Queued after it was priced: the ledger
    holds a queued reservation for it, or decided it since and the operator has not acted on that
    yet (see `queued_change`). Read from the raw status: the pod sweep asks it of every job."""
    return status.get("phase") == Phase.QUEUED.value and status.get("estimatedMicro") not in (None, "")


def stalled_with(status: Mapping[str, Any], message: str) -> bool:
    """A job's status already says it is stalled for this reason (Stalled True, same message): a
    stall is written once per new reason. A Stalled condition that is False (its pod ran since)
    says nothing is stalled, whatever its message, so the same reason coming back is said again."""
    return any(c.get("type") == STALLED and c.get("status") == "True" and c.get("message") == message
               for c in status.get("conditions") or ())


def queued_change(key: str, reservation_state: ReservationState | None, message: str = "") -> QueueChange | None:
    """What to do with a job the cluster still shows Queued whose reservation `key` is now in
    `reservation_state` (None: the ledger has none): the ledger admitted it (held) or refused it
    (`message`: why) while whoever freed the funds did not get to act on it (the operator
    stopped, or the event was lost). None: nothing to catch up (still queued, released, gone)."""
    if reservation_state == ReservationState.HELD:
        return QueueChange(key, Decision.ADMITTED, "")
    if reservation_state == ReservationState.REFUSED:
        return QueueChange(key, Decision.REFUSED, message)
    return None


# ---------------------------------------------------------------------- status builders
# Pure: what the job controller writes as a job's status, built from the job as read. The handlers
# post the Events that go with them and write the result.


def job_conditions(job: Mapping[str, Any], *changes: tuple[str, bool, str, str]) -> list[dict[str, Any]]:
    """The job's conditions with these (type, ok, reason, message) changes applied."""
    conditions = (job.get("status") or {}).get("conditions")
    for type_, ok, reason, message in changes:
        conditions = set_condition(conditions, type_, ok, reason, message, job["metadata"].get("generation"))
    return conditions or []


def ledger_answered(job: Mapping[str, Any]) -> tuple[tuple[str, bool, str, str], ...]:
    """The condition change for a status written after the ledger answered (an admission, a
    settlement): LedgerUnavailable turns False in the same write. Written on its own later, the
    clearing could be undone by a write built from an older read of the job."""
    if JobStatus.of(job).condition_is(LEDGER_UNAVAILABLE, "True"):
        return ((LEDGER_UNAVAILABLE, False, "LedgerAvailable", "the budget ledger is reachable again"),)
    return ()


def terminal_status(job: Mapping[str, Any], phase: str, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """A status for a job that ends here (Complete, and Failed or Admitted False as the phase says);
    Events go out with the same reason."""
    changes = [(Condition.COMPLETE.value, phase == Phase.SUCCEEDED.value, reason, message), *ledger_answered(job)]
    if phase in FAILURES:
        changes.append((Condition.FAILED.value, True, reason, message))
    if phase == Phase.REFUSED.value:
        changes.append((Condition.ADMITTED.value, False, reason, message))
    conditions = job_conditions(job, *changes)
    return {"phase": phase, "message": message, "conditions": conditions, "completionTime": now_iso(),
            "retryAt": None, **extra}


def admitted_status(job: Mapping[str, Any], base: Mapping[str, Any], phase: str, reason: str,
                    message: str) -> dict[str, Any]:
    """A job admitted at once: `base` (its pricing fields) with the phase, the first attempt and the
    Admitted condition, which records the admission (reason, message, time)."""
    return dict(base, phase=phase, message=message, attempts=1,
                conditions=job_conditions(job, (Condition.ADMITTED.value, True, reason, message),
                                                *ledger_answered(job)))


def queued_status(job: Mapping[str, Any], base: Mapping[str, Any], phase: str, message: str) -> dict[str, Any]:
    """A job its budget cannot pay yet: `base` (its pricing fields), Queued, Admitted False."""
    return dict(base, phase=phase, message=message,
                conditions=job_conditions(job, (Condition.ADMITTED.value, False, "Queued", message),
                                          *ledger_answered(job)))


def admitted_from_queue(job: Mapping[str, Any], message: str) -> dict[str, Any]:
    """What a queued job's status gains when the ledger admits it (funds were freed)."""
    return {"message": message,
            "conditions": job_conditions(job, (Condition.ADMITTED.value, True, "AdmittedFromQueue", message))}
