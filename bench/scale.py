"""History benchmark: what a budget's status refresh and the month's cost report cost as the
number of settled reservations in the period grows.

    python bench/scale.py [--sizes 10000,100000,1000000] [--databases sqlite,postgresql]
                          [--repeat 21] [--explain]

For each database and size, a fresh ledger is seeded quickly with bulk SQL as a schema-0003
ledger (one monthly budget, N settled reservations spread over 2026-11-01 .. 2026-11-24, their
reserve and settle entries, the period's balances), then `qgov db upgrade` brings it to head:
migration 0004 builds the report aggregates exactly as it does for any existing ledger, and
`verify()` must find nothing wrong. Then, with the ledger's clock at 2026-11-24 12:00 UTC:

  status refresh  what the operator reads for a budget's status (handlers/budgets.py's
                  Budgets.budget_figures): ledger.status_reads(ns, name), the balance, the report of its
                  period and the committed amount per day (the burn rate), on one connection
  report          `qgov ledger report -n bench --period 2026-11`, in process (report + render)
  week report     the same for --period 2026-W47, a week inside the monthly period (its day cells)

each timed as the median of --repeat runs after two warm-ups (fewer when one run takes seconds);
`load` is the 1-minute load average when they were (the machine may be shared).
PostgreSQL is a throwaway local server (fsync off: seeding speed only; reads do not care).
Both databases are ANALYZEd after seeding, as autovacuum or a periodic ANALYZE would have them.
--explain prints the plan of every statement the two operations run.

The script also runs against the code before the aggregates (the parent of the commit that
added them): copy it into that tree (`git archive`) and run it there; it then seeds the same
ledger and skips what does not exist yet.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from governance.budget import db  # noqa: E402
from governance.budget.ledger import Ledger  # noqa: E402
from governance.budget.report import parse_window, period_window, render  # noqa: E402
from qgov_dev.testing import pgserver  # noqa: E402

NS = NAME = "bench"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
PERIOD_START = datetime(2026, 11, 1, tzinfo=timezone.utc)
PERIOD_END = datetime(2026, 12, 1, tzinfo=timezone.utc)
SPAN_SECONDS = 23 * 86_400 + 12 * 3_600  # reservations are created from Nov 1 to Nov 24 12:00


def _rows_sql(dialect: str) -> str:
    """N settled reservations: 5 backends, 40 sessions (and none), estimates of 0.001 to 2 USD,
    actual / estimate spread over 0.3 .. 1.2 with an overrun every 50th job (1.0 .. 1.9)."""
    if dialect == "sqlite":
        series = ("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :n - 1) "
                  "SELECT i, 1000 + (i * 7919) % 2000000 AS amount, "
                  "CASE WHEN i % 50 = 0 THEN 1000 + (i % 7) * 150 ELSE 300 + (i * 104729) % 901 END AS f, "
                  "strftime('%Y-%m-%d %H:%M:%S', '2026-11-01', '+' || (i * :span / :n) || ' seconds') "
                  "|| '.000000' AS created FROM s")
        cat, greatest, period = "||", "max", "'2026-11-01 00:00:00.000000'"
    else:
        series = ("SELECT i, 1000 + (i * 7919) % 2000000 AS amount, "
                  "CASE WHEN i % 50 = 0 THEN 1000 + (i % 7) * 150 ELSE 300 + (i * 104729) % 901 END AS f, "
                  "timestamptz '2026-11-01 00:00:00+00' + (i * :span / :n) * interval '1 second' AS created "
                  "FROM generate_series(0::bigint, :n - 1) AS i")
        cat, greatest, period = "||", "greatest", "timestamptz '2026-11-01 00:00:00+00'"
    return (
        "INSERT INTO reservations (key, budget_id, job, backend, session, amount_micro, actual_micro, "
        "overrun_micro, state, period_start, queue_seq, message, created_at, admitted_at, finished_at) "
        f"SELECT 'k' {cat} i, :budget_id, 'bench/job-' {cat} i, 'ibm_backend_' {cat} (i % 5), "
        f"CASE WHEN i % 4 = 0 THEN '' ELSE 'session-' {cat} (i % 40) END, amount, amount * f / 1000, "
        f"{greatest}(0, amount * f / 1000 - amount), 'settled', {period}, NULL, '', created, created, created "
        f"FROM ({series}) AS g"
    )


_ENTRIES_SQL = (
    "INSERT INTO ledger_entries (budget_id, period_start, reservation_key, kind, held_delta, spent_delta, note, "
    "created_at) SELECT budget_id, period_start, key, 'reserve', amount_micro, 0, '', created_at FROM reservations "
    "UNION ALL SELECT budget_id, period_start, key, 'settle', -amount_micro, actual_micro, '', finished_at "
    "FROM reservations"
)


def seed(url: str, n: int) -> None:
    """A schema-0003 ledger with one monthly budget and n settled reservations in November."""
    db.upgrade(url, "0003")
    engine = db.make_engine(url)
    meta = sa.MetaData()
    with engine.begin() as conn:
        budgets = sa.Table("budgets", meta, autoload_with=conn)
        periods = sa.Table("budget_periods", meta, autoload_with=conn)
        budget_id = conn.execute(budgets.insert().values(
            namespace=NS, name=NAME, limit_micro=10**15, unit="USD", period="monthly", anchor=PERIOD_START,
            enforcement="hard", warn_at="", queue_seq=0, queued_count=0, created_at=PERIOD_START,
            updated_at=PERIOD_START, retired_at=None).returning(budgets.c.id)).scalar_one()
        conn.execute(sa.text(_rows_sql(engine.dialect.name)), dict(n=n, span=SPAN_SECONDS, budget_id=budget_id))
        conn.execute(sa.text(_ENTRIES_SQL))
        spent, overrun = conn.execute(sa.text(
            "SELECT SUM(actual_micro), SUM(overrun_micro) FROM reservations")).one()
        conn.execute(periods.insert().values(
            budget_id=budget_id, period_start=PERIOD_START, period_end=PERIOD_END, limit_micro=10**15,
            spent_micro=int(spent), held_micro=0, overrun_micro=int(overrun), warned_pct=0))
    engine.dispose()


def analyze(url: str) -> None:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    engine.dispose()


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median milliseconds of `repeat` runs after two warm-ups (at least 3 runs; stops after ~30 s)."""
    fn()
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeat and (len(times) < 3 or time.perf_counter() - started < 30):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def status_refresh(ledger: Ledger) -> Any:
    if not hasattr(ledger, "status_reads"):  # the code before the one-connection read
        balance = ledger.balance(NS, NAME)
        ledger.daily_spend(NS, NAME)  # the burn rate's input, read with every status
        return ledger.report(NS, period_window(balance.period_start, balance.period_end), NAME)
    return ledger.status_reads(NS, NAME).report


def month_report(ledger: Ledger) -> str:
    return render(ledger.report(NS, parse_window("2026-11")), "table")


def week_report(ledger: Ledger) -> str:
    """A week inside the monthly period: read from day cells, and the top jobs index by time."""
    return render(ledger.report(NS, parse_window("2026-W47")), "table")


def explain(ledger: Ledger, what: str, fn: Callable[[], Any]) -> None:
    """Print the plan of every statement `fn` runs."""
    statements: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("EXPLAIN", "BEGIN", "SELECT 1")):
            statements.append((statement, params))

    sa.event.listen(ledger.engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        sa.event.remove(ledger.engine, "before_cursor_execute", capture)
    sqlite = ledger.engine.dialect.name == "sqlite"
    print(f"\n--- {ledger.engine.dialect.name}: {what}: {len(statements)} statements")
    with ledger.engine.connect() as conn:
        for statement, params in statements:
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
            plan = conn.exec_driver_sql(prefix + statement, params).all()
            print("  " + " ".join(statement.split())[:200])
            for row in plan:
                print("      " + (row[-1] if sqlite else row[0]))


def measure(url: str, n: int, repeat: int, show_plans: bool, compact: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    seed(url, n)
    seeded = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.upgrade(url)  # at head: migration 0004 builds the aggregates of this existing ledger
    migrated = time.perf_counter() - t0
    analyze(url)
    ledger = Ledger(url, clock=lambda: NOW)
    t0 = time.perf_counter()
    problems = ledger.verify()
    verified = time.perf_counter() - t0
    if problems:
        raise SystemExit(f"verify() found {len(problems)} problems, e.g. {problems[:3]}")
    report = status_refresh(ledger)
    assert report.accuracy.settled == n and report.counts == {"settled": n}, report.counts
    if show_plans:
        explain(ledger, f"status refresh, {n:,} reservations", lambda: status_refresh(ledger))
        explain(ledger, f"month report, {n:,} reservations", lambda: month_report(ledger))
        explain(ledger, f"week report, {n:,} reservations", lambda: week_report(ledger))
    status_ms = timed(lambda: status_refresh(ledger), repeat)
    report_ms = timed(lambda: month_report(ledger), repeat)
    week_ms = timed(lambda: week_report(ledger), repeat)
    result = dict(status_ms=status_ms, report_ms=report_ms, week_ms=week_ms, seeded=seeded, migrated=migrated,
                  verified=verified, load=os.getloadavg()[0])
    if compact:  # December: November is closed; compact it, and every figure must stay the same
        before = (month_report(ledger), week_report(ledger), status_refresh(ledger))
        december = Ledger(url, clock=lambda: datetime(2026, 12, 2, tzinfo=timezone.utc))
        t0 = time.perf_counter()
        done = december.compact(PERIOD_END)
        result["compact_s"] = time.perf_counter() - t0
        assert done.reservations == n, done
        after = (month_report(ledger), week_report(ledger), status_refresh(ledger))
        assert after == before, "a report changed with compaction"
        problems = december.verify()
        if problems:
            raise SystemExit(f"verify() after compaction found {len(problems)} problems, e.g. {problems[:3]}")
        result["compacted_report_ms"] = timed(lambda: month_report(ledger), repeat)
        december.close()
    ledger.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="settled reservations in the period")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--repeat", type=int, default=21, help="timed runs per figure (the median is shown)")
    ap.add_argument("--explain", action="store_true", help="print the plan of every statement timed")
    ap.add_argument("--compact", action="store_true",
                    help="then compact November (clock in December): time it, check every report is unchanged "
                         "and verify() clean, time the month report again")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {os.cpu_count()} cores, {mem:.0f} GB, {platform.machine()}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sa.__version__}; schema head {db.head_revision()}")
    rows = []
    server = None
    try:
        for database in args.databases.split(","):
            if database == "postgresql":
                server = pgserver.start(fsync=False)
            for n in sizes:
                if database == "sqlite":
                    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='qgov-scale-')) / 'ledger.db'}"
                else:
                    assert server is not None
                    url = pgserver.create_database(server, f"scale_{n}")
                r = measure(url, n, args.repeat, args.explain, args.compact)
                rows.append((database, n, r))
                print(f"  {database:10} {n:>9,}: seeded {r['seeded']:.1f} s, upgraded {r['migrated']:.1f} s, "
                      f"verified {r['verified']:.1f} s; status {r['status_ms']:.2f} ms, report {r['report_ms']:.2f} ms"
                      + (f"; compacted in {r['compact_s']:.1f} s, then report {r['compacted_report_ms']:.2f} ms"
                         if "compact_s" in r else ""),
                      file=sys.stderr, flush=True)
                if database == "sqlite":
                    shutil.rmtree(Path(url.removeprefix("sqlite:///")).parent)
    finally:
        if server:
            server.stop()
    print()
    print(f"{'database':10}  {'settled in period':>17}  {'status refresh ms':>17}  {'report ms':>9}  "
          f"{'week report ms':>14}  {'seed s':>6}  {'db upgrade s':>12}  {'verify s':>8}  {'load':>4}")
    for database, n, r in rows:
        print(f"{database:10}  {n:>17,}  {r['status_ms']:>17.2f}  {r['report_ms']:>9.2f}  {r['week_ms']:>14.2f}  "
              f"{r['seeded']:>6.1f}  {r['migrated']:>12.1f}  {r['verified']:>8.1f}  {r['load']:>4.1f}")


if __name__ == "__main__":
    main()
