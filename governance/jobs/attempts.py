"""A job's attempts: what one costs, and what follows when one ends (a retry after a backoff, or
the end of the job and the settlement of what all its attempts used)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ..budget.costmodel import PriceList, Usage, amount_in_unit
from .events import Event
from .phases import Phase
from .status import JobStatus

EXIT_DETERMINISTIC = 2  # the executor's exit code for an error that would fail again (invalid circuits, ...)
DEFAULT_BACKOFF_LIMIT = 2  # retries after the first attempt, when spec.backoffLimit is not set


def attempt_charge(report: Mapping[str, Any], prices: PriceList | None, unit: str, paid_by_session: bool) -> int:
    """What an attempt's reported usage costs, in the budget's `unit`: 0 when it reported none, when
    a dedicated session pays for its time, or when the backend's prices are unknown (None)."""
    usage = report.get("usage") or {}
    if not usage or paid_by_session or prices is None:
        return 0
    measured = Usage(qpu_seconds=Decimal(usage.get("qpuSeconds", "0")), cpu_seconds=Decimal(usage.get("cpuSeconds", "0")),
                     shots=int(usage.get("shots", 0)), tasks=int(usage.get("tasks", 0)))
    return amount_in_unit(measured, prices, unit)


def retry_delay(base_seconds: float, attempt: int) -> float:
    """Seconds between the end of failed attempt `attempt` and the start of the next: doubling."""
    return base_seconds * 2 ** (attempt - 1)


@dataclass(frozen=True)
class AlreadyCounted:
    """The attempt was counted and its retry is scheduled: nothing to do (a replayed event)."""


@dataclass(frozen=True)
class Retry:
    """Start attempt `attempt + 1` at `at`; meanwhile the job stays Admitted."""

    attempt: int
    used_micro: int  # all counted attempts, this one included
    qpu_seconds: Decimal
    delay: float
    at: datetime
    message: str

    @property
    def event(self) -> Event:
        return Event("Warning", "AttemptFailed", self.message)


@dataclass(frozen=True)
class Finish:
    """The job ends with this attempt: settle `used_micro`, then write the terminal status."""

    attempt: int
    phase: Phase  # SUCCEEDED or FAILED
    used_micro: int
    qpu_seconds: Decimal
    reason: str  # the conditions' and the Event's reason
    why: str  # for a failure: the executor's error, or its exit code
    deterministic: bool  # failed with an error that would fail again: not retried

    def message(self, charged: str) -> str:
        """What the job's status and Event say, once the settlement said what was `charged`."""
        if self.phase is Phase.SUCCEEDED:
            return f"succeeded on attempt {self.attempt}; charged {charged}"
        kind = "does not retry a deterministic error" if self.deterministic else \
            f"gave up after {self.attempt} attempts"
        return f"attempt {self.attempt} failed: {self.why}; qgov {kind}; charged {charged}"

    def event(self, message: str) -> Event:
        """The job's last Event, saying `message` (self.message(charged))."""
        if self.phase is Phase.SUCCEEDED:
            return Event("Normal", "Succeeded", message)
        return Event("Warning", "Failed", message)


def after_attempt(status: JobStatus, attempt: int, succeeded: bool, report: Mapping[str, Any],
                  exit_code: int | None, charge_micro: int, backoff_limit: int, retry_base_seconds: float,
                  now: datetime) -> AlreadyCounted | Retry | Finish:
    """An attempt ended: its pod (or a session's runner) reported `report` and `exit_code`.
    `charge_micro` is what the attempt costs (attempt_charge), added unless the attempt was counted
    already (a replay after a crash between the status write and the settlement). A failed attempt
    is retried while attempts are left (spec.backoffLimit retries), unless its error is
    deterministic; the next attempt starts after retry_delay."""
    if status.counted(attempt) and status.retry_at:
        return AlreadyCounted()
    used, qpu = status.used_micro, status.qpu_seconds
    if not status.counted(attempt):
        used += charge_micro
        qpu += Decimal(str((report.get("usage") or {}).get("qpuSeconds") or 0))
    why = report.get("error") or f"exit code {exit_code}"
    deterministic = exit_code == EXIT_DETERMINISTIC
    if not succeeded and not deterministic and attempt <= backoff_limit:
        delay = retry_delay(retry_base_seconds, attempt)
        return Retry(attempt, used, qpu, delay, now + timedelta(seconds=delay),
                     f"attempt {attempt} failed ({why}); retrying in {delay:g}s")
    if succeeded:
        return Finish(attempt, Phase.SUCCEEDED, used, qpu, "Completed", "", False)
    reason = report.get("reason") or ("InvalidJob" if deterministic else "ExecutorFailed")
    return Finish(attempt, Phase.FAILED, used, qpu, reason, why, deterministic)
