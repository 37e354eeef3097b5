"""Cost reports: what a namespace may spend, has reserved and has spent, and where it went.

One report object feeds the CLI (table, JSON, CSV) and, later, the QiskitBudget status.
The window is a calendar span (a month, an ISO week or a day, UTC); budget balances are
shown for every budget period that overlaps it, activity for reservations created in it.
Activity is read from the report aggregates (aggregates.py), so a report costs the same
whatever the history behind it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Unpack

from types import SimpleNamespace

from sqlalchemy import CompoundSelect, Connection, and_, bindparam, func, null, or_, select, union_all

from . import aggregates
from .aggregates import (
    DAY,
    GROUP,
    NANO,
    PERIOD,
    TOP_JOBS,
    Deltas,
    format_thousandths,
    mean_thousandths,
    thousandths,
)
from .errors import LedgerError, UnknownBudget
from .models import Budget, BudgetPeriod, ReportCell, ReportLine, ReportRatio, ReportTop, Reservation, table_of
from .money import format_amount
from .periods import utc
from .types import Balance

B, P, R = table_of(Budget), table_of(BudgetPeriod), table_of(Reservation)
C, L, H, TOPT = table_of(ReportCell), table_of(ReportLine), table_of(ReportRatio), table_of(ReportTop)


class BadPeriod(LedgerError):
    pass


@dataclass(frozen=True)
class ReportWindow:
    label: str
    start: datetime
    end: datetime


def period_window(start: datetime, end: datetime | None) -> ReportWindow:
    """A budget period as a report window (an open-ended period reports up to now)."""
    stop = end or datetime.now(timezone.utc) + timedelta(days=1)
    return ReportWindow(f"period from {start.date().isoformat()}", start, stop)


def parse_window(text: str | None, now: datetime | None = None) -> ReportWindow:
    """`2026-11` (a month), `2026-W48` (an ISO week), `2026-11-24` (a day); default this month."""
    now = utc(now or datetime.now(timezone.utc))
    if not text:
        text = f"{now.year:04d}-{now.month:02d}"
    text = text.strip()
    try:
        if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
            year, month = int(m[1]), int(m[2])
            start = datetime(year, month, 1, tzinfo=timezone.utc)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
        elif m := re.fullmatch(r"(\d{4})-W(\d{2})", text):
            start = datetime.combine(date.fromisocalendar(int(m[1]), int(m[2]), 1), datetime.min.time(), timezone.utc)
            end = start + timedelta(days=7)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
            end = start + timedelta(days=1)
        else:
            raise ValueError
    except ValueError:
        raise BadPeriod(
            f"bad period {text!r}: use a month (2026-11), an ISO week (2026-W48) or a day (2026-11-24)"
        ) from None
    return ReportWindow(text, start, end)


@dataclass
class PeriodLine:
    start: str
    end: str | None
    limit: int
    spent: int
    held: int
    overrun: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.spent - self.held)


@dataclass
class BudgetLine:
    name: str
    unit: str
    period: str
    enforcement: str
    queued: int
    periods: list[PeriodLine]
    limit: int = 0  # the budget's limit now (a period not yet begun gets it), micro-units
    anchor: str = ""  # where its periods are counted from (ISO 8601)


@dataclass
class SpendLine:
    name: str  # backend or session name ("" shown as "-")
    unit: str
    jobs: int
    spent: int
    held: int


@dataclass
class JobLine:
    key: str
    job: str
    backend: str
    session: str
    unit: str
    state: str
    estimate: int
    actual: int | None


@dataclass
class Accuracy:
    settled: int = 0
    mean_ratio: str | None = None  # actual / estimate, as decimal strings
    median_ratio: str | None = None
    p90_ratio: str | None = None
    max_ratio: str | None = None
    overruns: int = 0


@dataclass
class LateCharges:
    """Work charged after its reservation was no longer held (released while the work ran): the
    money was spent, so the ledger has it, outside any hold. Non-zero means something went wrong
    that a person should look at."""
    jobs: int = 0
    amounts: dict[str, int] = field(default_factory=dict)  # unit -> micro-units


@dataclass
class Report:
    namespace: str
    window: str
    window_start: str
    window_end: str
    budgets: list[BudgetLine]
    counts: dict[str, int]
    by_backend: list[SpendLine]
    by_session: list[SpendLine]
    top_jobs: list[JobLine]
    accuracy: Accuracy = field(default_factory=Accuracy)
    late: LateCharges = field(default_factory=LateCharges)


@dataclass(frozen=True)
class StatusReads:
    """What a budget's status shows, read together (Ledger.status_reads)."""

    balance: Balance
    report: Report  # of the balance's period
    daily: dict[date, int]  # micro-units committed per UTC day, the burn rate's input
    oldest_queued: datetime | None  # when the head of its queue was queued; None: nothing waits


def report_on(conn: Connection, namespace: str, window: ReportWindow, budget: str | None = None) -> Report:
    """The report for a namespace (or one of its budgets, for that budget's status), read on a
    connection the caller holds: the ledger's (`Ledger.report`, `Ledger.status_reads`, which reads
    it with the balance). On PostgreSQL each statement may see what was committed when it ran
    (READ COMMITTED, no transaction: the figures of one statement, e.g. a cell and its lines, are
    always of one moment).

    Read from the report aggregates (aggregates.py), never by summing reservations: per budget,
    the period cells whose span of creation times lies inside the window, the day cells of those
    that do not, and only where a window edge that is not a UTC midnight cuts a day cell, that
    day's reservations inside the window. Every figure is exact (accuracy: see aggregates.py).
    A budget's own period is one cell: three statements, whatever its history."""
    span = dict(start=window.start, end=window.end)
    cells: dict[tuple[Any, ...], tuple[Any, list[Any]]] = {}
    if budget is None:
        rows = conn.execute(_BUDGETS, dict(span, ns=namespace)).all()
    else:  # one budget (its status): its periods, period cells and their lines in one statement
        rows = conn.execute(_BUDGET_AND_CELLS, dict(span, ns=namespace, name=budget)).all()
        seen: set[tuple[Any, ...]] = set()  # (a line repeats once per period row the window holds)
        for r in rows:
            m = r._mapping
            key = (m["c_budget_id"], m["c_period_start"])
            if key[0] is None or (key, m["l_kind"], m["l_name"]) in seen:
                continue
            seen.add((key, m["l_kind"], m["l_name"]))
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = (SimpleNamespace(**{c: m[f"c_{c}"] for c in _CELL_COLUMNS}), [])
            cell[1].append(SimpleNamespace(kind=m["l_kind"], name=m["l_name"], jobs=m["l_jobs"],
                                           spent_micro=m["l_spent_micro"], held_micro=m["l_held_micro"]))
    if not rows:
        known = [r[0] for r in conn.execute(select(B.c.namespace).distinct().order_by(B.c.namespace))]
        hint = f" (namespaces with budgets: {', '.join(known)})" if known else " (the ledger has no budgets yet)"
        raise UnknownBudget(f"no budgets in namespace {namespace!r}{hint}")
    budgets: dict[int, Any] = {}
    lines: list[BudgetLine] = []
    last_period = None
    for r in rows:
        if r.id not in budgets:
            budgets[r.id] = r
            lines.append(BudgetLine(r.name, r.unit, r.period, r.enforcement, r.queued_count, [],
                                    r.limit_micro, utc(r.anchor).isoformat()))
            last_period = None
        if r.p_period_start is not None and r.p_period_start != last_period:
            last_period = r.p_period_start
            lines[-1].periods.append(PeriodLine(
                utc(r.p_period_start).isoformat(), utc(r.p_period_end).isoformat() if r.p_period_end else None,
                r.p_limit_micro, r.p_spent_micro, r.p_held_micro, r.p_overrun_micro))
    sums = _Sums({b.id: b.unit for b in budgets.values()})
    # the period cells with reservations created in the window, each with its lines
    if budget is None:
        for r in conn.execute(_TOUCHED, dict(span, ids=list(budgets))).all():
            key = (r.budget_id, r.period_start)
            cells.setdefault(key, (r, []))[1].append(r)
    for cell, cell_lines in cells.values():
        b = budgets[cell.budget_id]
        if _inside(cell, window):
            sums.add_cell(conn, b.unit, cell, cell_lines)
            if len(cells) == 1:  # a budget's period (its status): its ratio groups come along
                rows = conn.execute(_TOP_KEPT_AND_GROUPS, _key(cell)).all()
                sums.add_jobs(b.unit, [r for r in rows if r[0] is not None])
                sums.groups = {-1 - r[5]: r[6] for r in rows if r[0] is None}
            else:
                sums.add_jobs(b.unit, conn.execute(_TOP_AND_KEPT, _key(cell)))
            continue
        # the window takes part of this period: its days (and rows of a day it cuts)
        for day in conn.execute(_DAYS, dict(b=b.id, period=cell.period_start, end=window.end,
                                            after=window.start - timedelta(days=1))).all():
            if _inside(day, window):
                sums.add_cell(conn, b.unit, day)
                sums.add_jobs(b.unit, conn.execute(_KEPT_TOP, _key(day)))
            elif _meets(day, window):
                sums.add_rows(conn, b, day, window)
        sums.add_jobs(b.unit, conn.execute(_TOP_IN, dict(span, b=b.id, period=cell.period_start)))
    sums.finish(conn)
    return Report(
        namespace, window.label, window.start.isoformat(), window.end.isoformat(), lines, sums.counts(),
        sums.spend("backend"), sums.spend("session"), sums.top(), sums.accuracy(), sums.late,
    )


# Every statement a report runs, built once (SQLAlchemy then reuses their compiled form).
_PERIOD_COLUMNS = [c.label(f"p_{c.name}") for c in P.c if c.name not in ("id", "budget_id")]
_BUDGETS = (
    select(B, *_PERIOD_COLUMNS)
    .outerjoin(P, and_(P.c.budget_id == B.c.id, P.c.period_start < bindparam("end"),
                       or_(P.c.period_end.is_(None), P.c.period_end > bindparam("start"))))
    .where(B.c.namespace == bindparam("ns")).order_by(B.c.name, P.c.period_start)
)
_CELL_COLUMNS = tuple(C.c.keys())
_BUDGET_AND_CELLS = (
    select(B, *_PERIOD_COLUMNS, *(c.label(f"c_{c.name}") for c in C.c),
           *(L.c[c].label(f"l_{c}") for c in ("kind", "name", "jobs", "spent_micro", "held_micro")))
    .outerjoin(P, and_(P.c.budget_id == B.c.id, P.c.period_start < bindparam("end"),
                       or_(P.c.period_end.is_(None), P.c.period_end > bindparam("start"))))
    .outerjoin(C, and_(C.c.budget_id == B.c.id, C.c.grain == PERIOD, C.c.compacted.is_(False),
                       C.c.last_at >= bindparam("start"), C.c.first_at < bindparam("end")))
    .outerjoin(L, and_(L.c.budget_id == C.c.budget_id, L.c.grain == C.c.grain, L.c.compacted == C.c.compacted,
                       L.c.cell_start == C.c.cell_start, L.c.period_start == C.c.period_start))
    .where(B.c.namespace == bindparam("ns"), B.c.name == bindparam("name"))
    .order_by(P.c.period_start, C.c.period_start)
)
_TOUCHED = (
    select(C, L.c.kind, L.c.name, L.c.jobs, L.c.spent_micro, L.c.held_micro)
    .join(L, and_(L.c.budget_id == C.c.budget_id, L.c.grain == C.c.grain, L.c.compacted == C.c.compacted,
                  L.c.cell_start == C.c.cell_start, L.c.period_start == C.c.period_start))
    .where(C.c.budget_id.in_(bindparam("ids", expanding=True)), C.c.grain == PERIOD, C.c.compacted.is_(False),
           C.c.last_at >= bindparam("start"), C.c.first_at < bindparam("end"))
    .order_by(C.c.budget_id, C.c.period_start)
)
_DAYS = select(C).where(C.c.budget_id == bindparam("b"), C.c.grain == DAY, C.c.compacted.is_(False),
                        C.c.cell_start > bindparam("after"), C.c.cell_start < bindparam("end"),
                        C.c.period_start == bindparam("period"))


_DAILY = (
    select(L.c.cell_start, func.sum(L.c.spent_micro + L.c.held_micro))
    .join(B, B.c.id == L.c.budget_id)
    .where(B.c.namespace == bindparam("ns"), B.c.name == bindparam("name"), L.c.grain == DAY,
           L.c.kind == "backend", L.c.cell_start >= bindparam("since"))
    .group_by(L.c.cell_start)
)


def daily_spend(conn: Connection, namespace: str, budget: str, since: date) -> dict[date, int]:
    """Micro-units committed (spent + held) per UTC day from `since`, from the day cells (their
    compacted parts included): what the burn rate reads, one statement whatever the history."""
    start = datetime.combine(since, datetime.min.time(), timezone.utc)
    days: dict[date, int] = {}
    for cell_start, amount in conn.execute(_DAILY, dict(ns=namespace, name=budget, since=start)):
        day = utc(cell_start).date()
        days[day] = days.get(day, 0) + int(amount or 0)
    return days


def _of_cell(table: Any) -> Any:
    return and_(table.c.budget_id == bindparam("b"), table.c.grain == bindparam("grain"),
                table.c.cell_start == bindparam("cell"), table.c.period_start == bindparam("period"))


_COMPACTED_DAY = select(C.c.settled).where(_of_cell(C), C.c.compacted.is_(True))
_LINES = select(L.c.kind, L.c.name, L.c.jobs, L.c.spent_micro, L.c.held_micro).where(_of_cell(L),
                                                                                   L.c.compacted.is_(False))
_JOB = ("key", "job", "backend", "session", "state")
_KEPT_TOP = select(*(TOPT.c[c] for c in _JOB), TOPT.c.estimate_micro, TOPT.c.actual_micro).where(_of_cell(TOPT))
_GROUPS = select(H.c.bucket, H.c.jobs).where(_of_cell(H), H.c.compacted.is_(False), H.c.bucket < 0)
_IN_GROUPS = and_(_of_cell(H), H.c.compacted.is_(False),
                  or_(and_(H.c.bucket >= bindparam("lo1"), H.c.bucket < bindparam("hi1")),
                      and_(H.c.bucket >= bindparam("lo2"), H.c.bucket < bindparam("hi2"))))
_BUCKETS = select(H.c.bucket, H.c.jobs).where(_IN_GROUPS)
# a period cell's top jobs among its rows: ORDER BY ... LIMIT walks ix_reservations_top
_TOP = (select(*(R.c[c] for c in _JOB), R.c.amount_micro, R.c.actual_micro)
        .where(R.c.budget_id == bindparam("b"), R.c.created_period == bindparam("period"), R.c.top_cost.is_not(None))
        .order_by(R.c.top_cost.desc(), R.c.key).limit(TOP_JOBS))
_TOP_IN = _TOP.where(R.c.created_at >= bindparam("start"), R.c.created_at < bindparam("end"))
_TOP_AND_KEPT = union_all(select(_TOP.subquery()), _KEPT_TOP)  # those that remain, and those compacted
# ... and the cell's ratio group counts, as rows with key NULL (bucket, jobs in the last two columns)
_TOP_KEPT_AND_GROUPS: CompoundSelect[Unpack[tuple[Any, ...]]] = union_all(
    select(_TOP.subquery()), _KEPT_TOP,
    select(*(null().label(c) for c in _JOB), H.c.bucket, H.c.jobs).where(_of_cell(H), H.c.compacted.is_(False),
                                                                          H.c.bucket < 0))
_ROWS_IN = select(R).where(R.c.budget_id == bindparam("b"), R.c.created_period == bindparam("period"),
                           R.c.created_at >= bindparam("start"), R.c.created_at < bindparam("end"))


def _inside(cell: Any, window: ReportWindow) -> bool:
    return utc(cell.first_at) >= window.start and utc(cell.last_at) < window.end


def _meets(cell: Any, window: ReportWindow) -> bool:
    return utc(cell.last_at) >= window.start and utc(cell.first_at) < window.end


def _key(cell: Any) -> dict[str, Any]:
    return dict(b=cell.budget_id, grain=cell.grain, cell=cell.cell_start, period=cell.period_start)


class _Sums:
    """A report's figures, summed over cells (and, rarely, over rows of a day cut by the window)."""

    def __init__(self, units: dict[int, str]) -> None:
        self.units = units
        self.cells: list[Any] = []  # the cells whose ratios count
        self.extra = Deltas()  # rows of day cells a window edge cuts
        self.jobs: list[JobLine] = []
        self.lines: dict[tuple[str, str, str], list[int]] = {}  # (kind, name, unit) -> jobs, spent, held
        self.settled = self.overruns = self.ratio_count = self.nano_sum = 0
        self.max_pair: tuple[int, int] | None = None
        self.percentiles: tuple[int | None, int | None] = (None, None)
        self.groups: dict[int, int] | None = None  # the ratio group counts, when read with the top jobs
        self.late = LateCharges()

    def add_cell(self, conn: Connection | None, unit: str, c: Any, lines: list[Any] | None = None) -> None:
        """A cell's figures; with `conn`, a stored cell whose lines (unless given) are read too."""
        self.settled += c.settled
        self.overruns += c.overruns
        self.ratio_count += c.ratio_count
        self.nano_sum += c.ratio_units * NANO + c.ratio_nanos
        if c.max_units >= 0:
            self._max(c.max_actual, c.max_estimate)
        if c.late_jobs:
            self.late.jobs += c.late_jobs
            self.late.amounts[unit] = self.late.amounts.get(unit, 0) + c.late_micro
        if conn is None:
            return
        key = _key(c)
        for r in lines if lines is not None else conn.execute(_LINES, key).all():
            self._line(r.kind, r.name, unit, r.jobs, r.spent_micro, r.held_micro)
        if c.ratio_count:
            self.cells.append(key)

    def add_jobs(self, unit: str, rows: Any) -> None:
        self.jobs += [JobLine(r[0], r[1], r[2], r[3], unit, r[4], r[5], r[6]) for r in rows]

    def _max(self, actual: int, estimate: int) -> None:
        if self.max_pair is None or actual * self.max_pair[1] > self.max_pair[0] * estimate:
            self.max_pair = (actual, estimate)

    def add_rows(self, conn: Connection, b: Any, day: Any, window: ReportWindow) -> None:
        """A day cell the window's edge cuts: its reservations inside the window, from their rows
        (exact only while they exist: a compacted day can be split by no window)."""
        if conn.execute(_COMPACTED_DAY, _key(day)).first() is not None:
            raise BadPeriod(f"the window {window.start.isoformat()} to {window.end.isoformat()} splits the day "
                            f"{utc(day.cell_start).date()} of budget {b.namespace}/{b.name}, whose reservations "
                            "were compacted: use whole UTC days")
        start = max(window.start, utc(day.cell_start))
        end = min(window.end, utc(day.cell_start) + timedelta(days=1))
        for r in conn.execute(_ROWS_IN, dict(b=b.id, period=day.period_start, start=start, end=end)):
            self.extra.add_row(r)

    def finish(self, conn: Connection) -> None:
        """Add the rows of cut days; find the percentiles."""
        for row in self.extra.cell_rows():
            if row["grain"] == PERIOD:  # each row is in both grains: count it once
                self.add_cell(None, self.units[row["budget_id"]], SimpleNamespace(**row))
        for k, (jobs, spent, held) in self.extra.lines.items():
            if k[1] == PERIOD:
                self._line(k[5], k[6], self.units[k[0]], jobs, spent, held)
        if self.ratio_count:
            self.percentiles = self._percentiles(conn)

    def _percentiles(self, conn: Connection) -> tuple[int, int]:
        """The buckets of the median and the p90 (the sorted ratios' [n // 2] and [n * 9 // 10]): first
        the group counts of every cell (for a budget's period alone, read with its top jobs), then
        the buckets of the one or two groups they fall in."""
        n = self.ratio_count
        wanted = (n // 2, min(n - 1, (n * 9) // 10))
        extra: dict[int, int] = {}
        for k, jobs in self.extra.ratios.items():
            if k[1] == PERIOD:
                extra[k[5]] = extra.get(k[5], 0) + jobs
        groups = {-1 - b: j for b, j in extra.items() if b < 0}
        if self.groups is not None and len(self.cells) == 1:
            groups.update(self.groups)
        else:
            for key in self.cells:
                for bucket, jobs in conn.execute(_GROUPS, key).all():
                    groups[-1 - bucket] = groups.get(-1 - bucket, 0) + jobs
        spots = []  # per percentile: its group, and how many ratios lie in the groups before it
        for index in wanted:
            before = 0
            for group in sorted(groups):
                if before + groups[group] > index:
                    break
                before += groups[group]
            spots.append((group, before))
        ranges = dict(lo1=spots[0][0] * GROUP, hi1=spots[0][0] * GROUP + GROUP,
                      lo2=spots[1][0] * GROUP, hi2=spots[1][0] * GROUP + GROUP)
        buckets = {b: j for b, j in extra.items() if b >= 0 and b // GROUP in (spots[0][0], spots[1][0])}
        for key in self.cells:
            for bucket, jobs in conn.execute(_BUCKETS, dict(key, **ranges)).all():
                buckets[bucket] = buckets.get(bucket, 0) + jobs
        found: list[int] = []
        for index, (group, before) in zip(wanted, spots, strict=True):
            for bucket in sorted(b for b in buckets if b // GROUP == group):
                before += buckets[bucket]
                if before > index:
                    found.append(bucket)
                    break
        return found[0], found[1]

    def _line(self, kind: str, name: str, unit: str, jobs: int, spent: int, held: int) -> None:
        line = self.lines.setdefault((kind, name, unit), [0, 0, 0])
        line[0] += jobs
        line[1] += spent
        line[2] += held

    def counts(self) -> dict[str, int]:
        return {name: v[0] for (kind, name, _), v in sorted(self.lines.items()) if kind == "state" and v[0]}

    def spend(self, kind: str) -> list[SpendLine]:
        lines = [SpendLine(name, unit, *v) for (k, name, unit), v in self.lines.items() if k == kind and v[0]]
        return sorted(lines, key=lambda x: (-(x.spent + x.held), x.name))

    def top(self) -> list[JobLine]:
        def cost(job: JobLine) -> int:
            return job.actual if job.actual is not None else job.estimate

        return sorted(self.jobs, key=lambda j: (-cost(j), j.key))[:TOP_JOBS]

    def accuracy(self) -> Accuracy:
        if not self.ratio_count:
            return Accuracy(settled=self.settled, overruns=self.overruns)
        median, p90 = self.percentiles
        assert self.max_pair is not None and median is not None and p90 is not None
        return Accuracy(
            settled=self.settled,
            mean_ratio=format_thousandths(mean_thousandths(self.nano_sum, self.ratio_count)),
            median_ratio=format_thousandths(aggregates.bucket_value(median)),
            p90_ratio=format_thousandths(aggregates.bucket_value(p90)),
            max_ratio=format_thousandths(thousandths(*self.max_pair)),
            overruns=self.overruns,
        )


# ---------------------------------------------------------------------- rendering


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_jsonable(report), indent=2)
    if fmt == "csv":
        return _csv(report)
    if fmt == "table":
        return _table(report)
    if fmt == "markdown":
        return _markdown(report)
    raise ValueError(f"unknown format {fmt!r}: use table, json, csv or markdown")


def _jsonable(report: Report) -> dict[str, Any]:
    """Amounts as exact decimal strings (never floats), with the unit beside them."""
    data = asdict(report)
    for b, line in zip(data["budgets"], report.budgets, strict=True):
        b["limit"] = format_amount(line.limit)
        for p, period in zip(b["periods"], line.periods, strict=True):
            for k in ("limit", "spent", "held", "overrun"):
                p[k] = format_amount(p[k])
            p["remaining"] = format_amount(period.remaining)
    for section in ("by_backend", "by_session"):
        for s in data[section]:
            s["spent"], s["held"] = format_amount(s["spent"]), format_amount(s["held"])
    for j in data["top_jobs"]:
        j["estimate"] = format_amount(j["estimate"])
        j["actual"] = format_amount(j["actual"]) if j["actual"] is not None else None
    data["late"]["amounts"] = {unit: format_amount(v) for unit, v in report.late.amounts.items()}
    return data


def _csv(report: Report) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "name", "unit", "period_start", "jobs", "state", "limit", "spent", "held", "remaining",
                "estimate", "actual"])
    for b in report.budgets:
        for p in b.periods:
            w.writerow(["budget", b.name, b.unit, p.start, "", "", format_amount(p.limit), format_amount(p.spent),
                        format_amount(p.held), format_amount(p.remaining), "", ""])
    for section, lines in (("backend", report.by_backend), ("session", report.by_session)):
        for s in lines:
            w.writerow([section, s.name, s.unit, "", s.jobs, "", "", format_amount(s.spent), format_amount(s.held),
                        "", "", ""])
    for j in report.top_jobs:
        w.writerow(["job", j.job or j.key, j.unit, "", 1, j.state, "", "", "", "", format_amount(j.estimate),
                    format_amount(j.actual) if j.actual is not None else ""])
    return out.getvalue()


def _grid(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


_BUDGET_HEADERS = ["Budget", "Unit", "Period", "Enforcement", "From", "Limit", "Spent", "Held", "Remaining", "Queued"]


def _budget_rows(report: Report) -> list[list[str]]:
    """One row per budget and period of the window ("-" for a budget with no period in it)."""
    rows = []
    for b in report.budgets:
        if not b.periods:
            rows.append([b.name, b.unit, b.period, b.enforcement, "-", "-", "-", "-", "-", str(b.queued)])
        for p in b.periods:
            rows.append([b.name, b.unit, b.period, b.enforcement, p.start[:10], format_amount(p.limit),
                         format_amount(p.spent), format_amount(p.held), format_amount(p.remaining), str(b.queued)])
    return rows


def _sections(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's breakdowns as (title, headers, rows): what both renderings show, in order."""
    spend = [(title, ["Name", "Unit", "Jobs", "Spent", "Held"],
              [[s.name or "-", s.unit, str(s.jobs), format_amount(s.spent), format_amount(s.held)] for s in lines])
             for title, lines in (("By backend", report.by_backend), ("By session", report.by_session))]
    top = (f"Top jobs (by cost, at most {TOP_JOBS})", ["Job", "Backend", "State", "Unit", "Estimate", "Actual"],
           [[j.job or j.key, j.backend or "-", j.state, j.unit, format_amount(j.estimate),
             format_amount(j.actual) if j.actual is not None else "-"] for j in report.top_jobs])
    return [*spend, top]


def _counts(report: Report) -> str:
    return "Reservations: " + (", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "none")


def _late(report: Report) -> str | None:
    if not report.late.jobs:
        return None
    amounts = ", ".join(format_amount(v, unit) for unit, v in sorted(report.late.amounts.items()))
    return (f"{report.late.jobs} jobs, {amounts} (work that ran after its reservation was released; "
            "charged outside any hold)")


def _table(report: Report) -> str:
    out = [f"Namespace {report.namespace}, {report.window} ({report.window_start} to {report.window_end})", ""]
    out += _grid([h.upper() for h in _BUDGET_HEADERS], _budget_rows(report))
    out += ["", _counts(report)]
    for title, headers, rows in _sections(report):
        out += ["", title]
        out += _grid([h.upper() for h in headers], rows) if rows else ["  (none)"]
    late = _late(report)
    if late:
        out += ["", f"Late charges: {late}"]
    a = report.accuracy
    out += ["", "Estimate accuracy (actual / estimate over settled jobs)"]
    if a.mean_ratio is None:
        out.append(f"  settled {a.settled}: no estimates to compare")
    else:
        out.append(f"  settled {a.settled}, mean {a.mean_ratio}, median {a.median_ratio}, p90 {a.p90_ratio}, "
                   f"max {a.max_ratio}, overruns {a.overruns}")
    return "\n".join(out)


def md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table (pipes in cells escaped); amounts right-aligned."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    align = ["---:" if h in _NUMERIC else "---" for h in headers]
    return ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"] + \
        ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]


_NUMERIC = {"Limit", "Spent", "Held", "Remaining", "Queued", "Jobs", "Estimate", "Actual", "Total", "Late"}


def _markdown(report: Report) -> str:
    """The table report as Markdown: to paste into an issue, a wiki page or a chat."""
    out = [f"# Cost report: {report.namespace}", "",
           f"{report.window} ({report.window_start} to {report.window_end})", "", "## Budgets", ""]
    out += md_table(_BUDGET_HEADERS, _budget_rows(report))
    out += ["", _counts(report)]
    for title, headers, rows in _sections(report):
        out += ["", f"## {title}", ""]
        out += md_table(headers, rows) if rows else ["(none)"]
    late = _late(report)
    if late:
        out += ["", f"**Late charges:** {late}"]
    a = report.accuracy
    out += ["", "## Estimate accuracy", ""]
    out.append(f"Settled {a.settled}: no estimates to compare" if a.mean_ratio is None else
               f"Settled {a.settled}: actual / estimate mean {a.mean_ratio}, median {a.median_ratio}, "
               f"p90 {a.p90_ratio}, max {a.max_ratio}; overruns {a.overruns}")
    return "\n".join(out) + "\n"
