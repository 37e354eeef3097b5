"""A typed view of a QiskitJob's status, parsed from the object the API server returns.

A display: money state (what a job was admitted against, its counted attempts and charges) is the
ledger's, keyed by the job's UID (Ledger.job_terms, attempt_totals); nothing here is read back to
decide a charge. Its fields drive what the operator does next (phase, attempt, retry time), and a
namespace member who writes them can only confuse its own job, never lower what it is charged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..budget.types import Decision, QueueChange, ReservationState
from .phases import TERMINAL, Phase

STALLED = "Stalled"  # the condition that says why an admitted job's pod does not start


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
