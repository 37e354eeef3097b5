"""Report aggregates: what the cost report sums, kept up to date in the ledger's own transactions.

The report (report.py) describes the reservations *created* in a window. Summing them row by
row costs time in proportion to the history; these tables hold the sums instead, per **cell**:

- grain `P`: the reservations of one budget made while one of its periods was current
  (`cell_start` = `period_start` = that period's start, the reservation's `created_period`);
- grain `D`: the part of those made on one UTC day (`cell_start` = that midnight).

A budget's status refresh reads its current period's `P` cell (one row per table); a calendar
report (a month, a week, a day) reads the `P` cells that lie inside it and, for those that do
not, their `D` cells; only a window edge that is not a UTC midnight and falls inside a cell
is answered from the reservation rows themselves (report.py). Every figure is exact, since
each cell records the span of creation times it holds (`first_at`, `last_at`) and is used
only when that span lies inside the window.

Per cell: `report_cells` (the span; settled jobs, overruns, the accuracy sums and the exact
largest ratio; late charges), `report_lines` (reservations per state, and jobs, spent and held
per backend and per session), `report_ratios` (a histogram of actual / estimate). Every ledger
transaction that creates a reservation or changes its state adds the difference (`Deltas`) in
the same transaction, under the budget's lock, so the sums are never behind the rows.

Accuracy, exactly: the mean is sum(floor(10^9 * actual / estimate)) / n, so it carries the
exact ratios to nine decimals before it is rounded to the three shown (it can differ from the
exactly rounded mean only if that lies within 10^-9 of a rounding boundary). The largest ratio
is kept as its (actual, estimate) pair, so max is exact. The histogram's buckets are the shown
values themselves (thousandths, rounded half-even like Decimal.quantize) up to 9.999, so the
median and p90 shown are exact there; above 10x the buckets keep three significant digits
(12.3, 123, 1230, ...; the percentile shows the bucket's lower bound). A cell has at most
10,000 + 900 per decade buckets, whatever the number of jobs, plus one count per group of 100
consecutive buckets: a percentile reads the group counts, then the buckets of one group.

`compacted = false` rows are the totals over every reservation the cell ever had (what reports
read); `compacted = true` rows are the part of those whose rows `Ledger.compact` removed, so
`verify()` checks totals == recomputation from the remaining rows + compacted part.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, or_, select, text, true

from .db import driver_cursor
from .models import (CompactedReservation, LedgerEntry, ReportCell, ReportLine, ReportRatio, ReportTop, Reservation,
                     table_of)
from .periods import utc
from .types import LATE_MESSAGE, ReservationState

C, L, H, TOP = table_of(ReportCell), table_of(ReportLine), table_of(ReportRatio), table_of(ReportTop)
R, T, E = table_of(Reservation), table_of(CompactedReservation), table_of(LedgerEntry)
S = ReservationState  # the reservation states, as short as the tables' names above

PERIOD, DAY = "P", "D"
NANO = 10**9
FINE_BUCKETS = 10_000  # thousandths below this are buckets of their own
TOP_JOBS = 10  # the report's top jobs (report.TOP_JOBS)
CHARGED = (S.HELD, S.SETTLED)

CellKey = tuple[int, str, bool, datetime, datetime]  # budget_id, grain, compacted, cell_start, period_start

# report_cells' measures after the span, in the order Deltas keeps them
_SUMS = ("settled", "overruns", "ratio_count", "ratio_units", "ratio_nanos", "late_jobs", "late_micro")
_F_FIRST, _F_LAST, _F_MAX_NANO, _F_MAX_ACTUAL, _F_MAX_ESTIMATE = 0, 1, 2, 3, 4
_F_SUMS = 5  # then the _SUMS


# ---------------------------------------------------------------------- exact ratio arithmetic


def thousandths(actual: int, estimate: int) -> int:
    """actual / estimate in thousandths, rounded half-even (as Decimal.quantize(Decimal('0.001')))."""
    q, r = divmod(actual * 1000, estimate)
    if 2 * r > estimate or (2 * r == estimate and q % 2):
        q += 1
    return q


def bucket_of(actual: int, estimate: int) -> int:
    """The histogram bucket of a ratio. Buckets are consecutive integers: 0 .. 9,999 are the shown
    values in thousandths (0.000 .. 9.999); from 10,000 on, 900 per decade, the value cut to three
    significant digits (10.0, 10.1, .. 99.9, 100, 101, ..)."""
    q = thousandths(actual, estimate)
    if q < FINE_BUCKETS:
        return q
    digits = len(str(q))
    scale: int = 10 ** (digits - 3)
    return FINE_BUCKETS + (digits - 5) * 900 + q // scale - 100


def bucket_value(bucket: int) -> int:
    """The (lower bound of the) ratio a bucket stands for, in thousandths."""
    if bucket < FINE_BUCKETS:
        return bucket
    decade, mantissa = divmod(bucket - FINE_BUCKETS, 900)
    scale: int = 10 ** (decade + 2)
    return (100 + mantissa) * scale


GROUP = 100  # a percentile search reads the group counts, then the GROUP buckets of one group


def group_code(bucket: int) -> int:
    """report_ratios keeps the count of each group of GROUP consecutive buckets as a row of its own,
    under bucket -1 - group (negative: apart from the buckets themselves)."""
    return -1 - bucket // GROUP


def format_thousandths(q: int) -> str:
    return f"{q // 1000}.{q % 1000:03d}"


def mean_thousandths(nano_sum: int, count: int) -> int:
    """The mean of `count` ratios whose floor(10^9 * ratio) sum to `nano_sum`, in thousandths, half-even."""
    q, r = divmod(nano_sum, count * 1_000_000)
    d = count * 1_000_000
    if 2 * r > d or (2 * r == d and q % 2):
        q += 1
    return q


def day_of(moment: datetime) -> datetime:
    return utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def top_cost(state: str, amount: int, actual: int | None) -> int | None:
    """A reservation's rank among the report's top jobs (NULL: not a candidate)."""
    if state == S.SETTLED:
        return actual
    if state == S.HELD:
        return amount
    return None


def cell_keys(budget_id: int, created_period: datetime, created_at: datetime,
              compacted: bool = False) -> tuple[CellKey, CellKey]:
    period = utc(created_period)
    return (budget_id, PERIOD, compacted, period, period), (budget_id, DAY, compacted, day_of(created_at), period)


# ---------------------------------------------------------------------- differences


class Deltas:
    """Differences to add to the aggregates: a reservation's contribution with sign +1 when it
    appears or enters a state, -1 for the state it leaves. Keyed and summed in memory, written
    in one statement per table (one statement in all on PostgreSQL)."""

    def __init__(self) -> None:
        self.cells: dict[CellKey, list[Any]] = {}
        self.lines: dict[tuple[Any, ...], list[int]] = {}
        self.ratios: dict[tuple[Any, ...], int] = {}

    def __bool__(self) -> bool:
        return bool(self.cells or self.lines or self.ratios)

    def add(self, budget_id: int, created_period: datetime, created_at: datetime, state: str, amount: int,
            actual: int | None, backend: str, session: str, late: bool, sign: int = 1,
            compacted: bool = False) -> None:
        at = utc(created_at)
        settled = state == S.SETTLED
        charged = settled or state == S.HELD
        used = 0 if actual is None else actual  # a settled reservation always has its actual
        ratio = settled and amount > 0
        nano = bucket = group = 0
        if ratio:
            nano = used * NANO // amount
            bucket = bucket_of(used, amount)
            group = group_code(bucket)
        for key in cell_keys(budget_id, created_period, at, compacted):
            cell = self.cells.get(key)
            if cell is None:
                fresh: list[Any] = [at, at, -1, 0, 0] + [0] * len(_SUMS)
                cell = self.cells[key] = fresh
            else:
                if at < cell[_F_FIRST]:
                    cell[_F_FIRST] = at
                if at > cell[_F_LAST]:
                    cell[_F_LAST] = at
            self._line(key, "state", state, sign, 0, 0)
            if charged:
                spent = sign * used if settled else 0
                held = 0 if settled else sign * amount
                self._line(key, "backend", backend, sign, spent, held)
                self._line(key, "session", session, sign, spent, held)
            if settled:
                cell[_F_SUMS] += sign
                if used > amount:
                    cell[_F_SUMS + 1] += sign
                if late:
                    cell[_F_SUMS + 5] += sign
                    cell[_F_SUMS + 6] += sign * used
            if ratio:
                cell[_F_SUMS + 2] += sign
                cell[_F_SUMS + 3] += sign * (nano // NANO)
                cell[_F_SUMS + 4] += sign * (nano % NANO)
                if sign > 0 and nano > cell[_F_MAX_NANO]:
                    cell[_F_MAX_NANO], cell[_F_MAX_ACTUAL], cell[_F_MAX_ESTIMATE] = nano, used, amount
                for rk in (key + (bucket,), key + (group,)):
                    self.ratios[rk] = self.ratios.get(rk, 0) + sign

    def _line(self, key: CellKey, kind: str, name: str, jobs: int, spent: int, held: int) -> None:
        lk = key + (kind, name)
        line = self.lines.get(lk)
        if line is None:
            self.lines[lk] = [jobs, spent, held]
        else:
            line[0] += jobs
            line[1] += spent
            line[2] += held

    def add_row(self, row: Any, sign: int = 1, *, compacted: bool = False, **now: Any) -> None:
        """A reservation row's contribution; `now` overrides the columns that change (state, actual)."""
        state = now.get("state", row.state)
        actual = now.get("actual", row.actual_micro)
        late = now.get("late", state == S.SETTLED and (row.message or "").startswith(LATE_MESSAGE))
        self.add(row.budget_id, row.created_period, row.created_at, state, row.amount_micro, actual,
                 row.backend, row.session, late, sign, compacted)

    def merge_cell(self, key: CellKey, values: list[Any]) -> None:
        """Add a cell's values (as Deltas keeps them: span, largest ratio, sums) into these sums."""
        cell = self.cells.get(key)
        if cell is None:
            self.cells[key] = list(values)
            return
        cell[_F_FIRST], cell[_F_LAST] = min(cell[_F_FIRST], values[_F_FIRST]), max(cell[_F_LAST], values[_F_LAST])
        for i in range(_F_SUMS, len(cell)):
            cell[i] += values[i]
        if values[_F_MAX_NANO] > cell[_F_MAX_NANO]:
            cell[_F_MAX_NANO], cell[_F_MAX_ACTUAL], cell[_F_MAX_ESTIMATE] = values[_F_MAX_NANO:_F_SUMS]

    # rows as the tables hold them

    def cell_rows(self) -> list[dict[str, Any]]:
        out = []
        for (budget_id, grain, compacted, cell_start, period_start), v in self.cells.items():
            units, nanos = divmod(v[_F_MAX_NANO], NANO) if v[_F_MAX_NANO] >= 0 else (-1, 0)
            row = dict(budget_id=budget_id, grain=grain, compacted=compacted, cell_start=cell_start,
                       period_start=period_start, first_at=v[_F_FIRST], last_at=v[_F_LAST], max_units=units,
                       max_nanos=nanos, max_actual=v[_F_MAX_ACTUAL], max_estimate=v[_F_MAX_ESTIMATE])
            row.update(zip(_SUMS, v[_F_SUMS:], strict=True))
            out.append(row)
        return out

    def line_rows(self) -> list[dict[str, Any]]:
        return [dict(budget_id=k[0], grain=k[1], compacted=k[2], cell_start=k[3], period_start=k[4], kind=k[5],
                     name=k[6], jobs=v[0], spent_micro=v[1], held_micro=v[2]) for k, v in self.lines.items()]

    def ratio_rows(self) -> list[dict[str, Any]]:
        return [dict(budget_id=k[0], grain=k[1], compacted=k[2], cell_start=k[3], period_start=k[4], bucket=k[5],
                     jobs=v) for k, v in self.ratios.items()]


# ---------------------------------------------------------------------- writing


_CELL_COLS = ("budget_id", "grain", "compacted", "cell_start", "period_start")
_C_COLS = _CELL_COLS + ("first_at", "last_at", "max_units", "max_nanos", "max_actual", "max_estimate") + _SUMS
_L_COLS = _CELL_COLS + ("kind", "name", "jobs", "spent_micro", "held_micro")
_H_COLS = _CELL_COLS + ("bucket", "jobs")
_PG_TYPES = {"budget_id": "integer", "grain": "varchar", "compacted": "boolean", "cell_start": "timestamptz",
             "period_start": "timestamptz", "first_at": "timestamptz", "last_at": "timestamptz", "kind": "varchar",
             "name": "varchar"}


def _pg_upsert(table: str, alias: str, param: str, cols: tuple[str, ...], keys: tuple[str, ...],
               sets: list[str]) -> str:
    # the rows come as ONE jsonb parameter, not an array per column: psycopg dumps a list per
    # array in Python (~6 us each, 35 of them), and a statement over 4,096 characters or 50
    # parameters is re-parsed by psycopg on every call (~0.3 ms): both were on the hot lock
    defs = ", ".join(f"{c} {_PG_TYPES.get(c, 'bigint')}" for c in cols)
    return (f"INSERT INTO {table} AS {alias} ({', '.join(cols)}) SELECT * FROM "
            f"jsonb_to_recordset(CAST(:{param} AS jsonb)) AS x({defs}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)}")


def _add(alias: str, cols: Iterable[str]) -> list[str]:
    return [f"{c} = {alias}.{c} + EXCLUDED.{c}" for c in cols]


# The aggregate upserts as CTEs of one PostgreSQL statement (the reservation batch adds them to its own).
PG_CTES = ", ".join([
    "agg_c AS (" + _pg_upsert("report_cells", "c", "agg_cells", _C_COLS, _CELL_COLS, [
        "first_at = LEAST(c.first_at, EXCLUDED.first_at)", "last_at = GREATEST(c.last_at, EXCLUDED.last_at)",
        # the largest ratio's pair: the new one only if strictly larger (on a tie the stored pair stays)
        "(max_units, max_nanos, max_actual, max_estimate) = (SELECT u, n, a, e FROM (VALUES "
        "(0, c.max_units, c.max_nanos, c.max_actual, c.max_estimate), "
        "(1, EXCLUDED.max_units, EXCLUDED.max_nanos, EXCLUDED.max_actual, EXCLUDED.max_estimate)) "
        "m(k, u, n, a, e) ORDER BY u DESC, n DESC, k LIMIT 1)",
        *_add("c", _SUMS)]) + ")",
    "agg_l AS (" + _pg_upsert("report_lines", "l", "agg_lines", _L_COLS, _CELL_COLS + ("kind", "name"),
                              _add("l", ("jobs", "spent_micro", "held_micro"))) + ")",
    "agg_h AS (" + _pg_upsert("report_ratios", "h", "agg_ratios", _H_COLS, _CELL_COLS + ("bucket",),
                              _add("h", ("jobs",))) + ")",
])
_PG_WRITE = text(f"WITH {PG_CTES} SELECT 1")


_TIMES = ("cell_start", "period_start", "first_at", "last_at")


def pg_params(deltas: Deltas | None) -> dict[str, str]:
    """The PG_CTES parameters: each table's rows as a JSON array of objects ('[]': nothing to add).
    A batch's rows share a few moments (their cells'), each formatted once."""
    if not deltas:
        return dict(agg_cells="[]", agg_lines="[]", agg_ratios="[]")
    iso: dict[datetime, str] = {}
    out = {}
    for param, rows in (("agg_cells", deltas.cell_rows()), ("agg_lines", deltas.line_rows()),
                        ("agg_ratios", deltas.ratio_rows())):
        for row in rows:
            for c in _TIMES:
                if c in row:
                    moment = row[c]
                    text_ = iso.get(moment)
                    if text_ is None:
                        text_ = iso[moment] = moment.isoformat()
                    row[c] = text_
        out[param] = json.dumps(rows)
    return out


def _sqlite_upsert(table: str, cols: tuple[str, ...], keys: tuple[str, ...], sets: list[str]) -> str:
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)}")


_SQLITE_WINS = "(excluded.max_units > max_units OR (excluded.max_units = max_units AND excluded.max_nanos > max_nanos))"
# The same upserts for SQLite, run with the driver's executemany (SQLAlchemy's costs more than they do).
_SQLITE = (
    _sqlite_upsert("report_cells", _C_COLS, _CELL_COLS, [
        "first_at = min(first_at, excluded.first_at)", "last_at = max(last_at, excluded.last_at)",
        *(f"{c} = CASE WHEN {_SQLITE_WINS} THEN excluded.{c} ELSE {c} END"
          for c in ("max_units", "max_nanos", "max_actual", "max_estimate")),
        *(f"{c} = {c} + excluded.{c}" for c in _SUMS)]),
    _sqlite_upsert("report_lines", _L_COLS, _CELL_COLS + ("kind", "name"),
                   [f"{c} = {c} + excluded.{c}" for c in ("jobs", "spent_micro", "held_micro")]),
    _sqlite_upsert("report_ratios", _H_COLS, _CELL_COLS + ("bucket",), ["jobs = jobs + excluded.jobs"]),
)


def sqlite_time(value: datetime) -> str:
    """A moment as SQLAlchemy stores a DateTime in SQLite ('YYYY-MM-DD HH:MM:SS.ffffff', UTC)."""
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}:"
            f"{value.second:02d}.{value.microsecond:06d}")


def _sqlite_rows(deltas: Deltas) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of _SQLITE's three upserts, in their column order."""
    keys: dict[CellKey, tuple[Any, ...]] = {}

    def key(k: tuple[Any, ...]) -> tuple[Any, ...]:
        found = keys.get(k[:5])
        if found is None:
            found = keys[k[:5]] = (k[0], k[1], int(k[2]), sqlite_time(k[3]), sqlite_time(k[4]))
        return found

    cells = []
    for k, v in deltas.cells.items():
        units, nanos = divmod(v[_F_MAX_NANO], NANO) if v[_F_MAX_NANO] >= 0 else (-1, 0)
        cells.append(key(k) + (sqlite_time(v[_F_FIRST]), sqlite_time(v[_F_LAST]), units, nanos,
                               v[_F_MAX_ACTUAL], v[_F_MAX_ESTIMATE], *v[_F_SUMS:]))
    lines = [key(k) + (k[5], k[6], *v) for k, v in deltas.lines.items()]
    ratios = [key(k) + (k[5], n) for k, n in deltas.ratios.items()]
    return cells, lines, ratios


def write(conn: Connection, deltas: Deltas) -> None:
    """Add `deltas` to the aggregates (inside the caller's transaction)."""
    if not deltas:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_WRITE, pg_params(deltas))
        return
    cursor = driver_cursor(conn)  # in the transaction SQLAlchemy began
    try:
        for sql, rows in zip(_SQLITE, _sqlite_rows(deltas), strict=True):
            if rows:
                cursor.executemany(sql, rows)
    finally:
        cursor.close()


# ---------------------------------------------------------------------- recomputing


def max_nano(row: Any) -> int:
    """floor(10^9 * the largest ratio) of a stored cell row; -1 if it has none."""
    return row.max_units * NANO + row.max_nanos if row.max_units >= 0 else -1


def cell_values(row: Any) -> list[Any]:
    """A stored cell row as Deltas keeps a cell."""
    return ([utc(row.first_at), utc(row.last_at), max_nano(row), row.max_actual, row.max_estimate]
            + [getattr(row, name) for name in _SUMS])


def stored(conn: Connection, compacted: bool, budget_ids: Iterable[int] | None = None) -> Deltas:
    """The aggregate rows as stored (totals, or the compacted parts), as a Deltas."""
    out = Deltas()
    ids = list(budget_ids) if budget_ids is not None else None

    def rows(table: Any) -> Any:
        q = select(table).where(table.c.compacted == compacted)
        return conn.execute(q.where(table.c.budget_id.in_(ids)) if ids is not None else q)

    for r in rows(C):
        out.merge_cell((r.budget_id, r.grain, compacted, utc(r.cell_start), utc(r.period_start)), cell_values(r))
    for r in rows(L):
        out.lines[(r.budget_id, r.grain, compacted, utc(r.cell_start), utc(r.period_start), r.kind, r.name)] = [
            r.jobs, r.spent_micro, r.held_micro]
    for r in rows(H):
        out.ratios[(r.budget_id, r.grain, compacted, utc(r.cell_start), utc(r.period_start), r.bucket)] = r.jobs
    return out


def recompute(conn: Connection, budget_ids: Iterable[int] | None = None,
              problems: list[str] | None = None) -> Deltas:
    """The totals as they should be: every remaining reservation, plus the compacted parts. With
    `problems`, also checks each row's created_period and top_cost.

    The same sums as Deltas.add, taken another way, so that a million reservations take seconds:
    the database groups the rows by cell and line, and only the ratios of settled jobs are read
    one by one (their exact arithmetic needs more than 64 bits), as plain tuples."""
    out = Deltas()
    ids = list(budget_ids) if budget_ids is not None else None
    mine = R.c.budget_id.in_(ids) if ids is not None else true()
    pg = conn.dialect.name == "postgresql"

    def as_text(column: Any, fmt: str = "YYYY-MM-DD HH24:MI:SS.US") -> Any:
        # PostgreSQL: text in the form SQLite stores; SQLite: the stored text itself
        return func.to_char(func.timezone("UTC", column), fmt) if pg else column

    day = func.to_char(func.timezone("UTC", R.c.created_at), "YYYY-MM-DD") if pg else func.substr(R.c.created_at, 1, 10)
    times: dict[Any, datetime] = {}

    def moment(value: Any) -> datetime:
        found = times.get(value)
        if found is None:
            found = times[value] = utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))
        return found

    late = case((and_(R.c.state == S.SETTLED, R.c.message.like(f"{LATE_MESSAGE}%")), 1), else_=0)
    grouped = (
        select(R.c.budget_id, as_text(R.c.created_period), day, R.c.state, R.c.backend, R.c.session, late,
               func.count(), func.coalesce(func.sum(R.c.amount_micro), 0), func.coalesce(func.sum(R.c.actual_micro), 0),
               func.sum(case((R.c.actual_micro > R.c.amount_micro, 1), else_=0)),
               as_text(func.min(R.c.created_at)), as_text(func.max(R.c.created_at)))
        .where(mine, R.c.created_period.is_not(None))
        .group_by(R.c.budget_id, R.c.created_period, day, R.c.state, R.c.backend, R.c.session, late)
    )
    for (budget_id, period, day_text, state, backend, session, is_late, n, amounts, actuals, over, first,
         last) in conn.execute(grouped).all():
        period, first, last = moment(period), moment(first), moment(last)
        settled, charged = state == S.SETTLED, state in CHARGED
        for key in ((budget_id, PERIOD, False, period, period), (budget_id, DAY, False, moment(day_text), period)):
            cell = out.cells.get(key)
            if cell is None:
                fresh: list[Any] = [first, last, -1, 0, 0] + [0] * len(_SUMS)
                cell = out.cells[key] = fresh
            else:
                cell[_F_FIRST], cell[_F_LAST] = min(cell[_F_FIRST], first), max(cell[_F_LAST], last)
            out._line(key, "state", state, n, 0, 0)
            if charged:
                spent, held = (int(actuals), 0) if settled else (0, int(amounts))
                out._line(key, "backend", backend, n, spent, held)
                out._line(key, "session", session, n, spent, held)
            if settled:
                cell[_F_SUMS] += n
                cell[_F_SUMS + 1] += int(over)
                if is_late:
                    cell[_F_SUMS + 5] += n
                    cell[_F_SUMS + 6] += int(actuals)
    # the ratios, one settled job at a time: per (budget, period, day), then into both grains
    ratios: dict[tuple[Any, Any, Any], list[Any]] = {}
    histograms: dict[tuple[Any, Any, Any], dict[int, int]] = {}
    query = (select(R.c.budget_id, as_text(R.c.created_period), day, R.c.amount_micro, R.c.actual_micro)
             .where(mine, R.c.created_period.is_not(None), R.c.state == S.SETTLED, R.c.amount_micro > 0))
    for budget_id, period, day_text, amount, actual in conn.execute(query.execution_options(yield_per=50_000)):
        k = (budget_id, period, day_text)
        acc = ratios.get(k)
        if acc is None:
            acc = ratios[k] = [0, 0, 0, -1, 0, 0]  # count, units, nanos, max nano, its actual, estimate
            histograms[k] = {}
        nano = actual * NANO // amount
        acc[0] += 1
        acc[1] += nano // NANO
        acc[2] += nano % NANO
        if nano > acc[3]:
            acc[3], acc[4], acc[5] = nano, actual, amount
        q, r = divmod(actual * 1000, amount)
        if 2 * r > amount or (2 * r == amount and q % 2):
            q += 1
        bucket = q if q < FINE_BUCKETS else bucket_of(actual, amount)
        hist = histograms[k]
        hist[bucket] = hist.get(bucket, 0) + 1
    for (budget_id, period, day_text), acc in ratios.items():
        p = moment(period)
        for key in ((budget_id, PERIOD, False, p, p), (budget_id, DAY, False, moment(day_text), p)):
            cell = out.cells[key]
            cell[_F_SUMS + 2] += acc[0]
            cell[_F_SUMS + 3] += acc[1]
            cell[_F_SUMS + 4] += acc[2]
            if acc[3] > cell[_F_MAX_NANO]:
                cell[_F_MAX_NANO], cell[_F_MAX_ACTUAL], cell[_F_MAX_ESTIMATE] = acc[3], acc[4], acc[5]
            for bucket, n in histograms[(budget_id, period, day_text)].items():
                for rk in (key + (bucket,), key + (group_code(bucket),)):
                    out.ratios[rk] = out.ratios.get(rk, 0) + n
    if problems is not None:
        expected = case((R.c.state == S.SETTLED, R.c.actual_micro), (R.c.state == S.HELD, R.c.amount_micro))
        for r in conn.execute(select(R.c.key, R.c.state, R.c.created_period, R.c.top_cost, expected.label("expected"))
                              .where(mine, or_(R.c.created_period.is_(None),
                                               R.c.top_cost.is_distinct_from(expected)))):
            if r.created_period is None:
                problems.append(f"reservation {r.key}: no created_period")
            else:
                problems.append(f"reservation {r.key}: top_cost {r.top_cost} != {r.expected} for a {r.state} "
                                "reservation")
    parts = stored(conn, True, budget_ids)
    for (budget_id, grain, _, cell_start, period_start), v in parts.cells.items():
        out.merge_cell((budget_id, grain, False, cell_start, period_start), v)
    for lk, v in parts.lines.items():
        out._line((lk[0], lk[1], False, lk[3], lk[4]), lk[5], lk[6], *v)
    for sk, n in parts.ratios.items():
        rk = sk[:2] + (False,) + sk[3:]
        out.ratios[rk] = out.ratios.get(rk, 0) + n
    return out


def rebuild(conn: Connection, budget_ids: Iterable[int] | None = None) -> int:
    """Write the totals from scratch (what migration 0004 does for an existing ledger); returns the
    number of reservations read. Compacted parts are kept and counted in."""
    ids = list(budget_ids) if budget_ids is not None else None
    totals = recompute(conn, ids)
    for table in (C, L, H):
        stmt = delete(table).where(table.c.compacted.is_(False))
        conn.execute(stmt.where(table.c.budget_id.in_(ids)) if ids is not None else stmt)
    for table, rows in ((C, totals.cell_rows()), (L, totals.line_rows()), (H, totals.ratio_rows())):
        for i in range(0, len(rows), 5000):
            conn.execute(table.insert(), rows[i:i + 5000])
    return sum(v[0] for k, v in totals.lines.items() if k[1] == PERIOD and k[5] == "state")


def _diff(what: str, stored_: Any, expected: Any) -> str:
    return f"{what}: stored {stored_} != recomputed {expected}"


def _describe(key: tuple[Any, ...], names: dict[int, str]) -> str:
    grain = "period" if key[1] == PERIOD else "day"
    return f"budget {names.get(key[0], key[0])} {grain} cell {key[3].isoformat()} (period {key[4].date()})"


def verify(conn: Connection, names: dict[int, str]) -> list[str]:
    """Compare the stored totals with a recomputation from the rows that remain plus the compacted
    parts, the compacted parts of each period with their days, and both with the tombstones."""
    problems: list[str] = []
    expected = recompute(conn, problems=problems)
    actual = stored(conn, False)
    zero_line = [0, 0, 0]
    for key in sorted(set(expected.cells) | set(actual.cells), key=repr):
        e, a = expected.cells.get(key), actual.cells.get(key)
        if e is None or a is None:
            problems.append(f"{_describe(key, names)}: " + ("no stored cell" if a is None else "a cell with no rows"))
            continue
        for name, i in (("first_at", _F_FIRST), ("last_at", _F_LAST), ("max_nano", _F_MAX_NANO)):
            if a[i] != e[i]:
                problems.append(_diff(f"{_describe(key, names)} {name}", a[i], e[i]))
        for i, name in enumerate(_SUMS):
            if a[_F_SUMS + i] != e[_F_SUMS + i]:
                problems.append(_diff(f"{_describe(key, names)} {name}", a[_F_SUMS + i], e[_F_SUMS + i]))
        # equal ratios to 10^-9 may keep either pair: the pair kept must be that largest ratio
        if a[_F_MAX_NANO] >= 0 and (a[_F_MAX_ESTIMATE] <= 0
                                    or a[_F_MAX_ACTUAL] * NANO // a[_F_MAX_ESTIMATE] != a[_F_MAX_NANO]):
            problems.append(f"{_describe(key, names)}: largest ratio {a[_F_MAX_ACTUAL]}/{a[_F_MAX_ESTIMATE]} "
                            f"is not max_nano {a[_F_MAX_NANO]}")
    for lk in sorted(set(expected.lines) | set(actual.lines), key=repr):
        el, al = expected.lines.get(lk, zero_line), actual.lines.get(lk, zero_line)
        if el != al:
            problems.append(_diff(f"{_describe(lk, names)} {lk[5]} {lk[6] or '-'!r} (jobs, spent, held)", al, el))
    for rk in sorted(set(expected.ratios) | set(actual.ratios), key=repr):
        if expected.ratios.get(rk, 0) != actual.ratios.get(rk, 0):
            what = (f"ratio bucket {format_thousandths(bucket_value(rk[5]))}" if rk[5] >= 0
                    else f"ratio group from {format_thousandths(bucket_value((-1 - rk[5]) * GROUP))}")
            problems.append(_diff(f"{_describe(rk, names)} {what}",
                                  actual.ratios.get(rk, 0), expected.ratios.get(rk, 0)))
    problems += _verify_compacted(conn, names)
    return problems


def _verify_compacted(conn: Connection, names: dict[int, str]) -> list[str]:
    """What can still be checked of the compacted parts: each period's part equals the sum of its
    days' parts; the per-state counts and the settled spend equal the tombstones'; the compacted
    spend of each period equals what its folded entries say; the kept top jobs are tombstones."""
    problems: list[str] = []
    parts = stored(conn, True)
    # a period's part is the sum of its days' parts (days are a partition of the period's reservations)
    diff: dict[tuple[Any, ...], int] = {}

    def differ(k: tuple[Any, ...], grain: str, n: int) -> None:
        diff[k] = diff.get(k, 0) + (n if grain == PERIOD else -n)

    for k, v in parts.lines.items():
        for i, what in enumerate(("jobs", "spent", "held")):
            differ((k[0], k[4], f"{k[5]} {k[6] or '-'!r} {what}"), k[1], v[i])
    count_vs_histogram: dict[tuple[Any, ...], int] = {}
    for k, v in parts.cells.items():
        for i, name in enumerate(_SUMS):
            differ((k[0], k[4], name), k[1], v[_F_SUMS + i])
        count_vs_histogram[k] = count_vs_histogram.get(k, 0) + v[_F_SUMS + 2]
    for k, n in parts.ratios.items():
        differ((k[0], k[4], f"ratio bucket {k[5]}"), k[1], n)
        if k[5] >= 0:
            count_vs_histogram[k[:5]] = count_vs_histogram.get(k[:5], 0) - n
    for (budget_id, period, what), n in sorted(diff.items(), key=repr):
        if n:
            problems.append(f"budget {names.get(budget_id, budget_id)} period {period.date()}: compacted {what} of "
                            f"the period and the sum of its days differ by {n}")
    for k, n in count_vs_histogram.items():
        if n:
            problems.append(f"{_describe(k, names)}: compacted ratio_count and its histogram differ by {n}")
    # the tombstones: one per compacted reservation
    states: dict[tuple[int, str], int] = {}
    spend: dict[int, int] = {}
    for (budget_id, grain, _, _, _, kind, name), v in parts.lines.items():
        if grain == PERIOD and kind == "state":
            states[(budget_id, name)] = states.get((budget_id, name), 0) + v[0]
        if grain == PERIOD and kind == "backend":
            spend[budget_id] = spend.get(budget_id, 0) + v[1]
    tomb_states = {(r.budget_id, r.state): r.n for r in conn.execute(
        select(T.c.budget_id, T.c.state, func.count().label("n")).group_by(T.c.budget_id, T.c.state))}
    for k in set(states) | set(tomb_states):
        if states.get(k, 0) != tomb_states.get(k, 0):
            problems.append(_diff(f"budget {names.get(k[0], k[0])}: compacted {k[1]} reservations",
                                  states.get(k, 0), f"{tomb_states.get(k, 0)} tombstones"))
    tomb_spend = {r.budget_id: int(r.spent) for r in conn.execute(
        select(T.c.budget_id, func.sum(T.c.actual_micro).label("spent")).where(T.c.state == S.SETTLED)
        .group_by(T.c.budget_id))}
    for bid in set(spend) | set(tomb_spend):
        if spend.get(bid, 0) != tomb_spend.get(bid, 0):
            problems.append(_diff(f"budget {names.get(bid, bid)}: compacted settled spend", spend.get(bid, 0),
                                  f"{tomb_spend.get(bid, 0)} in tombstones"))
    # each period's compacted spend is in its folded entry, or still in entries of tombstoned keys
    folded: dict[tuple[int, datetime], int] = {}
    for r in conn.execute(select(E.c.budget_id, E.c.period_start, E.c.spent_delta, E.c.held_delta)
                          .where(E.c.kind == "compact")):
        k = (r.budget_id, utc(r.period_start))
        folded[k] = folded.get(k, 0) + r.spent_delta
        if r.held_delta:
            problems.append(f"budget {names.get(r.budget_id)} period {k[1].date()}: a compacted entry holds "
                            f"{r.held_delta} (compacted reservations hold nothing)")
    for pending in conn.execute(select(E.c.budget_id, E.c.period_start, func.sum(E.c.spent_delta).label("s"))
                                .join(T, T.c.key == E.c.reservation_key).group_by(E.c.budget_id, E.c.period_start)):
        k = (pending.budget_id, utc(pending.period_start))
        folded[k] = folded.get(k, 0) + int(pending.s)
    tombs = {(r.budget_id, utc(r.period_start)): int(r.s) for r in conn.execute(
        select(T.c.budget_id, T.c.period_start, func.sum(T.c.actual_micro).label("s"))
        .where(T.c.state == S.SETTLED).group_by(T.c.budget_id, T.c.period_start))}
    for k in set(folded) | set(tombs):
        if folded.get(k, 0) != tombs.get(k, 0):
            problems.append(_diff(f"budget {names.get(k[0], k[0])} period {k[1].date()}: compacted entries' spend",
                                  folded.get(k, 0), f"{tombs.get(k, 0)} settled in tombstones"))
    # kept top jobs: at most TOP_JOBS per cell, each a settled tombstone with those amounts
    settled_parts = {k[:2] + k[3:5]: v[0] for k, v in parts.lines.items() if k[5] == "state" and k[6] == S.SETTLED}
    tops: dict[tuple[Any, ...], int] = {}
    for r in conn.execute(select(TOP, T.c.state.label("t_state"), T.c.actual_micro.label("t_actual"),
                                 T.c.amount_micro.label("t_amount"), T.c.budget_id.label("t_budget"))
                          .join(T, T.c.key == TOP.c.key, isouter=True)):
        k = (r.budget_id, r.grain, utc(r.cell_start), utc(r.period_start))
        tops[k] = tops.get(k, 0) + 1
        if (r.t_state, r.t_actual, r.t_amount, r.t_budget) != (S.SETTLED, r.actual_micro, r.estimate_micro,
                                                               r.budget_id):
            problems.append(f"budget {names.get(r.budget_id)}: kept top job {r.key} is not a settled compacted "
                            f"reservation with those amounts")
    for k in set(tops) | set(settled_parts):
        if tops.get(k, 0) != min(TOP_JOBS, settled_parts.get(k, 0)):
            problems.append(_diff(f"budget {names.get(k[0], k[0])} {k[1]} cell {k[2].date()}: kept top jobs",
                                  tops.get(k, 0), f"min({TOP_JOBS}, {settled_parts.get(k, 0)} compacted settled)"))
    return problems
