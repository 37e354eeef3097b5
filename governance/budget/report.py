"""Cost reports: what a namespace may spend, has reserved and has spent, and where it went.

One report object feeds the CLI (table, JSON, CSV) and, later, the QiskitBudget status.
The window is a calendar span (a month, an ISO week or a day, UTC); budget balances are
shown for every budget period that overlaps it, activity for reservations created in it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, case, func, or_, select

from .db import read_only
from .errors import LedgerError, UnknownBudget
from .models import Budget, BudgetPeriod, Reservation
from .money import format_amount
from .periods import utc
from .types import LATE_MESSAGE

B, P, R = Budget.__table__, BudgetPeriod.__table__, Reservation.__table__
TOP_JOBS = 10


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
    """The report for a namespace (or one of its budgets, for that budget's status)."""
    with read_only(engine) as conn:
        query = select(B).where(B.c.namespace == namespace).order_by(B.c.name)
        if budget is not None:
            query = query.where(B.c.name == budget)
        budgets = list(conn.execute(query))
        if not budgets:
            known = [r[0] for r in conn.execute(select(B.c.namespace).distinct().order_by(B.c.namespace))]
            hint = f" (namespaces with budgets: {', '.join(known)})" if known else " (the ledger has no budgets yet)"
            raise UnknownBudget(f"no budgets in namespace {namespace!r}{hint}")
        ids = [b.id for b in budgets]
        unit_of = {b.id: b.unit for b in budgets}
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

        in_window = and_(R.c.budget_id.in_(ids), R.c.created_at >= window.start, R.c.created_at < window.end)
        counts = {state: n for state, n in conn.execute(
            select(R.c.state, func.count()).where(in_window).group_by(R.c.state))}

        spent = func.coalesce(func.sum(case((R.c.state == "settled", R.c.actual_micro), else_=0)), 0)
        held = func.coalesce(func.sum(case((R.c.state == "held", R.c.amount_micro), else_=0)), 0)
        charged = R.c.state.in_(("settled", "held"))

        def spend_by(column: Any) -> list[SpendLine]:
            rows = conn.execute(
                select(column, R.c.budget_id, func.count(), spent, held)
                .where(in_window, charged).group_by(column, R.c.budget_id)
            )
            merged: dict[tuple[str, str], SpendLine] = {}
            for name, budget_id, jobs, s, h in rows:
                line = merged.setdefault((name, unit_of[budget_id]), SpendLine(name, unit_of[budget_id], 0, 0, 0))
                line.jobs += jobs
                line.spent += int(s)
                line.held += int(h)
            return sorted(merged.values(), key=lambda x: (-(x.spent + x.held), x.name))

        cost = func.coalesce(R.c.actual_micro, R.c.amount_micro)
        top = [
            JobLine(r.key, r.job, r.backend, r.session, unit_of[r.budget_id], r.state, r.amount_micro, r.actual_micro)
            for r in conn.execute(
                select(R).where(in_window, charged).order_by(cost.desc(), R.c.key).limit(TOP_JOBS)
            )
        ]
        by_backend, by_session = spend_by(R.c.backend), spend_by(R.c.session)
        late = LateCharges()
        for budget_id, jobs, amount in conn.execute(
            select(R.c.budget_id, func.count(), func.coalesce(func.sum(R.c.actual_micro), 0))
            .where(in_window, R.c.state == "settled", R.c.message.like(f"{LATE_MESSAGE}%")).group_by(R.c.budget_id)
        ):
            late.jobs += jobs
            late.amounts[unit_of[budget_id]] = late.amounts.get(unit_of[budget_id], 0) + int(amount)
        pairs = [
            (r.amount_micro, r.actual_micro)
            for r in conn.execute(
                select(R.c.amount_micro, R.c.actual_micro).where(in_window, R.c.state == "settled")
            )
        ]
    return Report(
        namespace, window.label, window.start.isoformat(), window.end.isoformat(), lines, counts,
        by_backend, by_session, top, _accuracy(pairs), late,
    )


def _accuracy(pairs: list[tuple[int, int]]) -> Accuracy:
    ratios = sorted(Decimal(actual) / Decimal(estimate) for estimate, actual in pairs if estimate > 0)
    if not ratios:
        return Accuracy(settled=len(pairs), overruns=sum(1 for e, a in pairs if a > e))

    def q(x: Decimal) -> str:
        return str(x.quantize(Decimal("0.001")))

    return Accuracy(
        settled=len(pairs),
        mean_ratio=q(sum(ratios) / len(ratios)),
        median_ratio=q(ratios[len(ratios) // 2]),
        p90_ratio=q(ratios[min(len(ratios) - 1, (len(ratios) * 9) // 10)]),
        max_ratio=q(ratios[-1]),
        overruns=sum(1 for e, a in pairs if a > e),
    )


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
