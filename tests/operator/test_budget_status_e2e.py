"""Budgets cost nothing while idle: no timer per budget. A status is written when something it
shows changed, and a period's end wakes its budget (the queue is admitted, the new period shown)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from governance.budget.types import BudgetSpec

from .conftest import NS, Env


@pytest.mark.slow
def test_an_idle_budget_is_not_written_again(env: Env) -> None:
    env.budget("5.00")
    env.job("one", shots=100)
    env.wait_terminal(["one"])
    env.wait(lambda: env.get("qiskitbudgets", NS).get("status", {}).get("jobs", {}).get("succeeded") == 1,
             "the budget counts the job")
    time.sleep(2)  # the last marks are written (at most one write a second)
    before = env.get("qiskitbudgets", NS)
    time.sleep(6)
    after = env.get("qiskitbudgets", NS)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"]["spent"] == "0.30" and after["status"]["remaining"] == "4.70"


@pytest.mark.slow
@pytest.mark.operator_env(QGOV_POD_SWEEP_SECONDS="3600")  # nothing but the period's end may admit the queue
def test_a_queued_job_is_admitted_when_the_period_ends_without_polling(env: Env) -> None:
    env.budget("0.30", period="daily", enforcement="queue")
    # the ledger's period for this budget ends in 12 s (a daily period anchored accordingly)
    ends = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=12)
    ledger = env.ledger()
    ledger.upsert_budget(BudgetSpec(NS, NS, 300_000, period="daily", enforcement="queue",
                                    anchor=ends - timedelta(days=1)))
    env.job("first", shots=100)
    env.wait_terminal(["first"])
    env.job("second", shots=100)
    env.wait(lambda: env.status("second").get("phase") == "Queued", "second queued (the period is spent)")
    env.wait(lambda: env.get("qiskitbudgets", NS)["status"].get("periodEnd") == ends.isoformat(),
             "the budget shows the period's end")
    assert datetime.now(timezone.utc) < ends, "the test was too slow to see the job queued before the rollover"
    second = env.wait_terminal(["second"], timeout=60)["second"]
    assert second["phase"] == "Succeeded" and second["actualCost"] == "0.30"
    assert datetime.now(timezone.utc) >= ends
    status = env.wait(lambda: (lambda s: s if s.get("periodStart") == ends.isoformat() and s.get("spent") == "0.30"
                               else None)(env.get("qiskitbudgets", NS)["status"]), "the new period's figures")
    assert status["remaining"] == "0.00"
    assert ledger.verify() == []
    ledger.close()
