"""Ledger benchmark: reservations/s and latency against ONE budget (the hot row).

    python bench/ledger.py [--requests 4000] [--workers 1,8,32] [--databases sqlite,postgresql]
                           [--pgbench SECONDS] [--trees PATH,PATH,...]

Workers are threads of one operator process, as kopf's handlers are. Two modes:
  direct   each reservation is its own transaction (lock, decide, commit)
  batched  reservations go through ReservationBatcher (group commit: one lock and one
           commit per batch of pending requests)
PostgreSQL is a throwaway server started here with default durability (fsync on). The
budget holds 80% of the run's requests, so the last fifth is refused; overspend (committed
beyond the limit) is counted and must be 0.

On PostgreSQL the figure tracked is the ledger's rate as a share of pgbench's TPC-B (8 clients,
scale 8, default durability) on the same server in the same run: the machine's speed (and what
else runs on it) cancels out. pgbench runs `--pgbench` seconds (0: not at all) before the first
ledger run and after each tree's runs; each ledger row is divided by the mean of the pgbench runs
just before and after it.

`--trees` measures other checkouts of qgov (say a git worktree of an older commit) beside this
one, on the same server, in the order given (`--trees /work/wt/old,.,/work/wt/old` runs old, new,
old): each tree's ledger runs in a process of its own, importing that tree's `governance`, on a
fresh database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
AMOUNT = 1_000  # 0.001 USD per reservation
PGBENCH_CLIENTS, PGBENCH_SCALE = 8, 8


def run(url: str, workers: int, mode: str, requests: int, tag: str) -> dict[str, Any]:
    """One run, in this process, with the `governance` on sys.path (this tree's or --tree's)."""
    from governance.budget import db
    from governance.budget.batcher import ReservationBatcher
    from governance.budget.ledger import Ledger
    from governance.budget.types import BudgetSpec, ReserveRequest

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


def child(tree: str, url: str, workers: list[int], modes: list[str], requests: int) -> None:
    """--child: every run of one tree on one database, one JSON line each on stdout."""
    sys.path.insert(0, tree)
    from governance.budget import db

    db.upgrade(url)
    for mode in modes:
        for n in workers:
            result = run(url, n, mode, requests, f"{mode}-{n}")
            print(json.dumps(dict(mode=mode, workers=n, **result)), flush=True)


def run_tree(tree: str, url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tree, "--url", url, "--workers", args.workers,
           "--modes", args.modes, "--requests", str(args.requests)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def pgbench(server: Any, seconds: int, initialise: bool = False) -> float:
    """TPC-B by pgbench (PGBENCH_CLIENTS clients, scale PGBENCH_SCALE) on `server`; its tps."""
    base = [str(server.bindir / "pgbench"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
    if initialise:
        subprocess.run(base + ["-i", "-q", "-s", str(PGBENCH_SCALE), "pgbench"], check=True, capture_output=True)
        return 0.0
    out = subprocess.run(base + ["-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(seconds), "pgbench"],
                         check=True, capture_output=True, text=True).stdout
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if found is None:
        raise RuntimeError(f"no tps in pgbench's output:\n{out}")
    return float(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000, help="reservations per run (a multiple of 32)")
    ap.add_argument("--workers", default="1,8,32")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--modes", default="direct,batched")
    ap.add_argument("--pgbench", type=int, default=10, metavar="SECONDS",
                    help="pgbench TPC-B run length on PostgreSQL (0: no pgbench)")
    ap.add_argument("--trees", default=str(HERE), help="qgov checkouts to measure, in this order")
    ap.add_argument("--child", metavar="TREE", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    workers = [int(x) for x in args.workers.split(",")]
    modes = args.modes.split(",")
    if args.child:
        child(args.child, args.url, workers, modes, args.requests)
        return
    from qgov_dev.testing import pgserver

    trees = [str(Path(t).resolve()) for t in args.trees.split(",")]
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"{args.requests} reservations per run, one budget, {AMOUNT / 1e6:g} USD per reservation")
    rows: list[tuple[str, str, dict[str, Any], float | None]] = []
    tps_runs: list[float] = []
    for database in args.databases.split(","):
        server = None
        try:
            if database == "postgresql":
                server = pgserver.start(fsync=True)
                if args.pgbench:
                    pgserver.create_database(server, "pgbench")
                    pgbench(server, 0, initialise=True)
                    before = pgbench(server, args.pgbench)
                    tps_runs.append(before)
                    print(f"  pgbench TPC-B: {before:8.0f} tps", file=sys.stderr)
            for i, tree in enumerate(trees):
                if server:
                    url = pgserver.create_database(server, f"bench{i}")
                else:
                    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='qgov-bench-')) / 'ledger.db'}"
                results = run_tree(tree, url, args)
                for r in results:
                    print(f"  {database:10} {Path(tree).name:12} {r['mode']:7} {r['workers']:3} workers: "
                          f"{r['per_s']:8.0f}/s", file=sys.stderr)
                tps = None
                if server and args.pgbench:
                    after = pgbench(server, args.pgbench)
                    tps_runs.append(after)
                    print(f"  pgbench TPC-B: {after:8.0f} tps", file=sys.stderr)
                    tps, before = (before + after) / 2, after
                rows.extend((database, tree, r, tps) for r in results)
        finally:
            if server:
                server.stop()
    print()
    if tps_runs:
        print(f"pgbench TPC-B ({PGBENCH_CLIENTS} clients, scale {PGBENCH_SCALE}, {args.pgbench} s each), "
              f"in order: {', '.join(f'{t:.0f}' for t in tps_runs)} tps")
    print(f"{'database':10}  {'tree':14}  {'mode':7}  {'workers':>7}  {'reserv./s':>9}  {'of pgbench':>10}  "
          f"{'p50 ms':>7}  {'p99 ms':>7}  {'admitted':>8}  {'overspend':>9}  {'lost':>4}  consistent")
    for database, tree, r, tps in rows:
        ratio = f"{r['per_s'] / tps:10.0%}" if tps else f"{'':10}"
        print(f"{database:10}  {Path(tree).name[:14]:14}  {r['mode']:7}  {r['workers']:7d}  {r['per_s']:9.0f}  {ratio}  "
              f"{r['p50_ms']:7.2f}  {r['p99_ms']:7.2f}  {r['admitted']:8d}  {r['overspend']:9d}  {r['lost']:4d}  "
              f"{'yes' if r['consistent'] else 'NO'}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
