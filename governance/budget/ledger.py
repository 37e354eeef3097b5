"""The budget ledger: reserve, settle, release, adjust — exact, idempotent, concurrency-safe.

Every money movement runs in one transaction that first locks the budget's row (the
budget row is the lock), then reads the balances, decides, and writes the reservation,
its ledger entries and the new balances. What to decide (admit, queue, refuse, admit from
the queue, warning thresholds) is the budget policy's (policy.py, pure, over a snapshot of
the locked balances); this module locks, loads and writes. A single reservation is a batch
of one (`reserve_many`). Every movement is keyed (the job's UID for
reservations), and a repeated call returns the first outcome without changing anything,
so an operator replaying after a crash or a failover never charges twice.

Invariant under hard enforcement: in every budget period, spent + held never exceeds the
limit through an admission. Only two things can put a period above its limit, and both
are recorded: an actual usage above its reservation (`overrun_micro`) and a limit lowered
below what was already committed.

A reservation belongs to the period in which it was admitted, and is settled there even
when settlement comes after the rollover: the admission was granted against that
period's funds, and moving it would retroactively overspend the next period.

Every transaction that creates a reservation or changes its state also adds the difference
to the report aggregates (aggregates.py), before it commits: reports read those, and
`verify()` recomputes them from the rows. `compact()` removes finished reservations of closed
periods, folding their ledger entries into one entry per period and keeping a tombstone of
each key, so a replay of a compacted key changes nothing.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import SimpleNamespace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, Table, and_, bindparam, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from . import aggregates, policy
from .aggregates import Deltas
from .db import check_schema, driver_cursor, first_line, make_engine, read_only, redact
from .errors import DatabaseUnavailable, InvalidTransition, LedgerError, UnknownBudget, UnknownReservation
from .models import (Adjustment, Budget, BudgetPeriod, CompactedReservation, JobAttempt, JobMoney, LedgerEntry,
                     Reservation, ReportTop, table_of)
from .burnrate import WEEK
from .money import format_amount, format_quantity
from .periods import Window, utc, window_at
from .report import Report, ReportWindow, StatusReads, daily_spend, period_window, report_on
from .types import (
    labels_json,
    labels_of,
    LATE_CHARGE,
    LATE_MESSAGE,
    FINISHED_STATES,
    OPEN_STATES,
    Balance,
    BudgetRow,
    BudgetSpec,
    CompactionResult,
    Decision,
    QueueChange,
    ReleaseOutcome,
    ReserveOutcome,
    AttemptTotals,
    JobTerms,
    ReservationRow,
    ReservationState,
    ReserveRequest,
    SettleOutcome,
)

B = table_of(Budget)
P = table_of(BudgetPeriod)
R = table_of(Reservation)
E = table_of(LedgerEntry)
A = table_of(Adjustment)
TS = table_of(CompactedReservation)
TOP = table_of(ReportTop)
JM = table_of(JobMoney)
JA = table_of(JobAttempt)
S = ReservationState  # the reservation states, as short as the tables' names above
FINISHED = FINISHED_STATES
BURN_DAYS = WEEK + 1  # the days burn_rate reads: today, and the seven before for the last week's

T = TypeVar("T")
Clock = Callable[[], datetime]

# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock, unique violation
# (two writers inserting the same new key or period; the retry then sees the winner's row).
_RETRY_SQLSTATES = {"40001", "40P01", "23505"}
MAX_ATTEMPTS = 12


def _now() -> datetime:
    return datetime.now(timezone.utc)


class CompactedKey(UnknownReservation):
    """The key's reservation was finished in a period that `Ledger.compact` compacted: its outcome
    is still known (a replay returns it), its row is not. An UnknownReservation to callers that
    look rows up (the operator then leaves the job alone)."""


class _Compacted(Exception):
    """Internal: the key is a compacted reservation's (carries its tombstone)."""

    def __init__(self, tombstone: Any) -> None:
        super().__init__(tombstone.key)
        self.tombstone = tombstone


def _is_stale(spec: BudgetSpec, stored_uid: str | None, stored_generation: int | None) -> bool:
    """Whether `spec` is an older generation of the same QiskitBudget than the one the ledger holds.
    A different UID is the budget deleted and created again: its generations start over."""
    return (spec.generation is not None and stored_generation is not None and spec.uid == stored_uid
            and spec.generation < stored_generation)


def _default_anchor(period: str, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "monthly":
        return day.replace(day=1)
    if period == "weekly":
        return day - timedelta(days=day.weekday())  # weeks start on Monday
    return day


class Ledger:
    """Operations on the budget ledger. Thread-safe: each call uses its own pooled connection."""

    def __init__(self, engine: Engine | str | None = None, *, clock: Clock = _now, check: bool = True) -> None:
        self.engine = engine if isinstance(engine, Engine) else make_engine(engine)
        self.clock = clock
        # (namespace, name) -> (period, anchor): lets a reservation lock budget and period at once
        self._period_config: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._local = threading.local()  # the running transaction's aggregate differences
        if check:
            check_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ transactions

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction, retrying on lock conflicts and serialization failures."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.engine.begin() as conn:
                    self._local.deltas = Deltas()
                    result = work(conn)
                    aggregates.write(conn, self._local.deltas)  # with the rows, before the commit
                    return result
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt < MAX_ATTEMPTS:
                    continue  # the server dropped an idle pooled connection: a fresh one is taken
                if attempt == MAX_ATTEMPTS or not _retryable(exc):
                    if _unreachable(exc):
                        raise self._unavailable(exc) from None
                    raise
                time.sleep(min(0.05, 0.001 * 2**attempt) * random.random())
        raise AssertionError("unreachable")

    def _read(self, work: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """Run `work` on a read-only connection. A pooled connection the server dropped (it
        restarted) is replaced once; a database that cannot be reached raises DatabaseUnavailable,
        the one error the operator's callers wait out. `one_statement`: each of work's statements
        stands alone (one read, or a status' reads, each consistent in itself), so on PostgreSQL it
        needs no transaction (no BEGIN and ROLLBACK round trips)."""
        for attempt in (1, 2):
            try:
                if one_statement and self.engine.dialect.name == "postgresql":
                    connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                else:
                    connection = read_only(self.engine)
                with connection as conn:
                    result = work(conn)
                    conn.commit()  # a read ends in COMMIT: psycopg forgets its prepared statements on a ROLLBACK
                    return result
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 1:
                    continue
                if _unreachable(exc):
                    raise self._unavailable(exc) from None
                raise
        raise AssertionError("unreachable")

    def _deltas(self) -> Deltas:
        """The differences the running transaction adds to the report aggregates when it ends."""
        deltas: Deltas = self._local.deltas
        return deltas

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(f"database {redact(str(self.engine.url))}: {first_line(exc)}")

    # ------------------------------------------------------------------ budgets

    def upsert_budget(self, spec: BudgetSpec) -> tuple[Balance, tuple[QueueChange, ...]]:
        """Create or update a budget. Raising the limit admits queued work in FIFO order."""

        def work(conn: Connection) -> tuple[Balance, tuple[QueueChange, ...]]:
            now = utc(self.clock())
            row = conn.execute(
                select(B).where(B.c.namespace == spec.namespace, B.c.name == spec.name).with_for_update()
            ).first()
            anchor = utc(spec.anchor) if spec.anchor else None
            warn_at = ",".join(str(p) for p in sorted(set(spec.warn_at)))
            if row is None:
                anchor = anchor or _default_anchor(spec.period, now)
                conn.execute(
                    B.insert().values(
                        namespace=spec.namespace, name=spec.name, limit_micro=spec.limit_micro, unit=spec.unit,
                        period=spec.period, anchor=anchor, enforcement=spec.enforcement,
                        warn_at=warn_at, queue_seq=0,
                        queued_count=0, created_at=now, updated_at=now, retired_at=None,
                        source_uid=spec.uid, source_generation=spec.generation,
                    )
                )
            elif _is_stale(spec, row.source_uid, row.source_generation):
                # a spec this object has since replaced, applied late (another operator, or this one
                # before a restart, already applied a newer generation): the ledger keeps the newer one
                budget = self._lock_budget(conn, spec.namespace, spec.name)
                return self._balance(conn, budget, now), ()
            else:
                values: dict[str, Any] = dict(
                    limit_micro=spec.limit_micro, period=spec.period, enforcement=spec.enforcement,
                    warn_at=warn_at, updated_at=now,
                    retired_at=None,  # a QiskitBudget created again under the same name revives its ledger
                )
                if spec.generation is not None:
                    values.update(source_uid=spec.uid, source_generation=spec.generation)
                if row.unit != spec.unit:
                    raise LedgerError(
                        f"budget {spec.namespace}/{spec.name}: unit cannot change from {row.unit} to {spec.unit} "
                        "(amounts already recorded are in the old unit); create a new budget instead"
                    )
                if anchor is not None:
                    values["anchor"] = anchor
                elif row.period != spec.period:
                    values["anchor"] = _default_anchor(spec.period, now)
                conn.execute(update(B).where(B.c.id == row.id).values(**values))
            budget = self._lock_budget(conn, spec.namespace, spec.name)
            period = self._current_period(conn, budget, now)
            if period.limit_micro != budget.limit_micro:
                conn.execute(update(P).where(P.c.id == period.id).values(limit_micro=budget.limit_micro))
            changes = self._admit_queued(conn, budget, now)
            return self._balance(conn, budget, now), changes

        return self._transaction(work)

    def retire_budget(self, namespace: str, name: str) -> tuple[QueueChange, ...]:
        """The QiskitBudget was deleted: admit nothing more against it and refuse what waits in its
        queue. Held reservations still settle or release; balances and history stay."""

        def work(conn: Connection) -> tuple[QueueChange, ...]:
            now = utc(self.clock())
            budget = self._lock_budget(conn, namespace, name)
            if budget.retired_at is not None:
                return ()
            conn.execute(update(B).where(B.c.id == budget.id).values(retired_at=now, queued_count=0, updated_at=now))
            message = f"budget {namespace}/{name} was deleted while this job waited in its queue"
            changes = []
            for row in conn.execute(select(R).where(R.c.budget_id == budget.id, R.c.state == S.QUEUED)).all():
                conn.execute(update(R).where(R.c.id == row.id).values(state=S.REFUSED, message=message,
                                                                      finished_at=now))
                self._deltas().add_row(row, -1)
                self._deltas().add_row(row, +1, state=S.REFUSED)
                changes.append(QueueChange(row.key, Decision.REFUSED, message, "BudgetDeleted"))
            return tuple(changes)

        return self._transaction(work)

    def balance(self, namespace: str, budget: str, at: datetime | None = None) -> Balance:
        """The balances of the period that contains `at` (default: now)."""
        moment = utc(at or self.clock())
        return self._read(lambda conn: self._balance_of(conn, namespace, budget, moment),
                          one_statement=self._period_config.get((namespace, budget)) is not None)

    def status_reads(self, namespace: str, budget: str, burn_days: int = BURN_DAYS) -> StatusReads:
        """Everything a budget's status shows, read on one connection: the balance, the report of
        its current period, the committed amount per day (the burn rate's input) and the head of its
        queue. On PostgreSQL without a transaction: each statement sees what was committed when it
        ran, as the report's reads always have; the status is rewritten when anything moves."""
        moment = utc(self.clock())
        since = _first_day(moment, burn_days)

        def work(conn: Connection) -> StatusReads:
            config = self._period_config.get((namespace, budget))
            balance = None
            if config is not None:  # the balance comes with the report's budget and period rows
                window = window_at(config[0], config[1], moment)
                report = report_on(conn, namespace, period_window(window.start, window.end), budget)
                balance = _balance_in(report, window, config)
            if balance is None:  # settings not known yet, or changed: read them, then the report
                balance = self._balance_of(conn, namespace, budget, moment)
                report = report_on(conn, namespace, period_window(balance.period_start, balance.period_end), budget)
            daily = daily_spend(conn, namespace, budget, since)
            oldest = conn.execute(_oldest_queued(namespace, budget)).scalar() if balance.queued else None
            return StatusReads(balance, report, daily, utc(oldest) if oldest is not None else None)

        return self._read(work, one_statement=True)

    def _balance_of(self, conn: Connection, namespace: str, budget: str, moment: datetime) -> Balance:
        """The balance (one statement once the budget's period settings are known)."""
        config = self._period_config.get((namespace, budget))
        if config is not None:  # budget and period in one statement
            window = window_at(config[0], config[1], moment)
            row = conn.execute(_BUDGET_AND_PERIOD, dict(namespace=namespace, name=budget,
                                                        start=window.start)).first()
            if row is not None and (row.period, utc(row.anchor)) == config:
                if row.p_id is None:
                    spent, held, limit = 0, 0, row.limit_micro
                else:
                    spent, held, limit = row.p_spent_micro, row.p_held_micro, row.p_limit_micro
                return Balance(namespace, budget, row.unit, limit, spent, held, window.start, window.end,
                               row.queued_count)
        row = conn.execute(select(B).where(B.c.namespace == namespace, B.c.name == budget)).first()
        if row is None:
            raise UnknownBudget(_no_budget_message(namespace, budget))
        self._period_config[(namespace, budget)] = (row.period, utc(row.anchor))
        return self._balance(conn, row, moment)

    def budgets(self, namespace: str | None = None) -> list[BudgetRow]:
        """The budgets not retired (of `namespace`, or all), by namespace and name."""
        query = select(B).where(B.c.retired_at.is_(None)).order_by(B.c.namespace, B.c.name)
        if namespace is not None:
            query = query.where(B.c.namespace == namespace)
        return self._read(lambda conn: [_budget_row(row) for row in conn.execute(query)])

    # ------------------------------------------------------------------ reserve

    def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        return self.reserve_many([request])[0]

    def reserve_many(self, requests: Sequence[ReserveRequest]) -> list[ReserveOutcome]:
        """Decide many requests; those for one budget share one transaction and one lock.

        Outcomes come back in the order of `requests`. Within a budget, requests are decided
        in the order given, so a batch is equivalent to the same calls made one by one.
        """
        groups: dict[tuple[str, str], list[int]] = {}
        for index, req in enumerate(requests):
            groups.setdefault((req.namespace, req.budget), []).append(index)
        outcomes: list[ReserveOutcome | None] = [None] * len(requests)
        for (namespace, name), indexes in sorted(groups.items()):
            batch = [requests[i] for i in indexes]
            decided = self._transaction(lambda conn: self._reserve_group(conn, namespace, name, batch))
            for i, outcome in zip(indexes, decided, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _reserve_group(
        self, conn: Connection, namespace: str, name: str, batch: list[ReserveRequest]
    ) -> list[ReserveOutcome]:
        now = utc(self.clock())
        keys = list({req.key for req in batch})
        budget, period, known = self._lock_for_reserve(conn, namespace, name, keys, now)
        if budget.retired_at is not None:
            raise UnknownBudget(f"budget {namespace}/{name} was deleted: no new work is admitted against it")
        if budget.queued_count:
            self._admit_queued(conn, budget, now)
            budget = self._lock_budget(conn, namespace, name)
            period = self._current_period(conn, budget, now)
        existing = (
            {row.key: row for row in conn.execute(select(R).where(R.c.key.in_(keys)))} if known else {}
        )
        compacted = (
            {row.key: row for row in conn.execute(select(TS).where(TS.c.key.in_(keys)))}
            if known > len(existing) else {}
        )

        snapshot = _snapshot(budget, period)
        fresh_requests: dict[str, ReserveRequest] = {}
        for req in batch:
            if req.key not in compacted and req.key not in existing:
                fresh_requests.setdefault(req.key, req)
        decided = policy.decide_all([snapshot], [req.amount_micro for req in fresh_requests.values()])
        rulings = dict(zip(fresh_requests, decided.rulings, strict=True))

        seq = budget.queue_seq
        new_rows: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        outcomes: list[ReserveOutcome] = []
        fresh: dict[str, ReserveOutcome] = {}
        deltas = self._deltas()
        period_start, period_end = utc(period.period_start), _utc_or_none(period.period_end)
        for req in batch:
            if req.key in compacted and req.key not in fresh:
                outcomes.append(self._replay_compacted(conn, budget, compacted[req.key], now))
                continue
            if req.key in existing or req.key in fresh:
                if req.key in fresh:
                    outcomes.append(_as_replay(fresh[req.key]))
                else:
                    outcomes.append(self._replay_reserve(conn, budget, existing[req.key], now))
                continue
            amount = req.amount_micro
            ruling = rulings[req.key]
            decision, message, position = ruling.decision, ruling.message, ruling.position
            base = dict(
                key=req.key, budget_id=budget.id, job=req.job, backend=req.backend, session=req.session,
                amount_micro=amount, actual_micro=None, overrun_micro=0, created_at=now,
                created_period=period.period_start, top_cost=None,
            )
            if decision is Decision.ADMITTED:
                new_rows.append(
                    dict(base, state=S.HELD, period_start=period.period_start, queue_seq=None, message="",
                         admitted_at=now, finished_at=None, top_cost=amount)
                )
                entries.append(
                    dict(budget_id=budget.id, period_start=period.period_start, reservation_key=req.key,
                         kind="reserve", held_delta=amount, spent_delta=0, note="", created_at=now)
                )
                state = S.HELD
            elif decision is Decision.QUEUED:
                seq += 1
                new_rows.append(
                    dict(base, state=S.QUEUED, period_start=None, queue_seq=seq, message=message,
                         admitted_at=None, finished_at=None)
                )
                state = S.QUEUED
            else:
                new_rows.append(
                    dict(base, state=S.REFUSED, period_start=None, queue_seq=None, message=message,
                         admitted_at=None, finished_at=now)
                )
                state = S.REFUSED
            [after] = ruling.after
            outcome = ReserveOutcome(
                key=req.key, decision=decision, state=state, amount_micro=amount,
                balance=Balance(namespace, name, after.unit, after.limit, after.spent, after.held, period_start,
                                period_end, after.queued),
                message=message, queue_position=position,
            )
            fresh[req.key] = outcome
            outcomes.append(outcome)
            deltas.add(budget.id, period.period_start, now, state, amount, None, req.backend, req.session, False)

        [after], [crossed] = decided.after, decided.crossed
        period_values: dict[str, Any] = {}
        if after.held != snapshot.held:
            period_values = dict(held_micro=after.held, warned_pct=after.warned_pct)
        budget_values = dict(queued_count=after.queued, queue_seq=seq) if after.queued != snapshot.queued else {}
        self._write(conn, new_rows, entries, period.id, period_values, budget.id, budget_values)
        if crossed:  # reported on the last admission of the batch that made them
            for i in range(len(outcomes) - 1, -1, -1):
                if outcomes[i].decision is Decision.ADMITTED and not outcomes[i].replayed:
                    outcomes[i] = replace(outcomes[i], thresholds_crossed=crossed)
                    break
        return outcomes

    def _replay_reserve(self, conn: Connection, budget: Any, row: Any, now: datetime) -> ReserveOutcome:
        if row.budget_id != budget.id:
            raise LedgerError(f"reservation {row.key} was made against another budget")
        if row.state == S.REFUSED:
            decision = Decision.REFUSED
        elif row.admitted_at is None:
            decision = Decision.QUEUED
        else:
            decision = Decision.ADMITTED
        position = None
        if row.state == S.QUEUED:
            position = conn.execute(
                select(func.count()).where(
                    R.c.budget_id == budget.id, R.c.state == S.QUEUED, R.c.queue_seq <= row.queue_seq
                )
            ).scalar_one()
        return ReserveOutcome(
            key=row.key, decision=decision, state=S(row.state), amount_micro=row.amount_micro,
            balance=self._balance(conn, budget, now), message=row.message, replayed=True,
            queue_position=position,
        )

    def _replay_compacted(self, conn: Connection, budget: Any, tomb: Any, now: datetime) -> ReserveOutcome:
        """A reserve of a compacted key: its first outcome, as far as the tombstone keeps it; never
        a new admission."""
        if tomb.budget_id != budget.id:
            raise LedgerError(f"reservation {tomb.key} was made against another budget")
        if tomb.state == S.REFUSED:
            decision = Decision.REFUSED
            message = (f"exceeded budget {budget.namespace}/{budget.name} (refused; the reservation was "
                       "compacted, its message is no longer kept)")
        else:
            decision, message = (Decision.ADMITTED if tomb.admitted else Decision.QUEUED), ""
        return ReserveOutcome(key=tomb.key, decision=decision, state=S(tomb.state), amount_micro=tomb.amount_micro,
                              balance=self._balance(conn, budget, now), message=message, replayed=True)

    # ------------------------------------------------------------------ settle / release

    def settle(self, key: str, actual_micro: int, *, ran: bool = False) -> SettleOutcome:
        """Charge the actual usage of an admitted reservation and release the rest.

        An actual above the reservation is charged in full and flagged (`overrun_micro`).
        Settling again returns the first settlement. Settling a reservation that is not held is
        refused, unless `ran`: the caller knows the work ran (the operator, from the executor's
        report), and money that was spent is never dropped. Then a released, queued or refused
        reservation is charged as a late charge (see `_charge_late`).
        """
        if actual_micro < 0:
            raise ValueError(f"reservation {key}: actual usage must be zero or more")

        def work(conn: Connection) -> SettleOutcome:
            now = utc(self.clock())
            try:
                row, budget = self._lock_reservation(conn, key)
            except _Compacted as compacted:
                return _settle_compacted(compacted.tombstone, actual_micro, ran)
            if row.state == S.SETTLED:
                return SettleOutcome(
                    key, S.SETTLED, row.amount_micro, row.actual_micro, max(0, row.amount_micro - row.actual_micro),
                    row.overrun_micro, replayed=True, late=row.message.startswith(LATE_MESSAGE),
                )
            if row.state != S.HELD:
                if ran and actual_micro == 0:  # nothing was used: nothing to charge, late or not
                    return SettleOutcome(key, S(row.state), row.amount_micro, 0, 0, 0, replayed=True)
                if ran:
                    return self._charge_late(conn, budget, row, actual_micro, now)
                raise InvalidTransition(
                    f"reservation {key} is {row.state}, not held: only admitted work can be settled"
                )
            overrun = max(0, actual_micro - row.amount_micro)
            self._deltas().add_row(row, -1)
            self._deltas().add_row(row, +1, state=S.SETTLED, actual=actual_micro, late=False)
            changes = self._finish_held(conn, budget, row, "settle", actual_micro, overrun, now)
            return SettleOutcome(key, S.SETTLED, row.amount_micro, actual_micro,
                                 max(0, row.amount_micro - actual_micro), overrun, queue_changes=changes)

        return self._transaction(work)

    def _charge_late(self, conn: Connection, budget: Any, row: Any, actual: int, now: datetime) -> SettleOutcome:
        """Work ran although its reservation is no longer held (released by mistake, say, or
        refused while a replayed pod ran): charge all of it to the period it was admitted in
        (the current one if it never was), flagged as a late charge and, since no hold covered
        it, as an overrun. The reservation ends `settled`, so the job's status and the ledger
        agree; held money is untouched (the hold, if any, was given back already)."""
        period = (self._select_period(conn, budget.id, row.period_start) if row.period_start is not None
                  else self._current_period(conn, budget, now))
        message = (f"{LATE_MESSAGE}: the work ran after its reservation was {row.state}; "
                   f"{format_amount(actual, budget.unit)} charged outside any hold")
        conn.execute(update(R).where(R.c.id == row.id).values(
            state=S.SETTLED, actual_micro=actual, overrun_micro=actual, period_start=period.period_start,
            queue_seq=None, message=message, finished_at=now, top_cost=actual))
        self._deltas().add_row(row, -1)
        self._deltas().add_row(row, +1, state=S.SETTLED, actual=actual, late=True)
        conn.execute(E.insert().values(
            budget_id=budget.id, period_start=period.period_start, reservation_key=row.key, kind=LATE_CHARGE,
            held_delta=0, spent_delta=actual, note=message, created_at=now))
        conn.execute(update(P).where(P.c.id == period.id).values(
            spent_micro=P.c.spent_micro + actual, overrun_micro=P.c.overrun_micro + actual))
        if row.state == S.QUEUED:
            conn.execute(update(B).where(B.c.id == budget.id).values(queued_count=B.c.queued_count - 1))
            budget = conn.execute(select(B).where(B.c.id == budget.id)).one()
        changes = self._admit_queued(conn, budget, now) if row.state == S.QUEUED else ()
        return SettleOutcome(row.key, S.SETTLED, row.amount_micro, actual, 0, actual, late=True,
                             queue_changes=changes)

    def release(self, key: str) -> ReleaseOutcome:
        """Give back a held (or still queued) reservation. Harmless on finished ones."""

        def work(conn: Connection) -> ReleaseOutcome:
            now = utc(self.clock())
            try:
                row, budget = self._lock_reservation(conn, key)
            except _Compacted as compacted:
                return ReleaseOutcome(key, S(compacted.tombstone.state), 0, replayed=True)
            if row.state in FINISHED:
                return ReleaseOutcome(key, S(row.state), 0, replayed=True)
            self._deltas().add_row(row, -1)
            self._deltas().add_row(row, +1, state=S.RELEASED)
            if row.state == S.QUEUED:  # cancelled while waiting: whoever was behind it may fit now
                conn.execute(update(R).where(R.c.id == row.id).values(state=S.RELEASED, finished_at=now,
                                                                      top_cost=None))
                conn.execute(update(B).where(B.c.id == budget.id).values(queued_count=B.c.queued_count - 1))
                budget = conn.execute(select(B).where(B.c.id == budget.id)).one()
                return ReleaseOutcome(key, S.RELEASED, 0, queue_changes=self._admit_queued(conn, budget, now))
            changes = self._finish_held(conn, budget, row, "release", 0, 0, now)
            return ReleaseOutcome(key, S.RELEASED, row.amount_micro, queue_changes=changes)

        return self._transaction(work)

    def adjust(self, namespace: str, budget: str, amount_micro: int, *, key: str, reason: str = "") -> Balance:
        """Debit (positive) or credit (negative) the current period's spend, idempotent by `key`."""

        def work(conn: Connection) -> Balance:
            now = utc(self.clock())
            row = self._lock_budget(conn, namespace, budget)
            period = self._current_period(conn, row, now)
            if conn.execute(select(A.c.key).where(A.c.key == key)).first() is None:
                if period.spent_micro + amount_micro < 0:
                    raise LedgerError(
                        f"budget {namespace}/{budget}: a credit of {format_amount(-amount_micro, row.unit)} is more "
                        f"than the {format_amount(period.spent_micro, row.unit)} spent this period"
                    )
                conn.execute(
                    A.insert().values(key=key, budget_id=row.id, amount_micro=amount_micro,
                                      period_start=period.period_start, reason=reason, created_at=now)
                )
                conn.execute(
                    E.insert().values(budget_id=row.id, period_start=period.period_start, reservation_key=None,
                                      kind="adjust", held_delta=0, spent_delta=amount_micro, note=reason,
                                      created_at=now)
                )
                conn.execute(
                    update(P).where(P.c.id == period.id).values(spent_micro=P.c.spent_micro + amount_micro)
                )
                self._admit_queued(conn, row, now)
            return self._balance(conn, row, now)

        return self._transaction(work)

    def admit_queued(self, namespace: str | None = None) -> list[QueueChange]:
        """Admit queued work that now fits (after a period rollover); run it from a timer."""
        changes: list[QueueChange] = []
        query = select(B.c.namespace, B.c.name).where(B.c.queued_count > 0)
        if namespace is not None:
            query = query.where(B.c.namespace == namespace)
        targets = self._read(lambda conn: list(conn.execute(query)))
        for ns, name in targets:
            changes.extend(
                self._transaction(
                    lambda conn: self._admit_queued(
                        conn, self._lock_budget(conn, ns, name), utc(self.clock())
                    )
                )
            )
        return changes

    def open_reservations(self) -> list[str]:
        """Keys of reservations still held or queued (for reconciliation against live jobs)."""
        query = select(R.c.key).where(R.c.state.in_(OPEN_STATES))
        return self._read(lambda conn: [r[0] for r in conn.execute(query)])

    def report(self, namespace: str, window: ReportWindow, budget: str | None = None) -> Report:
        """The cost report (report.py) of a namespace or one budget; DatabaseUnavailable when the
        database cannot be reached, as for every other read."""
        return self._read(lambda conn: report_on(conn, namespace, window, budget), one_statement=True)

    def chargeback(self, window: ReportWindow) -> list[Any]:
        """One chargeback line per budget of every namespace for `window` (chargeback.py)."""
        from .chargeback import chargeback

        return self._read(lambda conn: chargeback(conn, window), one_statement=True)

    def charges(self, window: Any, namespaces: Sequence[str] | None = None) -> list[Any]:
        """The settled jobs charged in a costview.CostWindow (of these namespaces only, if given):
        what the cost API sums and `qgov ledger export` writes."""
        from .costview import charges

        return self._read(lambda conn: charges(conn, window, namespaces), one_statement=True)

    def namespaces(self) -> list[str]:
        """Every namespace that has (or had) a budget."""
        from .costview import namespaces

        return self._read(namespaces)

    def daily_spend(self, namespace: str, budget: str, days: int = BURN_DAYS) -> dict[date, int]:
        """Micro-units committed per UTC day over the last `days` days, today included (the burn rate's input)."""
        since = _first_day(utc(self.clock()), days)
        return self._read(lambda conn: daily_spend(conn, namespace, budget, since), one_statement=True)

    def oldest_queued(self, namespace: str, budget: str) -> datetime | None:
        """When the job at the head of the budget's queue (FIFO: the lowest queue_seq) was queued;
        None when nothing waits. One indexed row (ix_reservations_queue)."""
        moment = self._read(lambda conn: conn.execute(_oldest_queued(namespace, budget)).scalar(), one_statement=True)
        return utc(moment) if moment is not None else None

    def reservations(self, states: Sequence[ReservationState] | None = None) -> list[ReservationRow]:
        """Every reservation (or those in `states`), with its budget's namespace and name: what an
        audit against the cluster reads. Compacted ones come last, from their tombstones: key,
        state and amounts (job, backend, session and times are no longer kept)."""
        query = _with_budget(R).order_by(R.c.id)
        gone = _with_budget(TS).order_by(TS.c.key)
        if states is not None:
            query = query.where(R.c.state.in_(tuple(states)))
            gone = gone.where(TS.c.state.in_(tuple(states)))

        def work(conn: Connection) -> list[ReservationRow]:
            rows = [_reservation_row(r) for r in conn.execute(query)]
            if states is None or set(states) & set(FINISHED):
                rows += [_tombstone_row(t) for t in conn.execute(gone)]
            return rows

        return self._read(work)

    def reservation(self, key: str) -> ReservationRow:
        """The reservation, with its budget's namespace and name; UnknownReservation if there is none
        (CompactedKey, a subclass, if `compact` removed it: its outcome still replays, its row is gone)."""

        def work(conn: Connection) -> tuple[ReservationRow | None, str | None]:
            row = conn.execute(_with_budget(R).where(R.c.key == key)).first()
            if row is not None:
                return _reservation_row(row), None
            return None, conn.execute(select(TS.c.state).where(TS.c.key == key)).scalar()

        found, compacted_state = self._read(work)
        if compacted_state is not None:
            raise CompactedKey(f"reservation {key!r} was {compacted_state} and has been compacted "
                               f"(qgov ledger compact): its outcome is kept, its row is not")
        if found is None:
            raise UnknownReservation(f"no reservation with key {key!r}")
        return found

    # ------------------------------------------------------------------ verification

    def verify(self) -> list[str]:
        """Recompute every balance from the entry log and the reservations; list disagreements."""
        problems: list[str] = []
        with read_only(self.engine) as conn:
            sums = {
                (r.budget_id, _utc_or_none(r.period_start)): (r.held, r.spent)
                for r in conn.execute(
                    select(E.c.budget_id, E.c.period_start, func.sum(E.c.held_delta).label("held"),
                           func.sum(E.c.spent_delta).label("spent")).group_by(E.c.budget_id, E.c.period_start)
                )
            }
            holds = {
                (r.budget_id, _utc_or_none(r.period_start)): r.held
                for r in conn.execute(
                    select(R.c.budget_id, R.c.period_start, func.sum(R.c.amount_micro).label("held"))
                    .where(R.c.state == S.HELD).group_by(R.c.budget_id, R.c.period_start)
                )
            }
            names = {r.id: f"{r.namespace}/{r.name}" for r in conn.execute(select(B.c.id, B.c.namespace, B.c.name))}
            seen = set()
            for p in conn.execute(select(P)):
                k = (p.budget_id, utc(p.period_start))
                seen.add(k)
                held, spent = sums.get(k, (0, 0))
                where = f"budget {names.get(p.budget_id)} period {k[1].isoformat()}"
                if p.held_micro != held:
                    problems.append(f"{where}: stored held {p.held_micro} != entries {held}")
                if p.spent_micro != spent:
                    problems.append(f"{where}: stored spent {p.spent_micro} != entries {spent}")
                if p.held_micro != holds.get(k, 0):
                    problems.append(f"{where}: stored held {p.held_micro} != held reservations {holds.get(k, 0)}")
                if p.held_micro < 0:
                    problems.append(f"{where}: negative held {p.held_micro}")
            for orphan in set(sums) - seen:
                problems.append(f"entries for budget {names.get(orphan[0])} period {orphan[1]} have no period row")
            queued: dict[int, int] = dict(
                conn.execute(
                    select(R.c.budget_id, func.count()).where(R.c.state == S.QUEUED).group_by(R.c.budget_id)
                ).all()
            )
            for b in conn.execute(select(B.c.id, B.c.queued_count)):
                if b.queued_count != queued.get(b.id, 0):
                    problems.append(
                        f"budget {names[b.id]}: queued_count {b.queued_count} != queued reservations "
                        f"{queued.get(b.id, 0)}"
                    )
            # a settled job's charge is what its counted attempts were charged (when they were counted)
            counted = {r.key: r.total for r in conn.execute(
                select(JA.c.key, func.sum(JA.c.charge_micro).label("total")).where(JA.c.counted.is_(True))
                .group_by(JA.c.key))}
            if counted:
                for r in conn.execute(select(R.c.key, R.c.actual_micro).where(R.c.state == S.SETTLED,
                                                                              R.c.key.in_(list(counted)))):
                    if r.actual_micro != counted[r.key]:
                        problems.append(f"reservation {r.key}: settled {r.actual_micro} != its counted attempts "
                                        f"{counted[r.key]}")
            for r in conn.execute(select(JA.c.key, JA.c.attempt).where(
                    JA.c.counted.is_(True), JA.c.charge_micro.is_(None))):
                problems.append(f"job {r.key} attempt {r.attempt}: counted without a charge")
            # the report aggregates: recomputed from the remaining rows plus what compaction kept
            problems += aggregates.verify(conn, names)
        return problems

    # ------------------------------------------------------------------ a job's money state

    def record_terms(self, terms: JobTerms) -> JobTerms:
        """Record what a job was admitted with (keyed by its UID); the first record stands, so a
        replayed admission (or a second operator's) changes nothing. Returns the terms recorded."""

        def work(conn: Connection) -> JobTerms:
            row = conn.execute(select(JM).where(JM.c.key == terms.key).with_for_update()).first()
            if row is None:
                conn.execute(JM.insert().values(
                    key=terms.key, job=terms.job, budget=terms.budget, unit=terms.unit,
                    paid_by_session=terms.paid_by_session, backend=terms.backend, session=terms.session,
                    model_qpu_seconds=terms.model_qpu_seconds, model_cpu_seconds=terms.model_cpu_seconds,
                    model_shots=terms.model_shots, model_tasks=terms.model_tasks, created_at=utc(self.clock()),
                    labels=labels_json(terms.labels)))
                return terms
            return _terms(row)

        return self._transaction(work)

    def move_session(self, key: str, session: str) -> None:
        """The job was moved on to a new automatic batch (its session ended before it started): its
        Runtime jobs are now that session's."""
        self._transaction(lambda conn: conn.execute(update(JM).where(JM.c.key == key).values(session=session)))

    def job_terms(self, key: str) -> JobTerms | None:
        """What the job with UID `key` was admitted with; None when the ledger has no record (a job
        admitted by an operator older than the job_money table)."""
        row = self._read(lambda conn: conn.execute(select(JM).where(JM.c.key == key)).first(), one_statement=True)
        return _terms(row) if row is not None else None

    def record_pod(self, key: str, attempt: int, pod_uid: str, previous: str | None = None) -> bool:
        """The operator created `pod_uid` for the job's attempt: it alone is that attempt's pod. A pod
        created again for an attempt not yet counted (the one before was lost, or was not the
        operator's) replaces the record only if the record is still `previous`, what the operator
        read before it created the pod (compare-and-set: of two operators racing, the one whose
        pod survived keeps its record). Returns whether `pod_uid` is recorded now."""

        def work(conn: Connection) -> bool:
            row = conn.execute(select(JA).where(JA.c.key == key, JA.c.attempt == attempt).with_for_update()).first()
            if row is None:
                conn.execute(JA.insert().values(key=key, attempt=attempt, pod_uid=pod_uid, counted=False,
                                                charge_micro=None, qpu_seconds="0", source="",
                                                created_at=utc(self.clock()), counted_at=None))
                return True
            if row.pod_uid == pod_uid:
                return True
            if row.counted or row.pod_uid != previous:
                return False
            conn.execute(update(JA).where(JA.c.key == key, JA.c.attempt == attempt).values(pod_uid=pod_uid))
            return True

        return self._transaction(work)

    def attempt_pod(self, key: str, attempt: int) -> str | None:
        """The UID of the pod the operator created for the attempt (None: it created none)."""
        return self._read(lambda conn: conn.execute(select(JA.c.pod_uid).where(
            JA.c.key == key, JA.c.attempt == attempt)).scalar(), one_statement=True)

    def count_attempt(self, key: str, attempt: int, charge_micro: int, qpu_seconds: str,
                      source: str = "") -> AttemptTotals:
        """Count an ended attempt's charge, once: counting it again (a replayed event, a second
        operator) returns the totals with `replayed` and changes nothing. The attempt's row is the
        lock (SELECT ... FOR UPDATE; a concurrent first insert fails on the key and is retried)."""
        if charge_micro < 0:
            raise ValueError(f"job {key} attempt {attempt}: a charge must be zero or more")
        Decimal(qpu_seconds)  # a decimal string, or raise

        def work(conn: Connection) -> AttemptTotals:
            now = utc(self.clock())
            row = conn.execute(select(JA).where(JA.c.key == key, JA.c.attempt == attempt).with_for_update()).first()
            if row is not None and row.counted:
                return replace(_totals(conn, key), replayed=True)
            values = dict(counted=True, charge_micro=charge_micro, qpu_seconds=qpu_seconds, source=source,
                          counted_at=now)
            if row is None:
                conn.execute(JA.insert().values(key=key, attempt=attempt, pod_uid=None, created_at=now, **values))
            else:
                conn.execute(update(JA).where(JA.c.key == key, JA.c.attempt == attempt).values(**values))
            return _totals(conn, key)

        return self._transaction(work)

    def attempt_totals(self, key: str) -> AttemptTotals:
        """The job's counted attempts: what the settlement charges, whatever its status says."""
        return self._read(lambda conn: _totals(conn, key))

    # ------------------------------------------------------------------ compaction

    def compact(self, before: datetime, namespace: str | None = None, *, chunk: int = 5_000) -> CompactionResult:
        """Remove the finished (settled, released, refused) reservations of closed periods, those
        that ended by `before` (and by now), keeping everything a report or a balance needs.

        Their figures are already in the report aggregates; compaction moves them into each
        cell's compacted part (so verify() can still recompute the rest), keeps each cell's most
        expensive compacted jobs (report_top), and a tombstone per key (compacted_reservations), so a
        replayed key returns its outcome and is never admitted again. Their ledger entries are folded
        into one entry per period (kind `compact`) with the same sums, so balances and verify() stay
        right. Held and queued reservations are never compacted, nor are those admitted into a period
        still open. Runs in short transactions of `chunk` reservations, each taking the budget's
        lock, so admissions carry on meanwhile; an interrupted run is finished by the next."""
        now = utc(self.clock())
        horizon = min(utc(before), now)
        query = select(B.c.id, B.c.namespace, B.c.name).order_by(B.c.id)
        if namespace is not None:
            query = query.where(B.c.namespace == namespace)
        targets = self._read(lambda conn: list(conn.execute(query)))
        if namespace is not None and not targets:
            raise UnknownBudget(f"no budgets in namespace {namespace!r}")
        reservations = entries = 0
        periods: set[tuple[int, datetime]] = set()
        for b in targets:
            closed = {utc(r.period_start) for r in self._read(lambda conn: list(conn.execute(
                select(P.c.period_start).where(P.c.budget_id == b.id, P.c.period_end.is_not(None),
                                               P.c.period_end <= horizon))))}
            for start in sorted(closed):
                ids = [r.id for r in self._read(lambda conn: list(conn.execute(
                    select(R.c.id, R.c.period_start).where(R.c.budget_id == b.id, R.c.created_period == start,
                                                           R.c.state.in_(FINISHED)))))
                       if r.period_start is None or utc(r.period_start) in closed]
                for i in range(0, len(ids), chunk):
                    part = ids[i:i + chunk]
                    reservations += self._transaction(
                        lambda conn: self._compact_rows(conn, b.id, part, closed, now))
            # fold the entries of every compacted key (this run's, or an interrupted run's) per period,
            # through windows of entry ids: each transaction reads a bounded slice, whatever the plan
            for (start,) in self._read(lambda conn: list(conn.execute(
                    select(TS.c.period_start).where(TS.c.budget_id == b.id, TS.c.period_start.is_not(None))
                    .distinct()))):
                span = self._read(lambda conn: conn.execute(
                    select(func.min(E.c.id), func.max(E.c.id)).where(*_folding(b.id, start))).one())
                if span[0] is None:
                    continue  # nothing (left) to fold
                for low in range(span[0], span[1] + 1, chunk * 4):
                    folded = self._transaction(lambda conn: self._fold_entries(
                        conn, b.id, start, low, low + chunk * 4, now))
                    if folded:
                        entries += folded
                        periods.add((b.id, utc(start)))
        return CompactionResult(horizon=horizon, reservations=reservations, entries=entries, periods=len(periods))

    def _compact_rows(self, conn: Connection, budget_id: int, ids: list[int], closed: set[datetime],
                      now: datetime) -> int:
        conn.execute(select(B.c.id).where(B.c.id == budget_id).with_for_update()).first()  # the budget's lock
        rows = [r for r in conn.execute(select(R).where(_among(conn, R.c.id, ids), R.c.state.in_(FINISHED))).all()
                if r.period_start is None or utc(r.period_start) in closed]  # re-read under the lock
        if not rows:
            return 0
        moved = Deltas()
        for r in rows:
            moved.add_row(r, +1, compacted=True)
        aggregates.write(conn, moved)
        self._keep_top(conn, [r for r in rows if r.state == S.SETTLED])
        tombstones = [
            dict(key=r.key, budget_id=r.budget_id, state=r.state, admitted=r.admitted_at is not None,
                 late=r.state == S.SETTLED and r.message.startswith(LATE_MESSAGE), amount_micro=r.amount_micro,
                 actual_micro=r.actual_micro, overrun_micro=r.overrun_micro, period_start=r.period_start,
                 compacted_at=now)
            for r in rows]
        if conn.dialect.name == "postgresql":  # one statement, the columns as arrays
            conn.execute(_PG_TOMBSTONES, {c: [t[c] for t in tombstones] for c in _TS_COLUMNS})
        else:
            conn.execute(TS.insert(), tombstones)
        conn.execute(delete(R).where(_among(conn, R.c.id, [r.id for r in rows])))
        return len(rows)

    @staticmethod
    def _keep_top(conn: Connection, settled: list[Any]) -> None:
        """Each cell keeps its TOP_JOBS most expensive compacted jobs: the top of a union is the top of
        the tops, so what was kept before and this chunk's settled jobs are enough."""
        cells: dict[tuple[Any, ...], list[Any]] = {}
        for r in settled:
            for key in aggregates.cell_keys(r.budget_id, r.created_period, r.created_at):
                cells.setdefault((key[0], key[1], key[3], key[4]), []).append(r)
        for (budget_id, grain, cell_start, period_start), rows in cells.items():
            where = and_(TOP.c.budget_id == budget_id, TOP.c.grain == grain, TOP.c.cell_start == cell_start,
                         TOP.c.period_start == period_start)
            kept = [dict(r._mapping) for r in conn.execute(select(TOP).where(where))]
            kept += [dict(budget_id=budget_id, grain=grain, cell_start=cell_start, period_start=period_start,
                          key=r.key, job=r.job, backend=r.backend, session=r.session, state=r.state,
                          estimate_micro=r.amount_micro, actual_micro=r.actual_micro) for r in rows]
            kept.sort(key=lambda t: (-t["actual_micro"], t["key"]))
            conn.execute(delete(TOP).where(where))
            conn.execute(TOP.insert(), kept[:aggregates.TOP_JOBS])

    def _fold_entries(self, conn: Connection, budget_id: int, period_start: datetime, low: int, high: int,
                      now: datetime) -> int:
        """Fold the ledger entries of compacted keys of one period with ids in [low, high) into its
        `compact` entry."""
        conn.execute(select(B.c.id).where(B.c.id == budget_id).with_for_update()).first()
        rows = conn.execute(select(E.c.id, E.c.held_delta, E.c.spent_delta).where(
            E.c.id >= low, E.c.id < high, *_folding(budget_id, period_start))).all()
        if not rows:
            return 0
        held, spent = sum(r.held_delta for r in rows), sum(r.spent_delta for r in rows)
        conn.execute(delete(E).where(_among(conn, E.c.id, [r.id for r in rows])))
        note = "the entries of reservations removed by qgov ledger compact, summed"
        summary = conn.execute(select(E.c.id).where(E.c.budget_id == budget_id, E.c.period_start == period_start,
                                                    E.c.kind == "compact")).first()
        if summary is None:
            conn.execute(E.insert().values(budget_id=budget_id, period_start=period_start, reservation_key=None,
                                           kind="compact", held_delta=held, spent_delta=spent, note=note,
                                           created_at=now))
        else:
            conn.execute(update(E).where(E.c.id == summary.id).values(
                held_delta=E.c.held_delta + held, spent_delta=E.c.spent_delta + spent, created_at=now))
        return len(rows)

    # ------------------------------------------------------------------ internals

    def _lock_for_reserve(
        self, conn: Connection, namespace: str, name: str, keys: list[str], now: datetime
    ) -> tuple[Any, Any, int]:
        """Lock the budget and its current period in one round trip; count keys already known.

        Both rows are locked (FOR UPDATE OF both), so after waiting for the lock PostgreSQL
        re-reads their latest committed versions. The key count may be older than the lock;
        a key inserted meanwhile makes our insert fail on the unique key, and the retry then
        sees it as a replay. The period start comes from a cache of the budget's period
        settings, checked against the locked row; the first call, or a changed budget, takes
        the slow path.
        """
        config = self._period_config.get((namespace, name))
        if config is not None:
            start = window_at(config[0], config[1], now).start
            row = conn.execute(_LOCK_BUDGET_AND_PERIOD, dict(namespace=namespace, name=name, start=start,
                                                              keys=keys)).first()
            if row is not None and (row.period, utc(row.anchor)) == config:
                m = row._mapping
                budget = SimpleNamespace(**{c.name: m[c] for c in B.c})
                period = SimpleNamespace(**{c.name: m[f"p_{c.name}"] for c in P.c})
                return budget, period, row.known_keys
        budget = self._lock_budget(conn, namespace, name)
        self._period_config[(namespace, name)] = (budget.period, utc(budget.anchor))
        period = self._current_period(conn, budget, now)
        known = conn.execute(select(func.count()).where(R.c.key.in_(keys))).scalar_one()
        known += conn.execute(select(func.count()).where(TS.c.key.in_(keys))).scalar_one()
        return budget, period, known

    def _write(
        self, conn: Connection, reservations: list[dict[str, Any]], entries: list[dict[str, Any]],
        period_id: int, period_values: dict[str, Any], budget_id: int, budget_values: dict[str, Any],
    ) -> None:
        """Write a decided batch. Round trips, not SQL, are what a hot budget's lock is held for,
        so on PostgreSQL the whole batch is ONE prepared statement (columns passed as arrays)."""
        if not (reservations or entries or period_values or budget_values):
            return
        if conn.dialect.name == "postgresql":
            params: dict[str, Any] = {f"r_{c}": [r[c] for r in reservations] for c in _R_COLUMNS}
            params.update({f"e_{c}": [e[c] for e in entries] for c in _E_COLUMNS})
            params.update(
                period_id=period_id, update_period=bool(period_values), held=period_values.get("held_micro", 0),
                warned=period_values.get("warned_pct", 0), budget_id=budget_id, update_budget=bool(budget_values),
                queued=budget_values.get("queued_count", 0), seq=budget_values.get("queue_seq", 0),
            )
            params.update(aggregates.pg_params(self._deltas()))  # the report aggregates, in the same statement
            conn.execute(_PG_WRITE_BATCH, params)
            self._local.deltas = Deltas()
            return
        if conn.dialect.name == "sqlite":  # prebuilt SQL through the driver: SQLAlchemy's statement
            _sqlite_write(conn, reservations, entries, period_id, period_values, budget_id, budget_values)
            return  # building and compiling cost more than the statements themselves (~0.5 ms a batch)
        if reservations:
            conn.execute(R.insert(), reservations)
        if entries:
            conn.execute(E.insert(), entries)
        if budget_values:
            conn.execute(update(B).where(B.c.id == budget_id).values(**budget_values))
        if period_values:
            conn.execute(update(P).where(P.c.id == period_id).values(**period_values))

    def _finish_held(self, conn: Connection, budget: Any, row: Any, kind: str, spent: int, overrun: int,
                     now: datetime) -> tuple[QueueChange, ...]:
        """A held reservation ends (settled with `spent`, or released with 0): the row says so, the
        hold leaves the period it was admitted in, the spend lands there, and freed funds go to
        the queue. On PostgreSQL the row, the entry, the period and the report aggregates are ONE
        statement: the budget's lock is held for round trips."""
        settled = kind == "settle"
        values = dict(state=S.SETTLED if settled else S.RELEASED, finished_at=now,
                      actual_micro=spent if settled else row.actual_micro,
                      overrun_micro=overrun if settled else row.overrun_micro, top_cost=spent if settled else None)
        entry = dict(budget_id=budget.id, period_start=row.period_start, reservation_key=row.key, kind=kind,
                     held_delta=-row.amount_micro, spent_delta=spent, note=f"overrun {overrun}" if overrun else "",
                     created_at=now)
        if conn.dialect.name == "postgresql":
            conn.execute(_PG_FINISH_HELD, dict(
                {f"r_{c}": v for c, v in values.items()}, r_id=row.id, amount=row.amount_micro, overrun=overrun,
                **{f"e_{c}": v for c, v in entry.items()}, **aggregates.pg_params(self._deltas())))
            self._local.deltas = Deltas()
            return self._admit_queued(conn, budget, now)
        conn.execute(update(R).where(R.c.id == row.id).values(**values))
        conn.execute(E.insert().values(**entry))
        conn.execute(
            update(P).where(P.c.budget_id == budget.id, P.c.period_start == row.period_start).values(
                held_micro=P.c.held_micro - row.amount_micro,
                spent_micro=P.c.spent_micro + spent,
                overrun_micro=P.c.overrun_micro + overrun,
            )
        )
        return self._admit_queued(conn, budget, now)

    def _lock_budget(self, conn: Connection, namespace: str, name: str) -> Any:
        row = conn.execute(
            select(B).where(B.c.namespace == namespace, B.c.name == name).with_for_update()
        ).first()
        if row is None:
            raise UnknownBudget(_no_budget_message(namespace, name))
        return row

    def _lock_reservation(self, conn: Connection, key: str) -> tuple[Any, Any]:
        found = conn.execute(select(R.c.budget_id).where(R.c.key == key)).first()
        if found is None:
            tombstone = conn.execute(select(TS).where(TS.c.key == key)).first()
            if tombstone is not None:
                raise _Compacted(tombstone)
            raise UnknownReservation(f"no reservation with key {key!r}")
        budget = conn.execute(select(B).where(B.c.id == found.budget_id).with_for_update()).one()
        row = conn.execute(select(R).where(R.c.key == key)).one()  # re-read under the lock
        return row, budget

    def _current_period(self, conn: Connection, budget: Any, now: datetime) -> Any:
        window = window_at(budget.period, utc(budget.anchor), now)
        return self._period_row(conn, budget, window)

    @staticmethod
    def _select_period(conn: Connection, budget_id: int, start: datetime) -> Any:
        return conn.execute(select(P).where(P.c.budget_id == budget_id, P.c.period_start == start)).first()

    def _period_row(self, conn: Connection, budget: Any, window: Window) -> Any:
        row = self._select_period(conn, budget.id, window.start)
        if row is None:
            conn.execute(
                P.insert().values(
                    budget_id=budget.id, period_start=window.start, period_end=window.end,
                    limit_micro=budget.limit_micro, spent_micro=0, held_micro=0, overrun_micro=0, warned_pct=0,
                )
            )
            row = self._select_period(conn, budget.id, window.start)
        return row

    def _balance(self, conn: Connection, budget: Any, moment: datetime) -> Balance:
        window = window_at(budget.period, utc(budget.anchor), moment)
        row = self._select_period(conn, budget.id, window.start)
        spent, held, limit = (row.spent_micro, row.held_micro, row.limit_micro) if row else (0, 0, budget.limit_micro)
        return Balance(budget.namespace, budget.name, budget.unit, limit, spent, held, window.start, window.end,
                       budget.queued_count)

    def _admit_queued(self, conn: Connection, budget: Any, now: datetime) -> tuple[QueueChange, ...]:
        """Admit queued reservations strictly in FIFO order while the head fits (head-of-line blocks)."""
        if not budget.queued_count:
            return ()
        period = self._current_period(conn, budget, now)
        rows = conn.execute(
            select(R).where(R.c.budget_id == budget.id, R.c.state == S.QUEUED).order_by(R.c.queue_seq)
        ).all()
        rulings, after, _ = policy.admit_queued(_snapshot(budget, period), [row.amount_micro for row in rows])
        changes: list[QueueChange] = []
        for row, ruling in zip(rows, rulings, strict=False):  # rulings stop where FIFO admission stops
            if ruling.decision is Decision.REFUSED:
                conn.execute(update(R).where(R.c.id == row.id).values(state=S.REFUSED, message=ruling.message,
                                                                      finished_at=now))
                self._deltas().add_row(row, -1)
                self._deltas().add_row(row, +1, state=S.REFUSED)
                changes.append(QueueChange(row.key, Decision.REFUSED, ruling.message))
                continue
            conn.execute(
                update(R).where(R.c.id == row.id).values(state=S.HELD, period_start=period.period_start,
                                                         admitted_at=now, message="", top_cost=row.amount_micro)
            )
            self._deltas().add_row(row, -1)
            self._deltas().add_row(row, +1, state=S.HELD)
            conn.execute(
                E.insert().values(budget_id=budget.id, period_start=period.period_start, reservation_key=row.key,
                                  kind="reserve", held_delta=row.amount_micro, spent_delta=0,
                                  note="admitted from queue", created_at=now)
            )
            changes.append(QueueChange(row.key, Decision.ADMITTED, ""))
        if changes:
            conn.execute(update(P).where(P.c.id == period.id).values(held_micro=after.held,
                                                                     warned_pct=after.warned_pct))
            conn.execute(
                update(B).where(B.c.id == budget.id).values(queued_count=B.c.queued_count - len(changes))
            )
        return tuple(changes)


def _snapshot(budget: Any, period: Any) -> policy.Snapshot:
    """The policy's view of a budget (its row) in a period (its row): both locked by the caller."""
    return policy.Snapshot(
        label=f"{budget.namespace}/{budget.name}", unit=budget.unit, limit=budget.limit_micro,
        spent=period.spent_micro, held=period.held_micro, queued=budget.queued_count,
        enforcement=budget.enforcement, warn_at=policy.parse_warn_at(budget.warn_at), warned_pct=period.warned_pct,
    )


# ---------------------------------------------------------------------- prepared statements

# The budget row and its current period row, both locked, with a count of already-known keys.
_LOCK_BUDGET_AND_PERIOD = (
    select(B, *(c.label(f"p_{c.name}") for c in P.c),
           (select(func.count()).where(R.c.key.in_(bindparam("keys", expanding=True))).scalar_subquery()
            + select(func.count()).where(TS.c.key.in_(bindparam("keys", expanding=True))).scalar_subquery())
           .label("known_keys"))
    .join(P, and_(P.c.budget_id == B.c.id, P.c.period_start == bindparam("start")))
    .where(B.c.namespace == bindparam("namespace"), B.c.name == bindparam("name"))
    .with_for_update(of=[B, P])
)

def _first_day(moment: datetime, days: int) -> date:
    """The first UTC day of the last `days` days, today included."""
    return moment.date() - timedelta(days=days - 1)


def _balance_in(report: Report, window: Window, config: tuple[str, datetime]) -> Balance | None:
    """A budget's balance for `window` from its own report of that window (the same budget and
    period rows `balance` reads), or None if its period settings are no longer `config`."""
    [line] = report.budgets
    if (line.period, line.anchor) != (config[0], config[1].isoformat()):
        return None
    start = window.start.isoformat()
    period = next((p for p in line.periods if p.start == start), None)
    limit, spent, held = (period.limit, period.spent, period.held) if period else (line.limit, 0, 0)
    return Balance(report.namespace, line.name, line.unit, limit, spent, held, window.start, window.end, line.queued)


def _oldest_queued(namespace: str, budget: str) -> Any:
    """When the head of the budget's queue was queued (FIFO: the lowest queue_seq; ix_reservations_queue)."""
    return select(R.c.created_at).join(B, B.c.id == R.c.budget_id).where(
        B.c.namespace == namespace, B.c.name == budget, R.c.state == S.QUEUED).order_by(R.c.queue_seq).limit(1)


# A budget and its period row starting at :start (if there is one yet).
_BUDGET_AND_PERIOD = (
    select(B, *(c.label(f"p_{c.name}") for c in P.c))
    .outerjoin(P, and_(P.c.budget_id == B.c.id, P.c.period_start == bindparam("start")))
    .where(B.c.namespace == bindparam("namespace"), B.c.name == bindparam("name"))
)

# ---------------------------------------------------------------------- PostgreSQL batch write

_R_COLUMNS = ("key", "budget_id", "job", "backend", "session", "amount_micro", "actual_micro", "overrun_micro",
              "state", "period_start", "queue_seq", "message", "created_at", "admitted_at", "finished_at",
              "created_period", "top_cost")
_E_COLUMNS = ("budget_id", "period_start", "reservation_key", "kind", "held_delta", "spent_delta", "note",
              "created_at")


# ---------------------------------------------------------------------- SQLite batch write

_SQLITE_INSERT_R = f"INSERT INTO reservations ({', '.join(_R_COLUMNS)}) VALUES ({', '.join('?' * len(_R_COLUMNS))})"
_SQLITE_INSERT_E = f"INSERT INTO ledger_entries ({', '.join(_E_COLUMNS)}) VALUES ({', '.join('?' * len(_E_COLUMNS))})"


def _sqlite_value(value: Any) -> Any:
    """A value as SQLAlchemy binds it for SQLite (a DateTime as its text, see aggregates)."""
    return aggregates.sqlite_time(value) if isinstance(value, datetime) else value


def _sqlite_write(conn: Connection, reservations: list[dict[str, Any]], entries: list[dict[str, Any]],
                  period_id: int, period_values: dict[str, Any], budget_id: int, budget_values: dict[str, Any]) -> None:
    """Ledger._write on SQLite: the same rows and updates, in the transaction SQLAlchemy began."""
    cursor = driver_cursor(conn)  # in the transaction SQLAlchemy began
    try:
        if reservations:
            cursor.executemany(_SQLITE_INSERT_R, [tuple(_sqlite_value(r[c]) for c in _R_COLUMNS) for r in reservations])
        if entries:
            cursor.executemany(_SQLITE_INSERT_E, [tuple(_sqlite_value(e[c]) for c in _E_COLUMNS) for e in entries])
        for table, values, row_id in (("budgets", budget_values, budget_id), ("budget_periods", period_values, period_id)):
            if values:
                names = sorted(values)
                cursor.execute(f"UPDATE {table} SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                               [_sqlite_value(values[n]) for n in names] + [row_id])
    finally:
        cursor.close()


def _array_type(column: Any) -> str:
    return {"BIGINT": "bigint", "INTEGER": "integer", "TEXT": "text", "BOOLEAN": "boolean"}.get(
        str(column.type), "timestamptz" if "DATETIME" in str(column.type) else "varchar")


def _unnest(table: Any, prefix: str, columns: tuple[str, ...]) -> str:
    arrays = ", ".join(f"CAST(:{prefix}{c} AS {_array_type(table.c[c])}[])" for c in columns)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"


_TS_COLUMNS = ("key", "budget_id", "state", "admitted", "late", "amount_micro", "actual_micro", "overrun_micro",
               "period_start", "compacted_at")
_PG_TOMBSTONES = text(_unnest(TS, "", _TS_COLUMNS))

_PG_WRITE_BATCH = text(
    f"WITH r AS ({_unnest(R, 'r_', _R_COLUMNS)}), "
    f"e AS ({_unnest(E, 'e_', _E_COLUMNS)}), "
    "b AS (UPDATE budgets SET queued_count = :queued, queue_seq = :seq WHERE id = :budget_id AND :update_budget), "
    f"{aggregates.PG_CTES} "
    "UPDATE budget_periods SET held_micro = :held, warned_pct = :warned WHERE id = :period_id AND :update_period"
)


# Ledger._finish_held on PostgreSQL: the reservation, its entry, the period and the aggregates at once.
_PG_FINISH_HELD = text(
    "WITH r AS (UPDATE reservations SET state = :r_state, finished_at = :r_finished_at, "
    "actual_micro = :r_actual_micro, overrun_micro = :r_overrun_micro, top_cost = :r_top_cost WHERE id = :r_id), "
    "e AS (INSERT INTO ledger_entries (budget_id, period_start, reservation_key, kind, held_delta, spent_delta, "
    "note, created_at) VALUES (:e_budget_id, :e_period_start, :e_reservation_key, :e_kind, :e_held_delta, "
    f":e_spent_delta, :e_note, :e_created_at)), {aggregates.PG_CTES} "
    "UPDATE budget_periods SET held_micro = held_micro - :amount, spent_micro = spent_micro + :e_spent_delta, "
    "overrun_micro = overrun_micro + :overrun "
    "WHERE budget_id = :e_budget_id AND period_start = :e_period_start"
)

# ---------------------------------------------------------------------- helpers


def decide(label: str, amount: int, spent: int, held: int, limit: int, unit: str, enforcement: str,
           queued: int) -> tuple[Decision, str]:
    """policy.decide for one budget, in the ledger's former signature (kept for callers of it)."""
    ruling = policy.decide([policy.Snapshot(label, unit, limit, spent, held, queued, enforcement)], amount)
    return ruling.decision, ruling.message


def _no_budget_message(namespace: str, name: str) -> str:
    return (
        f"no budget {name!r} in namespace {namespace!r}: create a QiskitBudget "
        f"(kubectl apply -f a manifest with kind: QiskitBudget, metadata.namespace: {namespace})"
    )


def _folding(budget_id: int, period_start: datetime) -> tuple[Any, ...]:
    """The ledger entries of a period that compaction folds: those of compacted keys."""
    return (E.c.budget_id == budget_id, E.c.period_start == period_start, E.c.kind != "compact",
            E.c.reservation_key.in_(select(TS.c.key)))


def _among(conn: Connection, column: Any, ids: list[int]) -> Any:
    """column IN ids: one array parameter on PostgreSQL (not thousands of bound values)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy import any_
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam("ids", ids, type_=ARRAY(column.type)))
    return column.in_(ids)


def _terms(row: Any) -> JobTerms:
    return JobTerms(row.key, row.job, row.budget, row.unit, bool(row.paid_by_session), row.backend, row.session,
                    row.model_qpu_seconds, row.model_cpu_seconds, int(row.model_shots), int(row.model_tasks),
                    labels_of(row.labels))


def _totals(conn: Connection, key: str) -> AttemptTotals:
    """The job's counted attempts, summed (exactly: integers, and Decimal for QPU time)."""
    rows = conn.execute(select(JA.c.attempt, JA.c.charge_micro, JA.c.qpu_seconds).where(
        JA.c.key == key, JA.c.counted.is_(True))).all()
    attempts = frozenset(int(r.attempt) for r in rows)
    qpu = sum((Decimal(r.qpu_seconds) for r in rows), Decimal(0))
    return AttemptTotals(key, max(attempts, default=0), attempts, sum(int(r.charge_micro or 0) for r in rows),
                         format_quantity(qpu))


def _settle_compacted(tomb: Any, actual: int, ran: bool) -> SettleOutcome:
    """settle() of a compacted key: a settled one replays its settlement; a released or refused one
    cannot take a late charge any more (its period was compacted as final), and says so."""
    if tomb.state == S.SETTLED:
        return SettleOutcome(tomb.key, S.SETTLED, tomb.amount_micro, tomb.actual_micro,
                             max(0, tomb.amount_micro - tomb.actual_micro), tomb.overrun_micro, replayed=True,
                             late=tomb.late)
    if ran and actual == 0:
        return SettleOutcome(tomb.key, S(tomb.state), tomb.amount_micro, 0, 0, 0, replayed=True)
    if ran:
        raise CompactedKey(
            f"reservation {tomb.key} was {tomb.state} in a period that has since been compacted: a late charge "
            f"of {format_amount(actual)} cannot be recorded against it; record the spend with `qgov ledger adjust`")
    raise InvalidTransition(f"reservation {tomb.key} is {tomb.state}, not held: only admitted work can be settled")


def _with_budget(table: Table) -> Select[Any]:
    """The rows of `table` (reservations or their tombstones) with their budget's namespace and name."""
    return select(table, B.c.namespace.label("budget_namespace"), B.c.name.label("budget_name")).join(
        B, B.c.id == table.c.budget_id)


def _budget_row(row: Any) -> BudgetRow:
    """A budgets row as the typed view callers read (a copy, detached from the connection)."""
    return BudgetRow(
        id=row.id, namespace=row.namespace, name=row.name, limit_micro=row.limit_micro, unit=row.unit,
        period=row.period, anchor=row.anchor, enforcement=row.enforcement, warn_at=row.warn_at,
        queue_seq=row.queue_seq, queued_count=row.queued_count, retired_at=row.retired_at,
        source_uid=row.source_uid, source_generation=row.source_generation, created_at=row.created_at)


def _reservation_row(row: Any) -> ReservationRow:
    """A reservations row joined with its budget's namespace and name (_with_budget) as the typed view."""
    return ReservationRow(
        id=row.id, key=row.key, budget_id=row.budget_id, budget_namespace=row.budget_namespace,
        budget_name=row.budget_name, job=row.job, backend=row.backend, session=row.session,
        amount_micro=row.amount_micro, actual_micro=row.actual_micro, overrun_micro=row.overrun_micro,
        state=ReservationState(row.state), period_start=row.period_start, queue_seq=row.queue_seq,
        message=row.message, created_at=row.created_at, admitted_at=row.admitted_at, finished_at=row.finished_at,
        created_period=row.created_period, top_cost=row.top_cost)


def _tombstone_row(t: Any) -> ReservationRow:
    """A compacted reservation (its tombstone, _with_budget) as a reservation view: the columns no
    longer kept are empty."""
    return ReservationRow(
        id=None, key=t.key, budget_id=t.budget_id, budget_namespace=t.budget_namespace, budget_name=t.budget_name,
        job="", backend="", session="", amount_micro=t.amount_micro, actual_micro=t.actual_micro,
        overrun_micro=t.overrun_micro, state=ReservationState(t.state), period_start=t.period_start,
        queue_seq=None, message=f"{LATE_MESSAGE} (compacted)" if t.late else "(compacted)", created_at=None,
        admitted_at=None, finished_at=None, created_period=None, top_cost=None, compacted=True)


def _as_replay(outcome: ReserveOutcome) -> ReserveOutcome:
    return replace(outcome, replayed=True, thresholds_crossed=())


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return utc(moment) if moment is not None else None


def _unreachable(exc: DBAPIError) -> bool:
    """The database cannot be reached or dropped the connection (as opposed to a bad query):
    the driver's OperationalError or InterfaceError, e.g. connection refused, server shut down."""
    return isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated


def _retryable(exc: DBAPIError) -> bool:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    if code in _RETRY_SQLSTATES:
        return True
    text = str(orig or exc).lower()
    return "database is locked" in text or "database table is locked" in text
