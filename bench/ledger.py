"""Ledger benchmark: reservations/s and latency against ONE budget (the hot row).

    python bench/ledger.py [--requests 4000] [--workers 1,8,32] [--databases sqlite,postgresql]

Workers are threads of one operator process, as kopf's handlers are. Two modes:
  direct   each reservation is its own transaction (lock, decide, commit)
  batched  reservations go through ReservationBatcher (group commit: one lock and one
           commit per batch of pending requests)
PostgreSQL is a throwaway server started here with default durability (fsync on). The
budget holds 80% of the run's requests, so the last fifth is refused; overspend (committed
beyond the limit) is counted and must be 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from governance.budget import db  # noqa: E402
from governance.budget.batcher import ReservationBatcher  # noqa: E402
from governance.budget.ledger import Ledger  # noqa: E402
from governance.budget.types import BudgetSpec, ReserveRequest  # noqa: E402
from qgov_dev.testing import pgserver  # noqa: E402

AMOUNT = 1_000  # 0.001 USD per reservation


def run(url: str, workers: int, mode: str, requests: int, tag: str) -> dict[str, float]:
    limit = requests * AMOUNT * 8 // 10  # the last fifth of every run is refused: the limit is really tested
    ledger = Ledger(db.make_engine(url, pool_size=max(workers, 5)))
    ledger.upsert_budget(BudgetSpec("bench", tag, limit))
    batcher = ReservationBatcher(ledger) if mode == "batched" else None
    reserve = batcher.reserve if batcher else ledger.reserve
    latencies: list[list[float]] = [[] for _ in range(workers)]
    admitted = [0] * workers
    start_gate = threading.Barrier(workers + 1)

    def worker(w: int) -> None:
        start_gate.wait()
        for i in range(requests // workers):
            t0 = time.perf_counter()
            out = reserve(ReserveRequest(f"{tag}-{w}-{i}", "bench", tag, AMOUNT))
            latencies[w].append(time.perf_counter() - t0)
            admitted[w] += out.admitted

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    t_start = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    if batcher:
        batcher.close()
    all_lat = sorted(x for lat in latencies for x in lat)
    balance = ledger.balance("bench", tag)
    committed = balance.spent_micro + balance.held_micro
    result = {
        "reservations": len(all_lat),
        "per_s": len(all_lat) / elapsed,
        "p50_ms": statistics.median(all_lat) * 1000,
        "p99_ms": all_lat[min(len(all_lat) - 1, int(len(all_lat) * 0.99))] * 1000,
        "admitted": sum(admitted),
        "overspend": max(0, committed - limit),
        "lost": abs(committed - sum(admitted) * AMOUNT),  # admitted by callers but not held, or vice versa
        "consistent": not ledger.verify(),
    }
    ledger.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000, help="reservations per run (a multiple of 32)")
    ap.add_argument("--workers", default="1,8,32")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--modes", default="direct,batched")
    args = ap.parse_args()
    workers = [int(x) for x in args.workers.split(",")]
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"{args.requests} reservations per run, one budget, {AMOUNT / 1e6:g} USD per reservation")
    rows = []
    server = None
    try:
        for database in args.databases.split(","):
            if database == "sqlite":
                url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='qgov-bench-')) / 'ledger.db'}"
            else:
                server = pgserver.start(fsync=True)
                url = pgserver.create_database(server, "bench")
            db.upgrade(url)
            for mode in args.modes.split(","):
                for n in workers:
                    tag = f"{mode}-{n}"
                    r = run(url, n, mode, args.requests, tag)
                    rows.append((database, mode, n, r))
                    print(f"  {database:10} {mode:7} {n:3} workers: {r['per_s']:8.0f}/s", file=sys.stderr)
    finally:
        if server:
            server.stop()
    print()
    print(f"{'database':10}  {'mode':7}  {'workers':>7}  {'reserv./s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  "
          f"{'admitted':>8}  {'overspend':>9}  {'lost':>4}  consistent")
    for database, mode, n, r in rows:
        print(f"{database:10}  {mode:7}  {n:7d}  {r['per_s']:9.0f}  {r['p50_ms']:7.2f}  {r['p99_ms']:7.2f}  "
              f"{r['admitted']:8d}  {r['overspend']:9d}  {r['lost']:4d}  {'yes' if r['consistent'] else 'NO'}")


if __name__ == "__main__":
    main()
