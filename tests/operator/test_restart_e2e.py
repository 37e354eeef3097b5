"""The operator killed with SIGKILL mid-flight and restarted: ledger and cluster agree afterwards."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select, update

from governance.budget.models import JobAttempt, LedgerEntry, Reservation
from governance.handlers.startup import LIST_CHUNK
from governance.handlers.kube import unless_gone
from governance.jobs.ownpod import CLAIM_ANNOTATION, claim_record

from .conftest import NS, TERMINAL, Env


def test_sigkill_mid_flight_then_restart_charges_nothing_twice(env: Env) -> None:
    env.budget("3.00")
    names = [f"job-{i}" for i in range(8)]
    for name in names:
        env.job(name, shots=20_000)
    # kill the operator while work is in flight: some admitted, not all finished
    env.wait(lambda: sum(env.status(n).get("phase") in ("Admitted", "Running") for n in names) >= 3, "work in flight")
    env.operator.kill()
    # while it is down: pods finish, a job whose pod finished is deleted, a new job arrives
    env.wait(lambda: env.core.read_namespaced_pod("job-0-run-1", NS).status.phase == "Succeeded", "a pod to finish")
    env.custom.delete_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitjobs", "job-0")
    env.job("while-down", shots=100)
    time.sleep(4)
    env.operator.start()
    survivors = names[1:] + ["while-down"]
    statuses = env.wait_terminal(survivors, timeout=240)
    assert all(s["phase"] == "Succeeded" for s in statuses.values()), statuses
    env.wait(lambda: not any(j["metadata"]["name"] == "job-0" for j in env.jobs()), "deleted job finalized")

    ledger = env.ledger()
    assert ledger.verify() == []
    assert ledger.open_reservations() == []  # nothing held for a job that is gone or done
    balance = ledger.balance(NS, NS)
    charged = sum(int(s["usedMicro"]) for s in statuses.values())
    job0 = ledger.reservation(next(k for k in _keys(ledger) if ledger.reservation(k).job == f"{NS}/job-0"))
    assert balance.held_micro == 0
    assert job0.state == "settled" and job0.actual_micro == 300_000  # it ran, so deleting it still charges
    assert balance.spent_micro == charged + job0.actual_micro
    assert charged == 8 * 300_000
    with ledger.engine.connect() as conn:  # every reservation reserved once and settled at most once
        rows = conn.execute(select(LedgerEntry.reservation_key, LedgerEntry.kind, func.count())
                            .group_by(LedgerEntry.reservation_key, LedgerEntry.kind)).all()
    assert rows and all(n == 1 for _, _, n in rows), rows
    ledger.close()
    # one pod per job: replays created nothing twice
    pods = [p.metadata.name for p in env.core.list_namespaced_pod(NS).items]
    assert sorted(pods) == sorted(f"{n}-run-1" for n in survivors)
    assert all(s.get("phase") in TERMINAL for s in statuses.values())


def _keys(ledger) -> list[str]:
    with ledger.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(Reservation.key))]


def test_a_queued_job_the_ledger_admitted_while_the_operator_was_down_runs_after_restart(env: Env) -> None:
    """The crash window between the ledger admitting queued work and the operator starting it."""
    from governance.budget.types import BudgetSpec

    env.budget("0.30", enforcement="queue")
    env.job("first", shots=100)
    env.wait(lambda: env.status("first").get("phase"), "first decided")
    env.job("waits", shots=100)
    env.wait(lambda: env.status("waits").get("phase") == "Queued", "waits queued")
    env.wait_terminal(["first"])
    env.operator.kill()
    ledger = env.ledger()  # what the dead operator's last transaction did: funds freed, the queue admitted
    _, changes = ledger.upsert_budget(BudgetSpec(NS, NS, 600_000, period="monthly", enforcement="queue"))
    assert [c.key for c in changes] == [env.get("qiskitjobs", "waits")["metadata"]["uid"]]
    assert env.status("waits")["phase"] == "Queued"
    env.operator.start()
    status = env.wait_terminal(["waits"])["waits"]
    assert status["phase"] == "Succeeded" and status["actualCost"] == "0.30"
    assert ledger.verify() == [] and ledger.open_reservations() == []
    ledger.close()


def test_after_a_restart_the_operator_knows_the_finished_jobs_of_a_listing_of_many_pages(env: Env) -> None:
    """The initial listing comes in pages, and finished jobs are held slimmed while it lasts
    (startup.LIST_CHUNK, rawevents.py): every one of them is still counted and expired."""
    env.budget("5.00")
    env.operator.kill()
    count = LIST_CHUNK + 10  # one page and a part of another
    finished = {"phase": "Succeeded", "budget": NS, "completionTime": "2026-11-01T00:00:00Z",
                "message": "succeeded on attempt 1"}
    for i in range(count):
        ttl = 1 if i == 0 else 365 * 86_400  # done-0 expired long ago; the others are kept
        env.job(f"done-{i:03d}", shots=100, ttlSecondsAfterFinished=ttl)
        env.custom.patch_namespaced_custom_object_status("qgov.dev", "v1alpha1", NS, "qiskitjobs", f"done-{i:03d}",
                                                         {"status": finished})
    env.operator.start()
    env.wait(lambda: not any(j["metadata"]["name"] == "done-000" for j in env.jobs()), "the expired job deleted")
    status = env.wait(lambda: (lambda s: s if (s.get("jobs") or {}).get("succeeded") == count - 1 else None)(
        env.get("qiskitbudgets", NS).get("status") or {}), "the budget to count every other finished job", timeout=60)
    assert status["jobs"] == {"admitted": 0, "refused": 0, "queued": 0, "succeeded": count - 1, "failed": 0}
    assert len(env.jobs()) == count - 1



@pytest.mark.parametrize("then", ["deleted", "kept"])
def test_a_pod_created_by_an_operator_that_died_before_recording_it_is_charged_once(env: Env, then: str) -> None:
    """The crash window between an attempt's pod create and the ledger recording its UID: the
    ledger holds the operator's claim, the pod carries the claim's nonce. After a restart the pod is
    the attempt's: its work is charged (the job deleted meanwhile, or kept), and it is not replaced."""
    env.budget("3.00")
    env.job("crash", shots=100)
    pod = env.wait(lambda: _pod("crash-run-1", env), "the attempt's pod")
    env.operator.kill()  # seconds before the pod can finish: its attempt is not counted yet
    uid = env.get("qiskitjobs", "crash")["metadata"]["uid"]
    ledger = env.ledger()
    assert not ledger.attempt_totals(uid).counted(1)
    nonce = (pod.metadata.annotations or {})[CLAIM_ANNOTATION]
    with ledger.engine.begin() as conn:  # the operator's last step undone: the claim, not the pod's UID
        conn.execute(update(JobAttempt).where(JobAttempt.key == uid, JobAttempt.attempt == 1)
                     .values(pod_uid=claim_record(nonce)))
    env.wait(lambda: _pod("crash-run-1", env).status.phase == "Succeeded", "the pod to finish")
    if then == "deleted":
        env.custom.delete_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitjobs", "crash")
    env.operator.start()
    env.wait(lambda: ledger.reservation(uid).state == "settled", "the reservation settled", timeout=120)
    assert ledger.reservation(uid).actual_micro == 300_000  # it ran: charged, not released
    assert ledger.attempt_pod(uid, 1) == pod.metadata.uid  # adopted
    assert ledger.verify() == [] and ledger.open_reservations() == []
    if then == "kept":
        status = env.wait_terminal(["crash"])["crash"]
        assert status["phase"] == "Succeeded" and status["actualCost"] == "0.30"
        assert _pod("crash-run-1", env).metadata.uid == pod.metadata.uid  # not replaced
    ledger.close()


def _pod(name: str, env: Env) -> Any:
    return unless_gone(lambda: env.core.read_namespaced_pod(name, NS))
