"""Finished QiskitJobs go away after their time to live, with their result ConfigMaps; their
money stays in the ledger and in the budget's figures."""

from __future__ import annotations

import pytest

from .conftest import NS, TERMINAL, Env


def names(items) -> set[str]:
    return {i.metadata.name for i in items}


@pytest.mark.slow
@pytest.mark.operator_env(QGOV_JOB_TTL_SECONDS="8")
def test_a_finished_job_is_deleted_after_its_ttl_and_its_charge_stays(env: Env) -> None:
    env.budget("5.00")
    env.job("short", shots=100, ttlSecondsAfterFinished=6)
    env.job("default", shots=100)  # the operator's QGOV_JOB_TTL_SECONDS
    env.job("kept", shots=100, ttlSecondsAfterFinished=3600)
    seen: dict[str, dict] = {}  # each job's final status, as soon as it is seen (short ones go fast)

    def all_final() -> bool:
        for job in env.jobs():
            if (job.get("status") or {}).get("phase") in TERMINAL:
                seen.setdefault(job["metadata"]["name"], {**job["status"], "uid": job["metadata"]["uid"],
                                                          "configMaps": names(env.core.list_namespaced_config_map(
                                                              NS).items)})
        return len(seen) == 3

    env.wait(all_final, "the three jobs to finish")
    assert all(s["phase"] == "Succeeded" and s["resultConfigMap"] in s["configMaps"] for s in seen.values()), seen
    uids = {n: seen[n]["uid"] for n in ("short", "default")}
    env.wait(lambda: {j["metadata"]["name"] for j in env.jobs()} == {"kept"}, "short and default deleted", timeout=60)
    env.wait(lambda: not {"short-result", "default-result"} & names(env.core.list_namespaced_config_map(NS).items),
             "their result ConfigMaps deleted")
    assert "kept-result" in names(env.core.list_namespaced_config_map(NS).items)
    ledger = env.ledger()
    for uid in uids.values():  # the money stays
        reservation = ledger.reservation(uid)
        assert reservation.state == "settled" and reservation.actual_micro == 300_000
    assert ledger.balance(NS, NS).spent_micro == 900_000
    assert ledger.verify() == []
    ledger.close()
    status = env.wait(lambda: (lambda s: s if s.get("jobs", {}).get("succeeded") == 1 else None)(
        env.get("qiskitbudgets", NS).get("status") or {}), "the budget counts the job that is left")
    assert status["spent"] == "0.90"
