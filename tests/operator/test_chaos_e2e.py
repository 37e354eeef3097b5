"""Chaos end to end, as a platform team runs qgov: the ledger on PostgreSQL, a second operator
process during a rolling update, SIGKILLs at random points, and the database stopped for 20 s.

What a user must be able to rely on through all of it: a hard budget is never overspent, every
job is charged exactly once and its status says what the ledger holds, every job ends without an
operator restart, and while the ledger cannot be reached the job and the budget say so.

The scenarios are qgov_dev.chaos's plain functions, which return what they counted (`Findings`);
the tests assert on those counts, and bench/chaos.py runs the same functions at larger sizes.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from qgov_dev.chaos import PRICE_MICRO, Findings, budget_obj, outage, rolling_update, two_operators
from qgov_dev.harness import ChaosEnv, chaos_environment, condition


def assert_charged_once(found: Findings) -> None:
    """What every scenario must leave: each job final, charged once, as its status says; no pod for
    work the ledger does not pay for; no overspend; ledger and audit clean."""
    assert found.stranded == [], found.summary()
    assert found.released_live == [], found.summary()
    assert found.unreserved_pods == [], found.summary()
    assert found.status_mismatch == [], found.summary()
    assert found.holding == [] and found.held_micro == 0, found.summary()
    assert found.double_charged == [] and found.extra_entries == [], found.summary()
    assert found.spent_micro <= found.limit_micro and found.status_charged_micro <= found.limit_micro, found.summary()
    assert found.with_pods <= found.pays_for, found.summary()
    assert found.verify == [], found.summary()
    assert found.audit == [], found.summary()


@pytest.mark.slow
def test_rolling_update_never_releases_a_live_reservation_nor_overspends(tmp_path: Path) -> None:
    """A second operator started again and again while the first admits 20 jobs/s into a budget that
    pays for 600 (of 760 jobs), in a cluster with 3,000 finished jobs. Executor pods by the stand-in kubelet:
    hundreds of real executors do not fit in CI's time on two cores."""
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    with chaos_environment(tmp_path / "chaos", pods="stand-in", start_operator=False) as env:
        found = rolling_update(env, pays_for=600, rate=20.0, total=760, existing=3000, seed=seed)
    print(found.summary())
    assert found.notes["second_operator_starts"] >= 3, found.summary()
    assert_charged_once(found)
    # the budget paid for 600 and the stream asked for more: exactly 600 ran, each charged 0.30
    assert found.with_pods == found.pays_for == found.phases.get("Succeeded"), found.summary()
    assert found.spent_micro == found.limit_micro, found.summary()
    assert all(pods == [f"{n}-run-1"] for n, pods in found.pods_per_job.items()), found.summary()


@pytest.mark.slow
def test_two_operators_with_kill_9_charge_every_job_once(pg_env: ChaosEnv) -> None:
    """Two operators over a burst of 12 real executor jobs into a queue budget, SIGKILLs at random
    points (seeded; the seed is printed), one right between the ledger admitting queued work and
    the job starting."""
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    found = two_operators(pg_env, burst=12, first_room=4, seed=seed, kills=4)
    print(found.summary())
    assert found.notes["admitted_in_window"] > 0, found.summary()  # the crash window was really hit
    assert_charged_once(found)
    assert found.phases == {"Succeeded": 12}, found.summary()  # the limit was raised to pay for all
    assert found.spent_micro == 12 * PRICE_MICRO, found.summary()
    assert all(pods == [f"{n}-run-1"] for n, pods in found.pods_per_job.items()), found.summary()


@pytest.mark.slow
@pytest.mark.parametrize("mode,operators", [("fast", 1), ("immediate", 2)], ids=["fast", "immediate-2-operators"])
def test_postgresql_stopped_20s_mid_burst_every_job_ends_without_a_restart(pg_env: ChaosEnv, mode: str,
                                                                          operators: int) -> None:
    """PostgreSQL stopped for 20 s while executor pods run (they finish during the outage) and new
    jobs arrive; with `-m immediate` a second operator runs side by side. No operator restart."""
    found, seen = outage(pg_env, mode=mode, pays_for=7, burst=6, during=2, outage_s=20, final_timeout=60,
                         operators=operators)
    print(found.summary())
    print(seen)
    # during the outage the user is told: the waiting jobs and the budget say the ledger is down
    assert seen.jobs_unavailable, f"no job showed LedgerUnavailable=True during the outage\n{found.summary()}"
    assert seen.warning_events, f"no Warning Event LedgerUnavailable during the outage\n{found.summary()}"
    assert seen.budget_not_ready, (f"the budget never showed Ready=False/LedgerUnavailable during the outage "
                                   f"(seen: {seen.budget_ready_reasons})")
    assert not seen.silent_new_jobs, f"jobs created during the outage had no status: {seen.silent_new_jobs}"
    # after it, with no operator restart: everything ends, within the minute, and is charged once;
    # the budget says it is Ready again within seconds
    assert found.recovery_s is not None, f"not recovered 60 s after the database returned\n{found.summary()}"
    assert found.notes["seconds_after_restart"]["budget Ready"] <= 15, found.summary()
    assert_charged_once(found)
    assert found.phases.get("Succeeded", 0) == found.with_pods == found.pays_for, found.summary()
    assert found.spent_micro == found.limit_micro, found.summary()
    for job in pg_env.jobs():  # the condition cleared on every job that had it
        c = condition(job, "LedgerUnavailable")
        if job["metadata"]["name"] in seen.jobs_unavailable:
            assert c and c["status"] == "False" and c["reason"] == "LedgerAvailable", (job["metadata"]["name"], c)
    ready = condition(budget_obj(pg_env), "Ready")
    assert ready and ready["status"] == "True" and ready["reason"] == "InLedger", ready
    for op in pg_env.operators or []:  # the same processes throughout: started once, never restarted
        assert op.proc is not None and op.proc.poll() is None, op.log.name
        assert op.log.read_text(errors="replace").count("qgov operator started") == 1, op.log.name
