"""Report aggregates and compaction: every report equals one computed from the reservation rows
themselves (a reference implementation below, in Python), before and after compaction, for
budget periods and calendar windows; verify() recomputes the aggregates; compacted keys replay."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select, text

from governance.budget import aggregates, db
from governance.budget.errors import InvalidTransition, UnknownReservation
from governance.budget.ledger import CompactedKey, Ledger
from governance.budget.models import LedgerEntry, Reservation
from governance.budget.report import (
    TOP_JOBS,
    Accuracy,
    BadPeriod,
    JobLine,
    LateCharges,
    ReportWindow,
    SpendLine,
    parse_window,
    period_window,
)
from governance.budget.types import LATE_MESSAGE, BudgetSpec, Decision, ReservationState, ReserveRequest

from tests.conftest import FakeClock

NS = "team-a"
USD = 1_000_000
JAN1 = datetime(2026, 1, 1, tzinfo=timezone.utc)


# ---------------------------------------------------------------------- the reference: rows, summed in Python


def snapshot(ledger: Ledger) -> dict[str, Any]:
    """Every live reservation, as plain objects with the budget's unit (tombstoned ones are not here)."""
    with ledger.engine.connect() as conn:
        units = dict(conn.execute(text("SELECT id, unit FROM budgets")).all())
        names = {i: n for i, n in conn.execute(text("SELECT id, name FROM budgets")).all()}
        rows = conn.execute(select(Reservation)).all()
    return {r.key: SimpleNamespace(key=r.key, budget=names[r.budget_id], unit=units[r.budget_id], job=r.job,
                                   backend=r.backend, session=r.session, state=r.state, amount=r.amount_micro,
                                   actual=r.actual_micro, created_at=_utc(r.created_at),
                                   late=r.state == "settled" and r.message.startswith(LATE_MESSAGE))
            for r in rows}


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _q(x: Fraction) -> str:
    """x rounded half-even to thousandths, as Decimal.quantize(Decimal('0.001')) shows it."""
    return aggregates.format_thousandths(aggregates.thousandths(x.numerator, x.denominator))


def _bucket(x: Fraction) -> str:
    return aggregates.format_thousandths(aggregates.bucket_value(aggregates.bucket_of(x.numerator, x.denominator)))


@dataclass
class Figures:
    counts: dict[str, int]
    by_backend: list[SpendLine]
    by_session: list[SpendLine]
    top_jobs: list[JobLine]
    accuracy: Accuracy
    late: LateCharges


def reference(rows: dict[str, Any], window: ReportWindow, budget: str | None = None) -> Figures:
    """What the report must say, from the rows: the same definitions build_report had before the
    aggregates, with the documented accuracy (mean to 10^-9 before rounding; percentiles of
    ratios above 10 as their bucket)."""
    rs = [r for r in rows.values() if window.start <= r.created_at < window.end
          and (budget is None or r.budget == budget)]
    counts: dict[str, int] = {}
    for r in rs:
        counts[r.state] = counts.get(r.state, 0) + 1
    charged = [r for r in rs if r.state in ("held", "settled")]

    def spend(attr: str) -> list[SpendLine]:
        lines: dict[tuple[str, str], SpendLine] = {}
        for r in charged:
            line = lines.setdefault((getattr(r, attr), r.unit), SpendLine(getattr(r, attr), r.unit, 0, 0, 0))
            line.jobs += 1
            line.spent += r.actual if r.state == "settled" else 0
            line.held += r.amount if r.state == "held" else 0
        return sorted(lines.values(), key=lambda x: (-(x.spent + x.held), x.name))

    cost = lambda r: r.actual if r.actual is not None else r.amount  # noqa: E731
    top = [JobLine(r.key, r.job, r.backend, r.session, r.unit, r.state, r.amount, r.actual)
           for r in sorted(charged, key=lambda r: (-cost(r), r.key))[:TOP_JOBS]]
    settled = [r for r in rs if r.state == "settled"]
    ratios = sorted(Fraction(r.actual, r.amount) for r in settled if r.amount > 0)
    overruns = sum(1 for r in settled if r.actual > r.amount)
    if ratios:
        n = len(ratios)
        mean = Fraction(sum(r.actual * aggregates.NANO // r.amount for r in settled if r.amount > 0), n * 10**9)
        accuracy = Accuracy(len(settled), _q(mean), _bucket(ratios[n // 2]), _bucket(ratios[min(n - 1, n * 9 // 10)]),
                            _q(ratios[-1]), overruns)
    else:
        accuracy = Accuracy(settled=len(settled), overruns=overruns)
    late = LateCharges()
    for r in settled:
        if r.late:
            late.jobs += 1
            late.amounts[r.unit] = late.amounts.get(r.unit, 0) + r.actual
    return Figures(counts, spend("backend"), spend("session"), top, accuracy, late)


def figures(ledger: Ledger, window: ReportWindow, budget: str | None = None) -> Figures:
    r = ledger.report(NS, window, budget)
    return Figures(r.counts, r.by_backend, r.by_session, r.top_jobs, r.accuracy, r.late)


def calendar_windows(start: datetime, end: datetime) -> list[ReportWindow]:
    """Every UTC day, ISO week and month from start to end (as `qgov ledger report --period`)."""
    out: dict[str, ReportWindow] = {}
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= end:
        for text_ in (day.date().isoformat(), f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}",
                      f"{day.year:04d}-{day.month:02d}"):
            out.setdefault(text_, parse_window(text_))
        day += timedelta(days=1)
    return list(out.values())


# ---------------------------------------------------------------------- helpers


def budget(ledger: Ledger, name: str, limit: int, **kw: Any) -> None:
    ledger.upsert_budget(BudgetSpec(NS, name, limit, **kw))


def req(key: str, amount: int, name: str = NS, **kw: Any) -> ReserveRequest:
    return ReserveRequest(key, NS, name, amount, job=kw.pop("job", f"{NS}/{key}"), **kw)


def entry_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()


def month_of_work(ledger: Ledger, clock: FakeClock, days: int = 40) -> None:
    """Six weeks of varied work against a monthly budget anchored mid-day and a daily one."""
    budget(ledger, NS, 500 * USD, period="monthly", enforcement="queue", anchor=datetime(2026, 1, 15, 6, 0,
                                                                                         tzinfo=timezone.utc))
    budget(ledger, "daily", 3 * USD, period="daily", enforcement="queue", anchor=JAN1)
    backends = ["ibm_torino", "fake_manila", "aer"]
    for d in range(days):
        for i in range(4):
            key = f"d{d}-{i}"
            name = "daily" if i % 2 else NS
            amount = (d * 7 + i * 13) % 9 * 200_000 + 100_000
            out = ledger.reserve(req(key, amount, name, backend=backends[(d + i) % 3], session=f"s{d % 3}" if i else ""))
            if out.decision is Decision.ADMITTED:
                if i == 3:
                    ledger.release(key)
                    if d % 4 == 0:
                        ledger.settle(key, amount // 3, ran=True)  # a late charge
                elif i != 2 or d % 5:
                    ledger.settle(key, amount * ((d + i) % 7 + 2) // 6)  # some overruns
        if d % 9 == 0:
            ledger.adjust(NS, NS, 10_000, key=f"adj-{d}")
        clock.advance(hours=17)
        ledger.admit_queued()


# ---------------------------------------------------------------------- tests


def test_reports_equal_the_rows_for_periods_and_calendar_windows(ledger: Ledger, clock: FakeClock) -> None:
    clock.now = datetime(2026, 10, 20, 9, 30, tzinfo=timezone.utc)
    start = clock.now
    month_of_work(ledger, clock)
    rows = snapshot(ledger)
    assert ledger.verify() == []
    windows = calendar_windows(start, clock.now)
    for name in (NS, "daily"):
        balance = ledger.balance(NS, name)
        windows.append(period_window(balance.period_start, balance.period_end))
        earlier = ledger.balance(NS, name, at=start + timedelta(days=3))
        windows.append(period_window(earlier.period_start, earlier.period_end))
    windows.append(ReportWindow("odd", start + timedelta(hours=40, minutes=7), clock.now - timedelta(hours=30)))
    for window in windows:
        assert figures(ledger, window) == reference(rows, window), window
        for name in (NS, "daily"):
            assert figures(ledger, window, name) == reference(rows, window, name), (window, name)


def test_compaction_keeps_every_report_and_balance_exact(ledger: Ledger, clock: FakeClock) -> None:
    clock.now = datetime(2026, 10, 20, 9, 30, tzinfo=timezone.utc)
    start = clock.now
    month_of_work(ledger, clock)
    assert ledger.reserve(req("still-held", 100_000)).admitted  # held in the current period: never compacted
    windows = calendar_windows(start, clock.now)
    for name in (NS, "daily"):
        for at in (start + timedelta(days=d) for d in range(0, 41, 3)):
            b = ledger.balance(NS, name, at=at)
            windows.append(period_window(b.period_start, b.period_end))
    before = {(w.label, w.start, n): figures(ledger, w, n) for w in windows for n in (None, NS, "daily")}
    balances = {(n, d): ledger.balance(NS, n, at=start + timedelta(days=d)) for n in (NS, "daily") for d in range(41)}
    rows, entries = len(snapshot(ledger)), entry_count(ledger)

    result = ledger.compact(datetime(2026, 11, 20, tzinfo=timezone.utc))
    assert result.reservations > 50 and result.entries > 100 and result.periods > 10
    assert len(snapshot(ledger)) == rows - result.reservations
    assert entry_count(ledger) == entries - result.entries + result.periods
    assert ledger.verify() == []
    for (label, wstart, name), fig in before.items():
        window = next(w for w in windows if (w.label, w.start) == (label, wstart))
        assert figures(ledger, window, name) == fig, (label, name)
    for (name, d), bal in balances.items():
        assert ledger.balance(NS, name, at=start + timedelta(days=d)) == bal
    assert ledger.reservation("still-held").state == "held"
    assert ledger.compact(datetime(2026, 11, 20, tzinfo=timezone.utc)).reservations == 0  # nothing more to do
    # later work is still reported and verified with the compacted history
    ledger.settle("still-held", 50_000)
    assert ledger.verify() == []


def test_held_and_queued_work_and_open_periods_are_never_compacted(ledger: Ledger, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
    budget(ledger, NS, 2 * USD, period="daily", enforcement="queue", anchor=JAN1)
    ledger.reserve(req("held", USD))
    ledger.reserve(req("done", USD))
    ledger.settle("done", USD)
    ledger.reserve(req("queued", USD))
    budget(ledger, "forever", 10 * USD)  # period none: its one period never closes
    ledger.reserve(req("f", USD, "forever"))
    ledger.settle("f", USD)
    clock.advance(days=3)  # the day of all three is closed; "queued" waits (the next days are free, though)
    result = ledger.compact(clock.now + timedelta(days=30))
    assert result.reservations == 1  # only "done": held, queued (now held) and the none period's stay
    assert {r.key for r in ledger.reservations()} >= {"held", "queued", "f"}
    with pytest.raises(CompactedKey):
        ledger.reservation("done")
    assert ledger.verify() == []


def test_a_compacted_key_replays_and_is_never_admitted_again(ledger: Ledger, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
    budget(ledger, NS, 5 * USD, period="daily", enforcement="hard", anchor=JAN1)
    ledger.reserve(req("settled", USD))
    ledger.settle("settled", 700_000)
    ledger.reserve(req("released", USD))
    ledger.release("released")
    ledger.reserve(req("late", USD))
    ledger.release("late")
    ledger.settle("late", 400_000, ran=True)
    ledger.reserve(req("big", 2 * USD))
    refused = ledger.reserve(req("refused", 2 * USD))
    assert refused.decision is Decision.REFUSED
    ledger.settle("big", 2 * USD)
    clock.advance(days=2)
    spent = ledger.balance(NS, NS, at=clock.now - timedelta(days=2)).spent_micro
    assert ledger.compact(clock.now).reservations == 5

    for key, decision, state in (("settled", Decision.ADMITTED, "settled"), ("released", Decision.ADMITTED, "released"),
                                 ("refused", Decision.REFUSED, "refused"), ("late", Decision.ADMITTED, "settled")):
        out = ledger.reserve(req(key, USD))
        assert out.replayed and out.decision is decision and out.state == state, key
    assert ledger.balance(NS, NS).held_micro == 0  # nothing was admitted again
    again = ledger.settle("settled", 999)
    assert again.replayed and again.actual_micro == 700_000 and again.released_micro == 300_000
    assert ledger.settle("late", 1, ran=True).late
    assert ledger.release("released").replayed and ledger.release("settled").state == "settled"
    with pytest.raises(CompactedKey, match="cannot be recorded"):
        ledger.settle("released", 100, ran=True)  # its period was compacted as final: refused, loudly
    with pytest.raises(InvalidTransition):
        ledger.settle("released", 100)
    assert ledger.settle("released", 0, ran=True).replayed
    with pytest.raises(UnknownReservation):  # CompactedKey is one: the operator leaves such jobs alone
        ledger.reservation("settled")
    with pytest.raises(UnknownReservation):
        ledger.settle("never-seen", 1)
    gone = {r.key: r for r in ledger.reservations((ReservationState.SETTLED,))}
    assert gone["settled"].actual_micro == 700_000 and gone["late"].message.startswith(LATE_MESSAGE)
    assert gone["settled"].compacted and gone["settled"].id is None and gone["settled"].job == ""
    assert (gone["settled"].state, gone["settled"].budget_namespace) == (ReservationState.SETTLED, NS)
    assert ledger.balance(NS, NS, at=clock.now - timedelta(days=2)).spent_micro == spent
    assert ledger.verify() == []


def test_verify_finds_an_aggregate_that_disagrees_with_the_rows(ledger: Ledger, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
    budget(ledger, NS, 10 * USD, period="daily", anchor=JAN1)
    for key in ("a", "b", "c"):
        ledger.reserve(req(key, USD, backend="ibm"))
    ledger.settle("a", 500_000)
    ledger.settle("c", 250_000)
    clock.advance(days=2)
    ledger.compact(clock.now)
    assert ledger.verify() == []
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE report_lines SET spent_micro = spent_micro + 1 WHERE kind = 'backend' "
                          "AND compacted = :f AND grain = 'D'"), {"f": False})
        conn.execute(text("UPDATE report_cells SET ratio_nanos = ratio_nanos + 1 WHERE compacted = :t "
                          "AND grain = 'P'"), {"t": True})
    problems = ledger.verify()
    assert any("backend 'ibm'" in p and "stored [3, 750001, 1000000] != recomputed [3, 750000" in p for p in problems), problems
    assert any("compacted ratio_nanos of the period and the sum of its days differ by 1" in p for p in problems), problems


def test_a_window_edge_inside_a_compacted_day_is_refused_not_guessed(ledger: Ledger, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 10, 10, tzinfo=timezone.utc)
    budget(ledger, NS, 10 * USD, period="daily", anchor=datetime(2026, 1, 1, 6, 0, tzinfo=timezone.utc))
    for key in ("a", "b"):  # at 10:00 and 14:00
        ledger.reserve(req(key, USD))
        ledger.settle(key, USD)
        clock.advance(hours=4)
    clock.advance(hours=14)  # 08:00 next day: the period that ended at 06:00 is closed
    ledger.compact(clock.now)
    assert figures(ledger, parse_window("2026-11-10")).counts == {"settled": 2}
    with pytest.raises(BadPeriod, match="use whole UTC days"):
        ledger.report(NS, ReportWindow("odd", datetime(2026, 11, 10, 12, tzinfo=timezone.utc), clock.now))
    b = ledger.balance(NS, NS, at=datetime(2026, 11, 10, 12, tzinfo=timezone.utc))
    assert figures(ledger, period_window(b.period_start, b.period_end), NS).counts == {"settled": 2}


def test_accuracy_is_exact_to_the_shown_decimals(ledger: Ledger, clock: FakeClock) -> None:
    budget(ledger, NS, 10**12)
    pairs = [(3, 2), (1, 8000), (15, 16), (7, 7), (5, 0), (45_678, 1_000), (1, 3), (2, 3),
             (1_000_001, 2_000_000), (10_000_000_000_000, 1)]  # x.xxx5 ties, a ratio of 10^13, an estimate of 0
    for i, (actual, estimate) in enumerate(pairs):
        ledger.reserve(req(f"k{i}", estimate))
        ledger.settle(f"k{i}", actual)
    acc = ledger.report(NS, parse_window("2026-11")).accuracy
    assert acc == reference(snapshot(ledger), parse_window("2026-11")).accuracy
    assert (acc.settled, acc.overruns, acc.max_ratio) == (10, 4, "10000000000000.000")
    assert acc.median_ratio == "0.938"  # 9 ratios: the 5th smallest is 0.9375, a tie rounded to even
    assert acc.p90_ratio == "10000000000000.000"
    assert aggregates.format_thousandths(aggregates.bucket_value(aggregates.bucket_of(45_678, 1_000))) == "45.600"
    assert aggregates.format_thousandths(aggregates.bucket_value(aggregates.bucket_of(99_994, 10_000))) == "9.999"
    assert ledger.verify() == []


def test_the_report_reads_no_reservation_rows_for_a_budget_status(ledger: Ledger, clock: FakeClock) -> None:
    """The status refresh's report reads the period's cell, its lines and histogram, and at most
    TOP_JOBS rows through the ranking index, whatever the number of reservations."""
    budget(ledger, NS, 10**12, period="monthly")
    ledger.reserve_many([req(f"k{i}", 1000 + i) for i in range(300)])
    for i in range(0, 300, 2):
        ledger.settle(f"k{i}", 900 + i)
    statements: list[str] = []
    from sqlalchemy import event

    def capture(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(ledger.engine, "before_cursor_execute", capture)
    try:
        b = ledger.balance(NS, NS)
        report = ledger.report(NS, period_window(b.period_start, b.period_end), NS)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", capture)
    assert report.counts == {"settled": 150, "held": 150} and len(report.top_jobs) == TOP_JOBS
    touching_rows = [s for s in statements if "FROM reservations" in s]
    assert len(touching_rows) == 1 and "LIMIT" in touching_rows[0], touching_rows


def test_qgov_ledger_compact(database_url: str) -> None:
    clock = FakeClock(datetime(2020, 3, 5, 12, tzinfo=timezone.utc))
    ledger = Ledger(database_url, clock=clock)
    budget(ledger, NS, 10 * USD, period="monthly")
    ledger.reserve(req("a", USD))
    ledger.settle("a", 600_000)
    ledger.close()
    qgov = str(Path(sys.executable).parent / "qgov")
    out = subprocess.run([qgov, "ledger", "compact", "--before", "2026-12", "--database-url", database_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "compacted 1 finished reservations of periods that ended by 2026-" in out.stdout
    bad = subprocess.run([qgov, "ledger", "compact", "--before", "November", "--database-url", database_url],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "bad period 'November'" in bad.stderr and "Traceback" not in bad.stderr
    report = subprocess.run([qgov, "ledger", "report", "-n", NS, "--period", "2020-03", "-o", "json",
                             "--database-url", database_url], capture_output=True, text=True, timeout=120)
    assert '"settled": 1' in report.stdout and '"mean_ratio": "0.600"' in report.stdout


# ---------------------------------------------------------------------- migration from a populated 0003 ledger


def test_upgrade_from_a_populated_0003_ledger_builds_exact_aggregates_and_downgrades(databases) -> None:
    url = databases.new()
    clock = FakeClock(datetime(2026, 10, 20, 9, 30, tzinfo=timezone.utc))
    start = clock.now
    ledger = Ledger(url, clock=clock)
    month_of_work(ledger, clock, days=25)
    rows = snapshot(ledger)
    windows = calendar_windows(start, clock.now)
    for name in (NS, "daily"):
        b = ledger.balance(NS, name)
        windows.append(period_window(b.period_start, b.period_end))
    with ledger.engine.connect() as conn:
        created = dict(conn.execute(select(Reservation.key, Reservation.created_period)).all())
        entries = conn.execute(text("SELECT budget_id, period_start, SUM(spent_delta), SUM(held_delta) "
                                    "FROM ledger_entries GROUP BY budget_id, period_start ORDER BY 1, 2")).all()
    ledger.close()

    db.downgrade(url, "0003")  # a 0003 ledger, holding the same reservations and entries
    engine = db.make_engine(url)
    assert db.current_revision(engine) == "0003"
    with engine.connect() as conn:
        tables = set(conn.dialect.get_table_names(conn))
        assert not tables & {"report_cells", "report_lines", "report_ratios", "report_top", "compacted_reservations"}
        columns = {c["name"] for c in conn.dialect.get_columns(conn, "reservations")}
        assert "created_period" not in columns and "top_cost" not in columns
        assert conn.execute(text("SELECT COUNT(*) FROM reservations")).scalar_one() == len(rows)
    engine.dispose()

    assert db.upgrade(url) == db.head_revision()
    ledger = Ledger(url, clock=clock)
    assert ledger.verify() == []
    for window in windows:
        assert figures(ledger, window) == reference(rows, window), window
    with ledger.engine.connect() as conn:
        rebuilt = {k: _utc(v) for k, v in conn.execute(select(Reservation.key, Reservation.created_period)).all()}
    assert rebuilt == {k: _utc(v) for k, v in created.items()}  # settings unchanged: the creation period
    # compacted, then downgraded: folded entries keep every period's balance, as adjustments
    assert ledger.compact(clock.now).reservations > 0
    ledger.close()
    db.downgrade(url, "0003")
    engine = db.make_engine(url)
    with engine.connect() as conn:
        after = conn.execute(text("SELECT budget_id, period_start, SUM(spent_delta), SUM(held_delta) "
                                  "FROM ledger_entries GROUP BY budget_id, period_start ORDER BY 1, 2")).all()
    engine.dispose()
    assert after == entries
    assert db.upgrade(url) == db.head_revision()
    ledger = Ledger(url, clock=clock)
    assert ledger.verify() == []
    ledger.close()


# ---------------------------------------------------------------------- any sequence: aggregates == recomputation

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

KEYS = [f"job-{i}" for i in range(14)]
BUDGETS = [NS, "six"]  # monthly with a queue; daily, rolling over at 06:00 UTC
BACKENDS = ["ibm_torino", "fake_manila", "aer"]
SESSIONS = ["", "s1", "s2"]


def make_aggregates_machine(new_database: Any) -> type[RuleBasedStateMachine]:
    class AggregatesMachine(RuleBasedStateMachine):
        """Random reserve / settle / release / late charge / adjust / clock advance / compaction: after
        every step verify() finds the incremental aggregates equal to their recomputation, and the
        reports of the budgets' periods, of today and of this month equal the rows' (those compacted
        as they were last seen)."""

        @initialize(limit=st.integers(min_value=USD, max_value=8 * USD))
        def open(self, limit: int) -> None:
            self.clock = FakeClock(datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc))
            self.ledger = Ledger(new_database(), clock=self.clock)
            budget(self.ledger, NS, limit, period="monthly", enforcement="queue", anchor=JAN1)
            budget(self.ledger, "six", limit, period="daily", anchor=datetime(2026, 1, 1, 6, 0, tzinfo=timezone.utc))
            self.rows: dict[str, Any] = {}
            self.compacted = False
            for i in range(6):  # some history to start from, whatever rules this example enables
                self.ledger.reserve(req(KEYS[i], limit // 8 + i, BUDGETS[i % 2], backend=BACKENDS[i % 3],
                                        session=SESSIONS[i % 3]))
                self.clock.advance(minutes=50)
            self.ledger.settle(KEYS[0], limit // 9)
            self.ledger.settle(KEYS[1], limit // 7)
            self.ledger.release(KEYS[2])
            self.ledger.settle(KEYS[2], 1, ran=True)
            self.ledger.release(KEYS[3])

        def teardown(self) -> None:
            if hasattr(self, "ledger"):
                self.ledger.close()

        @rule(key=st.sampled_from(KEYS), name=st.sampled_from(BUDGETS), amount=st.integers(0, 3 * USD),
              backend=st.sampled_from(BACKENDS), session=st.sampled_from(SESSIONS))
        def reserve(self, key: str, name: str, amount: int, backend: str, session: str) -> None:
            if key in self.rows and self.rows[key].budget != name:
                return  # a key belongs to one budget
            out = self.ledger.reserve(req(key, amount, name, backend=backend, session=session))
            assert out.replayed == (key in self.rows)

        def _keys(self, *states: str) -> list[str]:
            return sorted(k for k, r in self.rows.items() if r.state in states)

        @precondition(lambda self: self._keys("held"))
        @rule(data=st.data(), ratio=st.sampled_from([0, 1, 500, 999, 1000, 1001, 2500, 31_000]))
        def settle(self, data: st.DataObject, ratio: int) -> None:
            key = data.draw(st.sampled_from(self._keys("held")))
            self.ledger.settle(key, self.rows[key].amount * ratio // 1000)

        @precondition(lambda self: self._keys("held", "queued"))
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            self.ledger.release(data.draw(st.sampled_from(self._keys("held", "queued"))))

        @precondition(lambda self: self._keys("released", "queued", "refused"))
        @rule(data=st.data(), actual=st.integers(0, 2 * USD))
        def late_charge(self, data: st.DataObject, actual: int) -> None:
            key = data.draw(st.sampled_from(self._keys("released", "queued", "refused")))
            try:
                self.ledger.settle(key, actual, ran=True)
            except CompactedKey:
                assert actual > 0  # a compacted key takes no late charge; nothing changed

        @rule(name=st.sampled_from(BUDGETS), amount=st.integers(0, USD), n=st.integers(0, 10**6))
        def adjust(self, name: str, amount: int, n: int) -> None:
            self.ledger.adjust(NS, name, amount, key=f"adj-{n}")

        @rule(hours=st.integers(min_value=1, max_value=60))
        def advance(self, hours: int) -> None:
            self.clock.advance(hours=hours)
            self.ledger.admit_queued()

        @rule(hours=st.integers(min_value=0, max_value=40), days_ago=st.integers(min_value=0, max_value=2))
        def compact(self, hours: int, days_ago: int) -> None:
            self.clock.advance(hours=hours)  # (closing periods on the way)
            self.ledger.compact(self.clock.now - timedelta(days=days_ago))
            self.compacted = True

        @invariant()
        def aggregates_equal_their_recomputation_and_the_rows(self) -> None:
            if not hasattr(self, "ledger"):
                return
            self.rows.update(snapshot(self.ledger))  # compacted rows keep their last (final) state
            assert self.ledger.verify() == []
            now = self.clock.now
            for window in (parse_window(now.date().isoformat()), parse_window(f"{now.year}-{now.month:02d}")):
                assert figures(self.ledger, window) == reference(self.rows, window), window
            for name in BUDGETS:  # each budget's period, as its status shows it
                b = self.ledger.balance(NS, name)
                window = period_window(b.period_start, b.period_end)
                assert figures(self.ledger, window, name) == reference(self.rows, window, name), (window, name)
                try:  # the whole namespace over that period: another budget's compacted day may be split
                    assert figures(self.ledger, window) == reference(self.rows, window), window
                except BadPeriod:
                    assert self.compacted
            odd = ReportWindow("odd", now - timedelta(hours=7), now + timedelta(hours=1))
            try:
                assert figures(self.ledger, odd, "six") == reference(self.rows, odd, "six")
            except BadPeriod:
                assert self.compacted  # only a compacted day cannot be split

    return AggregatesMachine


def test_aggregates_equal_a_recomputation_after_any_sequence(databases) -> None:
    run_state_machine_as_test(
        make_aggregates_machine(databases.new),
        settings=settings(max_examples=25, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
