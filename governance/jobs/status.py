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

from .phases import TERMINAL


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
