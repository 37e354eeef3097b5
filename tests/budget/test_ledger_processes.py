"""Eight operating-system processes against one budget: the database, not Python, keeps it exact."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec, ReserveRequest

NS = "team-p"
PROCESSES = 8
PER_PROCESS = 60


def _worker(url: str, worker: int, amount: int, start: mp.synchronize.Event, results: mp.Queue) -> None:
    ledger = Ledger(url)
    start.wait()
    admitted = 0
    for i in range(PER_PROCESS):
        out = ledger.reserve(ReserveRequest(f"w{worker}-{i}", NS, NS, amount))
        if out.admitted:
            admitted += amount
            # settle every other admitted job to interleave settlements with reservations
            if i % 2:
                ledger.settle(f"w{worker}-{i}", amount // 2)
                admitted -= amount - amount // 2
    results.put(admitted)
    ledger.close()


def _run(url: str, amount: int) -> int:
    ctx = mp.get_context("spawn")  # fresh interpreters, no shared connections
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, w, amount, start, results)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    totals = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return sum(totals)


@pytest.mark.slow
def test_tight_budget_admits_no_more_than_its_limit_across_processes(database_url: str) -> None:
    limit = 37_000_000  # 37 USD against 480 requests of 1 USD
    ledger = Ledger(database_url)
    ledger.upsert_budget(BudgetSpec(NS, NS, limit))
    committed = _run(database_url, 1_000_000)
    balance = ledger.balance(NS, NS)
    assert balance.spent_micro + balance.held_micro == committed  # every process's view adds up
    assert balance.spent_micro + balance.held_micro <= limit
    # settled halves free funds, so the budget fills up to within one request of the limit
    assert limit - (balance.spent_micro + balance.held_micro) < 1_000_000
    assert ledger.verify() == []
    ledger.close()


@pytest.mark.slow
def test_large_budget_loses_no_update_across_processes(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.upsert_budget(BudgetSpec(NS, NS, 10**15))
    committed = _run(database_url, 1_000)
    balance = ledger.balance(NS, NS)
    n = PROCESSES * PER_PROCESS
    settled = PROCESSES * (PER_PROCESS // 2)
    assert balance.held_micro == (n - settled) * 1_000
    assert balance.spent_micro == settled * 500
    assert committed == balance.spent_micro + balance.held_micro
    assert ledger.verify() == []
    ledger.close()
