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
from typing import Any

from types import SimpleNamespace

from sqlalchemy import Connection, Engine, and_, case, func, or_, select, tuple_

from .aggregates import DAY, NANO, PERIOD, TOP_JOBS, Deltas, format_thousandths, mean_thousandths, thousandths
from .db import read_only
from .errors import LedgerError, UnknownBudget
from .models import Budget, BudgetPeriod, ReportCell, ReportLine, ReportRatio, ReportTop, Reservation
from .money import format_amount
from .periods import utc

B, P, R = Budget.__table__, BudgetPeriod.__table__, Reservation.__table__
C, L, H, TOPT = ReportCell.__table__, ReportLine.__table__, ReportRatio.__table__, ReportTop.__table__


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


def build_report(engine: Engine, namespace: str, window: ReportWindow, budget: str | None = None) -> Report:
    """The report for a namespace (or one of its budgets, for that budget's status).

    Read from the report aggregates (aggregates.py), never by summing reservations: per budget,
    the period cells whose span of creation times lies inside the window, the day cells of those
    that do not, and only where a window edge that is not a UTC midnight cuts a day cell, that
    day's reservations inside the window. Every figure is exact (accuracy: see aggregates.py)."""
    with read_only(engine) as conn:
        query = select(B).where(B.c.namespace == namespace).order_by(B.c.name)
        if budget is not None:
            query = query.where(B.c.name == budget)
        budgets = list(conn.execute(query))
        if not budgets:
            known = [r[0] for r in conn.execute(select(B.c.namespace).distinct().order_by(B.c.namespace))]
            hint = f" (namespaces with budgets: {', '.join(known)})" if known else " (the ledger has no budgets yet)"
            raise UnknownBudget(f"no budgets in namespace {namespace!r}{hint}")
        lines: list[BudgetLine] = []
        for b in budgets:
            rows = conn.execute(
                select(P).where(
                    P.c.budget_id == b.id, P.c.period_start < window.end,
                    or_(P.c.period_end.is_(None), P.c.period_end > window.start),
                ).order_by(P.c.period_start)
            )
            periods = [
                PeriodLine(utc(p.period_start).isoformat(), utc(p.period_end).isoformat() if p.period_end else None,
                           p.limit_micro, p.spent_micro, p.held_micro, p.overrun_micro)
                for p in rows
            ]
            lines.append(BudgetLine(b.name, b.unit, b.period, b.enforcement, b.queued_count, periods))
        sums = _Sums()
        for b in budgets:
            _add_budget(conn, b, window, sums)
        sums.finish(conn)
    return Report(
        namespace, window.label, window.start.isoformat(), window.end.isoformat(), lines, sums.counts(),
        sums.spend("backend"), sums.spend("session"), sums.top(), sums.accuracy(), sums.late,
    )


def _inside(cell: Any, window: ReportWindow) -> bool:
    return utc(cell.first_at) >= window.start and utc(cell.last_at) < window.end


def _meets(cell: Any, window: ReportWindow) -> bool:
    return utc(cell.last_at) >= window.start and utc(cell.first_at) < window.end


def _cells(table: Any, cells: list[Any], compacted: bool | None = False) -> Any:
    """A condition selecting `table`'s rows of these cells (all of one budget and grain)."""
    first = cells[0]
    where = [table.c.budget_id == first.budget_id, table.c.grain == first.grain]
    if compacted is not None:
        where.append(table.c.compacted.is_(compacted))
    if len(cells) == 1:
        where += [table.c.cell_start == first.cell_start, table.c.period_start == first.period_start]
    elif first.grain == PERIOD:  # a period cell's cell_start is its period_start
        where.append(table.c.cell_start.in_([c.cell_start for c in cells]))
    else:
        where.append(tuple_(table.c.cell_start, table.c.period_start).in_([(c.cell_start, c.period_start)
                                                                          for c in cells]))
    return and_(*where)


def _add_budget(conn: Connection, b: Any, window: ReportWindow, sums: _Sums) -> None:
    """Add one budget's activity in `window` to `sums`."""
    touched = list(conn.execute(select(C).where(
        C.c.budget_id == b.id, C.c.grain == PERIOD, C.c.compacted.is_(False),
        C.c.last_at >= window.start, C.c.first_at < window.end)))
    periods = [c for c in touched if _inside(c, window)]
    split = [c for c in touched if not _inside(c, window)]
    days: list[Any] = []
    if split:
        for d in conn.execute(select(C).where(
                C.c.budget_id == b.id, C.c.grain == DAY, C.c.compacted.is_(False),
                C.c.period_start.in_([c.period_start for c in split]),
                C.c.cell_start > window.start - timedelta(days=1), C.c.cell_start < window.end)):
            if _inside(d, window):
                days.append(d)
            elif _meets(d, window):
                sums.add_rows(conn, b, d, window)
    for cell in periods + days:
        sums.add_cell(b, cell)
    for group in (periods, days):
        if group:
            sums.where.append(_cells(H, group))
            sums.line_where.append(_cells(L, group))
            sums.top_where.append(_cells(TOPT, group, compacted=None))
    # the top jobs that remain as rows: the ranking index gives each period cell's first few
    for cell in touched:
        query = select(R).where(R.c.budget_id == b.id, R.c.created_period == cell.period_start,
                                R.c.top_cost.is_not(None))
        if cell in split:
            query = query.where(R.c.created_at >= window.start, R.c.created_at < window.end)
        for r in conn.execute(query.order_by(R.c.top_cost.desc(), R.c.key).limit(TOP_JOBS)):
            sums.jobs.append(JobLine(r.key, r.job, r.backend, r.session, b.unit, r.state, r.amount_micro,
                                     r.actual_micro))
    sums.units[b.id] = b.unit


class _Sums:
    """A report's figures, summed over cells (and, rarely, over rows of a day cut by the window)."""

    def __init__(self) -> None:
        self.units: dict[int, str] = {}
        self.where: list[Any] = []  # report_ratios rows to read
        self.line_where: list[Any] = []
        self.top_where: list[Any] = []
        self.extra = Deltas()  # rows of day cells a window edge cuts
        self.jobs: list[JobLine] = []
        self.lines: dict[tuple[str, str, str], list[int]] = {}  # (kind, name, unit) -> jobs, spent, held
        self.settled = self.overruns = self.ratio_count = self.nano_sum = 0
        self.max_pair: tuple[int, int] | None = None
        self.histogram: dict[int, int] | None = None
        self.percentiles: tuple[int | None, int | None] = (None, None)
        self.late = LateCharges()

    def add_cell(self, b: Any, c: Any) -> None:
        self.settled += c.settled
        self.overruns += c.overruns
        self.ratio_count += c.ratio_count
        self.nano_sum += c.ratio_units * NANO + c.ratio_nanos
        if c.max_units >= 0:
            self._max(c.max_actual, c.max_estimate)
        if c.late_jobs:
            self.late.jobs += c.late_jobs
            self.late.amounts[b.unit] = self.late.amounts.get(b.unit, 0) + c.late_micro

    def _max(self, actual: int, estimate: int) -> None:
        if self.max_pair is None or actual * self.max_pair[1] > self.max_pair[0] * estimate:
            self.max_pair = (actual, estimate)

    def add_rows(self, conn: Connection, b: Any, day: Any, window: ReportWindow) -> None:
        """A day cell the window's edge cuts: its reservations inside the window, from their rows
        (exact only while they exist: a compacted day can be split by no window)."""
        if conn.execute(select(C.c.settled).where(
                C.c.budget_id == b.id, C.c.grain == DAY, C.c.compacted.is_(True), C.c.cell_start == day.cell_start,
                C.c.period_start == day.period_start)).first() is not None:
            raise BadPeriod(f"the window {window.start.isoformat()} to {window.end.isoformat()} splits the day "
                            f"{utc(day.cell_start).date()} of budget {b.namespace}/{b.name}, whose reservations "
                            "were compacted: use whole UTC days")
        start = max(window.start, utc(day.cell_start))
        end = min(window.end, utc(day.cell_start) + timedelta(days=1))
        for r in conn.execute(select(R).where(R.c.budget_id == b.id, R.c.created_period == day.period_start,
                                             R.c.created_at >= start, R.c.created_at < end)):
            self.extra.add_row(r)
        self.units[b.id] = b.unit

    def finish(self, conn: Connection) -> None:
        """Read the lines, the kept top jobs and the percentiles of every cell chosen."""
        for row in self.extra.cell_rows():
            if row["grain"] == PERIOD:  # each row is in both grains: count it once
                self.add_cell(SimpleNamespace(unit=self.units[row["budget_id"]]), SimpleNamespace(**row))
        for k, (jobs, spent, held) in self.extra.lines.items():
            if k[1] == PERIOD:
                self._line(k[5], k[6], self.units[k[0]], jobs, spent, held)
        if self.line_where:
            for r in conn.execute(select(L.c.budget_id, L.c.kind, L.c.name, func.sum(L.c.jobs),
                                         func.sum(L.c.spent_micro), func.sum(L.c.held_micro))
                                  .where(or_(*self.line_where)).group_by(L.c.budget_id, L.c.kind, L.c.name)):
                self._line(r[1], r[2], self.units[r[0]], int(r[3]), int(r[4]), int(r[5]))
        if self.top_where:
            for r in conn.execute(select(TOPT).where(or_(*self.top_where))):
                self.jobs.append(JobLine(r.key, r.job, r.backend, r.session, self.units[r.budget_id], r.state,
                                         r.estimate_micro, r.actual_micro))
        n = self.ratio_count
        if not n or not self.where:
            if n:  # only rows of cut days
                self.percentiles = _percentiles(sorted(self._extra_histogram().items()), n)
            return
        median, p90 = n // 2, min(n - 1, (n * 9) // 10)
        if not self.extra.ratios:  # the usual case: the percentiles are found by the database
            hist = select(H.c.bucket, func.sum(func.sum(H.c.jobs)).over(order_by=H.c.bucket).label("cum")).where(
                or_(*self.where)).group_by(H.c.bucket).subquery()
            row = conn.execute(select(func.min(case((hist.c.cum > median, hist.c.bucket))),
                                      func.min(case((hist.c.cum > p90, hist.c.bucket))))).one()
            self.percentiles = (row[0], row[1])
            return
        merged = self._extra_histogram()
        for bucket, jobs in conn.execute(select(H.c.bucket, func.sum(H.c.jobs)).where(or_(*self.where))
                                         .group_by(H.c.bucket)):
            merged[bucket] = merged.get(bucket, 0) + int(jobs)
        self.percentiles = _percentiles(sorted(merged.items()), n)

    def _extra_histogram(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for k, jobs in self.extra.ratios.items():
            if k[1] == PERIOD:
                out[k[5]] = out.get(k[5], 0) + jobs
        return out

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
        cost = lambda j: j.actual if j.actual is not None else j.estimate  # noqa: E731
        return sorted(self.jobs, key=lambda j: (-cost(j), j.key))[:TOP_JOBS]

    def accuracy(self) -> Accuracy:
        if not self.ratio_count:
            return Accuracy(settled=self.settled, overruns=self.overruns)
        median, p90 = self.percentiles
        assert self.max_pair is not None and median is not None and p90 is not None
        return Accuracy(
            settled=self.settled,
            mean_ratio=format_thousandths(mean_thousandths(self.nano_sum, self.ratio_count)),
            median_ratio=format_thousandths(median),
            p90_ratio=format_thousandths(p90),
            max_ratio=format_thousandths(thousandths(*self.max_pair)),
            overruns=self.overruns,
        )


def _percentiles(histogram: list[tuple[int, int]], n: int) -> tuple[int | None, int | None]:
    """The buckets holding the median and the p90 (as the sorted list's [n // 2] and [n * 9 // 10])."""
    wanted = [n // 2, min(n - 1, (n * 9) // 10)]
    found: list[int | None] = [None, None]
    cum = 0
    for bucket, jobs in histogram:
        cum += jobs
        for i, index in enumerate(wanted):
            if found[i] is None and cum > index:
                found[i] = bucket
    return found[0], found[1]


# ---------------------------------------------------------------------- rendering


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_jsonable(report), indent=2)
    if fmt == "csv":
        return _csv(report)
    if fmt == "table":
        return _table(report)
    raise ValueError(f"unknown format {fmt!r}: use table, json or csv")


def _jsonable(report: Report) -> dict[str, Any]:
    """Amounts as exact decimal strings (never floats), with the unit beside them."""
    data = asdict(report)
    for b, line in zip(data["budgets"], report.budgets):
        for p, period in zip(b["periods"], line.periods):
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


def _table(report: Report) -> str:
    out = [f"Namespace {report.namespace}, {report.window} ({report.window_start} to {report.window_end})", ""]
    rows = []
    for b in report.budgets:
        if not b.periods:
            rows.append([b.name, b.unit, b.period, b.enforcement, "-", "-", "-", "-", "-", str(b.queued)])
        for p in b.periods:
            rows.append([b.name, b.unit, b.period, b.enforcement, p.start[:10], format_amount(p.limit),
                         format_amount(p.spent), format_amount(p.held), format_amount(p.remaining), str(b.queued)])
    out += _grid(["BUDGET", "UNIT", "PERIOD", "ENFORCEMENT", "FROM", "LIMIT", "SPENT", "HELD", "REMAINING", "QUEUED"],
                 rows)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "none"
    out += ["", f"Reservations: {counts}"]
    for title, lines in (("By backend", report.by_backend), ("By session", report.by_session)):
        out += ["", title]
        out += _grid(["NAME", "UNIT", "JOBS", "SPENT", "HELD"],
                     [[s.name or "-", s.unit, str(s.jobs), format_amount(s.spent), format_amount(s.held)]
                      for s in lines]) if lines else ["  (none)"]
    out += ["", f"Top jobs (by cost, at most {TOP_JOBS})"]
    out += _grid(["JOB", "BACKEND", "STATE", "UNIT", "ESTIMATE", "ACTUAL"],
                 [[j.job or j.key, j.backend or "-", j.state, j.unit, format_amount(j.estimate),
                   format_amount(j.actual) if j.actual is not None else "-"] for j in report.top_jobs]
                 ) if report.top_jobs else ["  (none)"]
    if report.late.jobs:
        amounts = ", ".join(format_amount(v, unit) for unit, v in sorted(report.late.amounts.items()))
        out += ["", f"Late charges: {report.late.jobs} jobs, {amounts} (work that ran after its reservation "
                    "was released; charged outside any hold)"]
    a = report.accuracy
    out += ["", "Estimate accuracy (actual / estimate over settled jobs)"]
    if a.mean_ratio is None:
        out.append(f"  settled {a.settled}: no estimates to compare")
    else:
        out.append(f"  settled {a.settled}, mean {a.mean_ratio}, median {a.median_ratio}, p90 {a.p90_ratio}, "
                   f"max {a.max_ratio}, overruns {a.overruns}")
    return "\n".join(out)
