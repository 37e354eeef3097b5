"""Costs over any time window, grouped, for the cost API and the FOCUS export (pure: no kopf, no kubernetes).

A charge is a settled reservation: its job's actual cost, in the budget's unit, charged when the
reservation settled (`finished_at`). A window is a half-open UTC span [start, end): an RFC 3339
pair `start,end`, `thismonth`, `lastmonth`, `7d`, `24h`, or a report period (`2026-11`,
`2026-W48`, `2026-11-24`). Amounts stay integer micro-units until they are written out as exact
decimal strings; different units are never summed together.

Reservations that `qgov ledger compact` removed are no longer here one by one: windows over
compacted periods show only what is left (their totals live on in `qgov ledger report`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, and_, func, select

from .costquery import BadQuery, check_aggregate
from .models import Budget, JobAttempt, JobMoney, Reservation, table_of
from .money import format_amount
from .periods import utc
from .report import BadPeriod, parse_window
from .types import LATE_MESSAGE, ReservationState, labels_of

B, R, M, A = table_of(Budget), table_of(Reservation), table_of(JobMoney), table_of(JobAttempt)
FORMATS = ("json", "csv")


@dataclass(frozen=True)
class CostWindow:
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return f"{rfc3339(self.start)},{rfc3339(self.end)}"


def rfc3339(moment: datetime) -> str:
    """UTC, seconds, `Z`: what FOCUS and most tools parse (`2026-11-24T12:00:00Z`)."""
    moment = utc(moment)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _month_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)


def _next_month(moment: datetime) -> datetime:
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc)


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"bad window time {text.strip()!r}: use RFC 3339, such as 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise BadQuery(f"bad window time {text.strip()!r}: give the offset (Z or +01:00), RFC 3339 requires it")
    return utc(moment)


def parse_cost_window(text: str | None, now: datetime | None = None) -> CostWindow:
    """`start,end` (RFC 3339), `thismonth` (the default), `lastmonth`, `<n>d`, `<n>h` (up to now), or a
    report period (`2026-11`, `2026-W48`, `2026-11-24`)."""
    now = utc(now or datetime.now(timezone.utc))
    text = (text or "thismonth").strip()
    lowered = text.lower()
    if "," in text:
        first, _, second = text.partition(",")
        start, end = _instant(first), _instant(second)
        if end <= start:
            raise BadQuery(f"bad window {text!r}: the end must come after the start")
        return CostWindow(start, end)
    if lowered == "thismonth":
        return CostWindow(_month_start(now), _next_month(now))
    if lowered == "lastmonth":
        this = _month_start(now)
        return CostWindow(_month_start(this - timedelta(days=1)), this)
    if m := re.fullmatch(r"(\d{1,5})([dh])", lowered):
        count = int(m[1])
        if count == 0:
            raise BadQuery(f"bad window {text!r}: the span must be at least 1{m[2]}")
        span = timedelta(days=count) if m[2] == "d" else timedelta(hours=count)
        return CostWindow(now - span, now)
    try:
        window = parse_window(text, now)
    except BadPeriod:
        raise BadQuery(
            f"bad window {text!r}: use start,end (RFC 3339), thismonth, lastmonth, 7d, 24h, "
            "or a month (2026-11), ISO week (2026-W48) or day (2026-11-24)"
        ) from None
    return CostWindow(window.start, window.end)


@dataclass(frozen=True)
class Charge:
    """One settled job: what it cost and whose it was."""

    key: str  # the job's UID
    job: str  # namespace/name
    namespace: str
    budget: str
    unit: str
    backend: str
    session: str
    estimate: int  # micro-units held for it
    actual: int  # micro-units charged
    late: bool  # charged after its hold was gone (see Ledger._charge_late)
    started: datetime  # admitted (or created, if never admitted)
    finished: datetime  # settled: when it was charged
    qpu_seconds: Decimal | None  # measured QPU time of its counted attempts, if any
    labels: tuple[tuple[str, str], ...] = ()  # the job's own labels at admission (JobTerms.labels)

    def label(self, key: str) -> str:
        """The value of the job's label `key` at admission; "" when it had none."""
        return next((v for k, v in self.labels if k == key), "")


def charges(conn: Connection, window: CostWindow, namespaces: Iterable[str] | None = None) -> list[Charge]:
    """Settled reservations charged in `window` (optionally only these namespaces), oldest first."""
    query = (select(R.c.key, R.c.job, R.c.backend, R.c.session, R.c.amount_micro, R.c.actual_micro, R.c.message,
                    R.c.created_at, R.c.admitted_at, R.c.finished_at, B.c.namespace, B.c.name, B.c.unit,
                    M.c.labels)
             .join(B, B.c.id == R.c.budget_id)
             .outerjoin(M, M.c.key == R.c.key)
             .where(R.c.state == ReservationState.SETTLED,
                    R.c.finished_at >= window.start, R.c.finished_at < window.end)
             .order_by(R.c.finished_at, R.c.key))
    if namespaces is not None:
        allowed = sorted(set(namespaces))
        if not allowed:
            return []
        query = query.where(B.c.namespace.in_(allowed))
    rows = conn.execute(query).all()
    seconds = _qpu_seconds(conn, [r.key for r in rows])
    return [
        Charge(r.key, r.job, r.namespace, r.name, r.unit, r.backend, r.session, r.amount_micro, r.actual_micro or 0,
               (r.message or "").startswith(LATE_MESSAGE), utc(r.admitted_at or r.created_at), utc(r.finished_at),
               seconds.get(r.key), labels_of(r.labels))
        for r in rows
    ]


def _qpu_seconds(conn: Connection, keys: Sequence[str]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for low in range(0, len(keys), 500):  # bounded IN lists
        chunk = keys[low:low + 500]
        query = select(A.c.key, A.c.qpu_seconds).where(and_(A.c.key.in_(chunk), A.c.counted.is_(True)))
        for row in conn.execute(query):
            try:
                out[row.key] = out.get(row.key, Decimal(0)) + Decimal(row.qpu_seconds or "0")
            except InvalidOperation:
                continue
    return out


def namespaces(conn: Connection) -> list[str]:
    """Every namespace the ledger has a budget for (what the cost API asks access reviews about)."""
    return [r[0] for r in conn.execute(select(func.distinct(B.c.namespace)).order_by(B.c.namespace))]


@dataclass(frozen=True)
class CostLine:
    name: str  # the group's value ("" for no session, say)
    unit: str
    jobs: int
    cost: int  # micro-units
    estimate: int
    late: int  # of `cost`, charged late


def aggregate(items: Iterable[Charge], by: str) -> list[CostLine]:
    """Sum by `by` (namespace, budget as namespace/name, backend, session, or label:KEY: the job's
    label KEY at admission, "" for jobs without it) and unit."""
    label = check_aggregate(by)
    sums: dict[tuple[str, str], list[int]] = {}
    for c in items:
        name = c.label(label) if label is not None else f"{c.namespace}/{c.budget}" if by == "budget" \
            else getattr(c, by)
        cell = sums.setdefault((name, c.unit), [0, 0, 0, 0])
        cell[0] += 1
        cell[1] += c.actual
        cell[2] += c.estimate
        cell[3] += c.actual if c.late else 0
    return [CostLine(name, unit, *v) for (name, unit), v in sorted(sums.items())]


def render(window: CostWindow, by: str, lines: list[CostLine], fmt: str = "json",
           namespaces_shown: Sequence[str] = ()) -> str:
    """JSON (window, aggregate, the namespaces included, one object per line; amounts as decimal strings)
    or CSV (a header, one row per line)."""
    if fmt not in FORMATS:
        raise BadQuery(f"bad format {fmt!r}: use json or csv")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["window_start", "window_end", by, "unit", "jobs", "cost", "estimate", "late"])
        for x in lines:
            writer.writerow([rfc3339(window.start), rfc3339(window.end), x.name, x.unit, x.jobs,
                             format_amount(x.cost), format_amount(x.estimate), format_amount(x.late)])
        return out.getvalue()
    body: dict[str, Any] = {
        "window": {"start": rfc3339(window.start), "end": rfc3339(window.end)},
        "aggregate": by,
        "namespaces": list(namespaces_shown),
        "items": [{"name": x.name, "unit": x.unit, "jobs": x.jobs, "cost": format_amount(x.cost),
                   "estimate": format_amount(x.estimate), "late": format_amount(x.late)} for x in lines],
        "totals": [{"unit": unit, "jobs": sum(x.jobs for x in lines if x.unit == unit),
                    "cost": format_amount(sum(x.cost for x in lines if x.unit == unit))}
                   for unit in sorted({x.unit for x in lines})],
    }
    return json.dumps(body, indent=2) + "\n"
