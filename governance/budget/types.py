"""Value types the ledger takes and returns (plain, immutable, no database objects)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .money import UNITS, format_amount
from .periods import PERIODS

ENFORCEMENTS = ("hard", "queue")


class Decision(str, enum.Enum):
    ADMITTED = "admitted"
    QUEUED = "queued"
    REFUSED = "refused"


class ReservationState(enum.StrEnum):
    """Where a reservation is in its life. The values are what the ledger stores (the reservations
    table's CHECK constraint, the tombstones, the report's per-state lines): a StrEnum equals its
    value, so rows written before it, SQL built with it and tests comparing strings all agree."""

    QUEUED = "queued"  # waits in its budget's FIFO queue for funds
    HELD = "held"  # admitted: its estimate is held against the budget's period
    SETTLED = "settled"  # charged its actual usage (finished)
    RELEASED = "released"  # given back uncharged: cancelled, never ran (finished)
    REFUSED = "refused"  # never admitted: over the limit, or its budget was deleted (finished)


# tuples (a fixed order) so SQL built with them (`state IN (...)`) reads the same every time
OPEN_STATES = (ReservationState.HELD, ReservationState.QUEUED)  # still holds, or waits for, money
FINISHED_STATES = (ReservationState.SETTLED, ReservationState.RELEASED, ReservationState.REFUSED)


@dataclass(frozen=True)
class BudgetSpec:
    namespace: str
    name: str
    limit_micro: int
    unit: str = "USD"
    period: str = "none"
    enforcement: str = "hard"
    warn_at: tuple[int, ...] = ()
    anchor: datetime | None = None  # default: the start of the current UTC day / month
    # where the spec came from (the QiskitBudget's UID and metadata.generation); None: an
    # administrator's direct change (the CLI), applied whatever the ledger last saw
    uid: str | None = None
    generation: int | None = None

    def __post_init__(self) -> None:
        if not self.namespace or not self.name:
            raise ValueError("a budget needs a namespace and a name")
        if self.limit_micro < 0:
            raise ValueError(f"budget {self.namespace}/{self.name}: limit must be zero or more")
        if self.unit not in UNITS:
            raise ValueError(f"budget {self.namespace}/{self.name}: unit {self.unit!r} is not one of {', '.join(UNITS)}")
        if self.period not in PERIODS:
            raise ValueError(
                f"budget {self.namespace}/{self.name}: period {self.period!r} is not one of {', '.join(PERIODS)}"
            )
        if self.enforcement not in ENFORCEMENTS:
            raise ValueError(
                f"budget {self.namespace}/{self.name}: enforcement {self.enforcement!r} is not one of "
                f"{', '.join(ENFORCEMENTS)}"
            )
        for pct in self.warn_at:
            if not 0 < pct <= 100:
                raise ValueError(f"budget {self.namespace}/{self.name}: warnAt {pct} must be within 1..100")


@dataclass(frozen=True)
class ReserveRequest:
    key: str  # the job's UID: the idempotency key
    namespace: str
    budget: str
    amount_micro: int
    job: str = ""
    backend: str = ""
    session: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a reservation needs a key (the job's UID)")
        if self.amount_micro < 0:
            raise ValueError(f"reservation {self.key}: amount must be zero or more")


def describe_amounts(spent: int, held: int, limit: int, unit: str) -> str:
    """'spent 9.10 USD, reserved 0.50 USD, limit 10.00 USD': the tail of every balance message."""
    return (f"spent {format_amount(spent, unit)}, reserved {format_amount(held, unit)}, "
            f"limit {format_amount(limit, unit)}")


@dataclass(frozen=True)
class Balance:
    namespace: str
    budget: str
    unit: str
    limit_micro: int
    spent_micro: int
    held_micro: int
    period_start: datetime
    period_end: datetime | None
    queued: int = 0

    @property
    def remaining_micro(self) -> int:
        return max(0, self.limit_micro - self.spent_micro - self.held_micro)

    def describe(self) -> str:
        return describe_amounts(self.spent_micro, self.held_micro, self.limit_micro, self.unit)


LATE_CHARGE = "late"  # the ledger entry kind of a charge for work whose reservation was no longer held
LATE_MESSAGE = "late charge"  # how such a reservation's message starts


@dataclass(frozen=True)
class ReserveOutcome:
    key: str
    decision: Decision
    state: ReservationState  # the reservation's state now
    amount_micro: int
    balance: Balance
    message: str
    replayed: bool = False  # True when the key had been seen: nothing was changed
    queue_position: int | None = None
    thresholds_crossed: tuple[int, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.decision is Decision.ADMITTED


@dataclass(frozen=True)
class SettleOutcome:
    key: str
    state: ReservationState
    amount_micro: int
    actual_micro: int
    released_micro: int
    overrun_micro: int
    replayed: bool = False
    queue_changes: tuple[QueueChange, ...] = field(default=())  # queued work this movement admitted or refused
    late: bool = False  # charged although the reservation was no longer held (Ledger.settle(ran=True))

    @property
    def overrun(self) -> bool:
        return self.overrun_micro > 0

    @property
    def admitted_from_queue(self) -> tuple[str, ...]:
        return admitted_keys(self.queue_changes)


@dataclass(frozen=True)
class ReleaseOutcome:
    key: str
    state: ReservationState
    released_micro: int
    replayed: bool = False
    queue_changes: tuple[QueueChange, ...] = field(default=())  # queued work this movement admitted or refused

    @property
    def admitted_from_queue(self) -> tuple[str, ...]:
        return admitted_keys(self.queue_changes)


@dataclass(frozen=True)
class QueueChange:
    """A queued reservation that a later event admitted (or refused because it can never fit)."""

    key: str
    decision: Decision
    message: str
    reason: str = "BudgetExceeded"  # for a refusal: BudgetExceeded, or BudgetDeleted


def admitted_keys(changes: tuple[QueueChange, ...]) -> tuple[str, ...]:
    return tuple(c.key for c in changes if c.decision is Decision.ADMITTED)


@dataclass(frozen=True)
class CompactionResult:
    """What `Ledger.compact` did."""

    horizon: datetime  # reservations of periods that ended by this moment were considered
    reservations: int  # rows removed (each now a tombstone, its figures in the aggregates)
    entries: int  # ledger entries folded into their period's `compact` entry
    periods: int  # periods whose `compact` entry was written or grown


@dataclass(frozen=True)
class JobTerms:
    """What a job was admitted with (the ledger's job_money row): what its charges are computed
    from, whatever its status says."""

    key: str
    job: str  # "namespace/name", for people
    budget: str  # "namespace/name" of the budget it was admitted against; "" when none pays
    unit: str
    paid_by_session: bool  # a dedicated session pays for its time: its attempts cost the budget nothing
    backend: str
    session: str  # the QiskitSession it was placed in ("" none): whose Runtime session its jobs must be in
    model_qpu_seconds: str  # the modelled usage of the priced circuits, without the safety margin
    model_cpu_seconds: str
    model_shots: int
    model_tasks: int
    # the job's own labels when it was admitted (qgov's own, qgov.dev/*, left out), sorted: what its
    # cost is attributed by (the cost API's aggregate=label:KEY, FOCUS Tags), never what it costs
    labels: tuple[tuple[str, str], ...] = ()


QGOV_LABEL_PREFIX = "qgov.dev/"  # the labels qgov itself puts on jobs: not the job owner's attribution


def job_labels(labels: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """A job's own labels as JobTerms holds them: sorted, qgov's own left out."""
    return tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items() if not str(k).startswith(QGOV_LABEL_PREFIX)))


def labels_json(labels: tuple[tuple[str, str], ...]) -> str:
    """How the ledger stores a job's labels: a JSON object, keys sorted."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def labels_of(stored: str | None) -> tuple[tuple[str, str], ...]:
    """The labels the ledger stored (labels_json); nothing for a row from before labels were kept."""
    try:
        value = json.loads(stored or "{}")
    except ValueError:
        return ()
    return job_labels(value) if isinstance(value, dict) else ()


@dataclass(frozen=True)
class AttemptTotals:
    """A job's counted attempts, as the ledger holds them (what its status shows)."""

    key: str
    counted_attempt: int = 0  # the highest attempt counted (0: none)
    attempts: frozenset[int] = frozenset()  # the attempts counted
    used_micro: int = 0  # what the counted attempts were charged, in the budget's unit
    qpu_seconds: str = "0"  # their QPU time, summed (a decimal string)
    replayed: bool = False  # count_attempt found the attempt counted already: nothing changed

    def counted(self, attempt: int) -> bool:
        return attempt in self.attempts


# ---------------------------------------------------------------------- read views of ledger rows


@dataclass(frozen=True)
class BudgetRow:
    """A budget as the ledger stores it (`Ledger.budgets()`): its spec and queue counters, not its
    balance (`Ledger.balance` reads that). A copy: holding it holds no connection or row."""

    id: int
    namespace: str
    name: str
    limit_micro: int
    unit: str
    period: str
    anchor: datetime
    enforcement: str
    warn_at: str  # comma-separated percentages, as stored
    queue_seq: int  # the last FIFO ticket handed out
    queued_count: int  # reservations waiting in its queue
    retired_at: datetime | None  # set when its QiskitBudget was deleted (then not listed by budgets())
    source_uid: str | None
    source_generation: int | None
    created_at: datetime


@dataclass(frozen=True)
class ReservationRow:
    """A reservation as the ledger holds it (`Ledger.reservation()`, `Ledger.reservations()`), with
    its budget's namespace and name. A compacted one (`compacted`, read from its tombstone by
    `reservations()`) keeps only its key, budget, state, amounts and period: its id and times are
    None and its job, backend and session empty."""

    id: int | None
    key: str
    budget_id: int
    budget_namespace: str
    budget_name: str
    job: str  # "namespace/name" of the job (or dedicated session) it is for
    backend: str
    session: str
    amount_micro: int  # the estimate requested / held
    actual_micro: int | None  # what was charged, once settled
    overrun_micro: int
    state: ReservationState
    period_start: datetime | None  # the period it was admitted in (None until admitted)
    queue_seq: int | None
    message: str
    created_at: datetime | None
    admitted_at: datetime | None
    finished_at: datetime | None
    created_period: datetime | None
    top_cost: int | None
    compacted: bool = False
