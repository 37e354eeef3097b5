"""A job's attempts: what one costs, and what follows when one ends (a retry after a backoff, or
the end of the job and the settlement of what all its attempts used)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ..budget.costmodel import PriceList, Usage, amount_in_unit
from .events import Event
from .phases import Phase
from ..budget.types import AttemptTotals

EXIT_DETERMINISTIC = 2  # the executor's exit code for an error that would fail again (invalid circuits, ...)
DEFAULT_BACKOFF_LIMIT = 2  # retries after the first attempt, when spec.backoffLimit is not set


def attempt_charge(usage: Usage | None, prices: PriceList | None, unit: str, paid_by_session: bool) -> int:
    """What an attempt costs in the budget's `unit`, from its trusted usage (Provider.charged_usage:
    the model, or the service's meter; never a figure from inside the namespace): 0 when it used
    nothing (None), when a dedicated session pays for its time, or when the backend's prices are
    unknown (None)."""
    if usage is None or paid_by_session or prices is None:
        return 0
    return amount_in_unit(usage, prices, unit)


def reported_usage(report: Mapping[str, Any]) -> tuple[Usage | None, str]:
    """The usage an executor or runner reported, for display only: (usage, '') or (None, why it is
    malformed). Never charged: a namespace member can write it."""
    usage = report.get("usage")
    if usage is None:
        return None, ""
    if not isinstance(usage, Mapping):
        return None, f"its usage report is not an object ({type(usage).__name__})"
    try:
        measured = Usage(qpu_seconds=Decimal(str(usage.get("qpuSeconds", "0"))),
                         cpu_seconds=Decimal(str(usage.get("cpuSeconds", "0"))),
                         shots=int(str(usage.get("shots", 0))), tasks=int(str(usage.get("tasks", 0))))
    except (InvalidOperation, ValueError) as exc:
        return None, f"its usage report is malformed ({type(exc).__name__}: {str(usage)[:200]})"
    if not (measured.qpu_seconds.is_finite() and measured.cpu_seconds.is_finite()) or \
            min(measured.qpu_seconds, measured.cpu_seconds) < 0 or min(measured.shots, measured.tasks) < 0:
        return None, f"its usage report is malformed (negative or not finite: {str(usage)[:200]})"
    return measured, ""


def retry_delay(base_seconds: float, attempt: int) -> float:
    """Seconds between the end of failed attempt `attempt` and the start of the next: doubling."""
    factor: int = 2 ** (attempt - 1)
    return base_seconds * factor


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


def after_attempt(totals: AttemptTotals, retry_scheduled: bool, attempt: int, succeeded: bool,
                  report: Mapping[str, Any], exit_code: int | None, backoff_limit: int, retry_base_seconds: float,
                  now: datetime) -> AlreadyCounted | Retry | Finish:
    """An attempt ended and the ledger counted it: `totals` are the job's counted attempts after
    (Ledger.count_attempt; `replayed` when this attempt had been counted before). `report` and
    `exit_code` say how it ended (what its pod or a session's runner said: they decide a retry or
    the phase, never a charge). A failed attempt is retried while attempts are left
    (spec.backoffLimit retries), unless its error is deterministic; the next attempt starts after
    retry_delay."""
    if totals.replayed and retry_scheduled:
        return AlreadyCounted()
    used, qpu = totals.used_micro, Decimal(totals.qpu_seconds)
    why = report.get("error") or f"exit code {exit_code}"
    deterministic = exit_code == EXIT_DETERMINISTIC
    if not succeeded and not deterministic and attempt <= backoff_limit:
        delay = retry_delay(retry_base_seconds, attempt)
        return Retry(attempt, used, qpu, delay, now + timedelta(seconds=delay),
                     f"attempt {attempt} failed ({why}); retrying in {delay:g}s")
    if succeeded:
        return Finish(attempt, Phase.SUCCEEDED, used, qpu, "Completed", "", False)
    reason = report.get("reason") or ("InvalidJob" if deterministic else "ExecutorFailed")
    return Finish(attempt, Phase.FAILED, used, qpu, str(reason), str(why), deterministic)
