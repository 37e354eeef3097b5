"""Chargeback: one line per budget of every namespace for a calendar window, for finance.

What each budget was charged for work admitted in the window (spent: settled actuals; held: still
reserved), read from the same aggregates as `qgov ledger report`, so both always agree. Amounts
are exact decimal strings in the budget's unit; units are never summed together.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import Connection, or_, select

from .models import Budget, table_of
from .money import format_amount
from .report import ReportWindow, md_table, report_on

B = table_of(Budget)
COLUMNS = ["period", "namespace", "budget", "unit", "jobs", "spent", "held", "total", "late_jobs", "late_amount"]


@dataclass(frozen=True)
class ChargeLine:
    namespace: str
    budget: str
    unit: str
    jobs: int  # jobs charged or holding funds
    spent: int  # micro-units
    held: int
    late_jobs: int
    late: int


def chargeback(conn: Connection, window: ReportWindow) -> list[ChargeLine]:
    """Every budget that existed in the window (deleted ones too: their spend is still owed), by
    namespace and name, read on the ledger's connection (`Ledger.chargeback`)."""
    query = (select(B.c.namespace, B.c.name)
             .where(B.c.created_at < window.end, or_(B.c.retired_at.is_(None), B.c.retired_at >= window.start))
             .order_by(B.c.namespace, B.c.name))
    budgets = [(r.namespace, r.name) for r in conn.execute(query)]
    lines = []
    for namespace, name in budgets:
        report = report_on(conn, namespace, window, name)
        unit = report.budgets[0].unit
        lines.append(ChargeLine(namespace, name, unit, sum(s.jobs for s in report.by_backend),
                                sum(s.spent for s in report.by_backend), sum(s.held for s in report.by_backend),
                                report.late.jobs, report.late.amounts.get(unit, 0)))
    return lines


def _row(window: ReportWindow, line: ChargeLine) -> list[str]:
    return [window.label, line.namespace, line.budget, line.unit, str(line.jobs), format_amount(line.spent),
            format_amount(line.held), format_amount(line.spent + line.held), str(line.late_jobs),
            format_amount(line.late)]


def render_chargeback(window: ReportWindow, lines: list[ChargeLine], fmt: str = "csv") -> str:
    """CSV (a header, then one row per budget) or a Markdown table."""
    if fmt == "markdown":
        headers = [c.replace("_", " ").capitalize() for c in COLUMNS]
        return "\n".join([f"# Chargeback {window.label}", "", *md_table(headers, [_row(window, x) for x in lines])]) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_row(window, x) for x in lines)
    return out.getvalue()
