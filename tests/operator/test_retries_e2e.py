"""Failures: transient ones retry with backoff up to backoffLimit; deterministic ones do not; what
failed attempts used is charged."""

from __future__ import annotations

import pytest

from .conftest import NS, Env

LONG_BELL = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[12];\ncreg c[12];\nh q[0];\n'
             + "".join(f"cx q[{i}],q[{i + 1}];\n" for i in range(11)) + "measure q -> c;\n")


def evict_running_pod(env: Env, job: str, attempt: int) -> None:
    pod = f"{job}-run-{attempt}"
    env.wait(lambda: env.core.read_namespaced_pod(pod, NS).status.phase == "Running", f"{pod} running")
    env.core.delete_namespaced_pod(pod, NS)


def test_a_lost_executor_pod_is_retried_and_the_job_succeeds(env: Env) -> None:
    env.budget("5.00")
    env.job("flaky", circuits=[LONG_BELL], shots=200_000 // 4, backoffLimit=2)
    evict_running_pod(env, "flaky", 1)
    status = env.wait_terminal(["flaky"])["flaky"]
    assert status["phase"] == "Succeeded" and status["attempts"] == 2, status
    events = env.core.list_namespaced_event(NS, field_selector="involvedObject.name=flaky").items
    assert any(e.reason == "AttemptFailed" and "deleted before it finished" in e.message for e in events)
    ledger = env.ledger()
    reservation = ledger.reservation(env.get("qiskitjobs", "flaky")["metadata"]["uid"])
    assert reservation.state == "settled" and reservation.actual_micro == 300_000  # one task charged, once
    assert ledger.verify() == []
    ledger.close()


def test_the_backoff_limit_ends_in_failed_and_charges_what_ran(env: Env) -> None:
    env.budget("5.00")
    env.job("doomed", circuits=[LONG_BELL], shots=50_000, backoffLimit=1)
    evict_running_pod(env, "doomed", 1)
    evict_running_pod(env, "doomed", 2)
    status = env.wait_terminal(["doomed"])["doomed"]
    assert status["phase"] == "Failed" and status["attempts"] == 2
    assert "gave up after 2 attempts" in status["message"]
    ledger = env.ledger()
    assert ledger.reservation(env.get("qiskitjobs", "doomed")["metadata"]["uid"]).state == "settled"
    assert ledger.balance(NS, NS).held_micro == 0 and ledger.verify() == []
    ledger.close()


@pytest.mark.operator_env(QGOV_RETRY_BASE_SECONDS="6")  # a backoff the test cannot miss on a busy machine
def test_a_spec_changed_after_admission_is_not_run_and_not_retried(env: Env) -> None:
    """What runs is what was priced: raising shots after admission must not buy a bigger run."""
    env.budget("5.00")
    env.job("turns-bad", circuits=[LONG_BELL], shots=50_000, backoffLimit=3)
    evict_running_pod(env, "turns-bad", 1)
    # while attempt 2 waits out its backoff, the job is made 20 times bigger: the executor finds a
    # spec it was not paid for (a deterministic error, exit 2), and qgov must not retry it
    env.wait(lambda: env.status("turns-bad").get("retryAt"), "a scheduled retry")
    job = env.get("qiskitjobs", "turns-bad")
    job["spec"]["shots"] = 1_000_000
    env.custom.replace_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitjobs", "turns-bad", job)
    status = env.wait_terminal(["turns-bad"])["turns-bad"]
    assert status["phase"] == "Failed" and status["attempts"] == 2, status
    assert "does not retry a deterministic error" in status["message"]
    assert "spec changed after admission (generation 2, admitted and priced at 1)" in status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidJob"
    ledger = env.ledger()
    reservation = ledger.reservation(job["metadata"]["uid"])
    assert reservation.overrun_micro == 0 and ledger.balance(NS, NS).held_micro == 0
    ledger.close()


@pytest.mark.no_pod_runner
@pytest.mark.operator_env(QGOV_POD_SWEEP_SECONDS="1")
def test_a_pod_deleted_while_pending_is_created_again_and_nothing_is_charged(env: Env) -> None:
    """The operator watches pods only once they leave Pending; its sweep finds one deleted before."""
    env.budget("5.00")
    env.job("unlucky")
    first = env.wait(lambda: env.core.read_namespaced_pod("unlucky-run-1", NS), "the executor pod")
    assert first.status.phase == "Pending"
    env.core.delete_namespaced_pod("unlucky-run-1", NS)
    again = env.wait(lambda: next((p for p in env.core.list_namespaced_pod(NS).items
                                   if p.metadata.name == "unlucky-run-1" and p.metadata.uid != first.metadata.uid),
                                  None), "the pod created again")
    assert again.metadata.labels["qgov.dev/attempt"] == "1"
    status = env.status("unlucky")
    assert status["phase"] == "Admitted" and status["attempts"] == 1, status
    ledger = env.ledger()
    reservation = ledger.reservation(env.get("qiskitjobs", "unlucky")["metadata"]["uid"])
    assert reservation.state == "held" and reservation.actual_micro is None  # held, nothing charged
    assert ledger.verify() == []
    ledger.close()
    assert "unlucky-run-1 was gone before it ran" in env.operator.log.read_text()


@pytest.mark.no_pod_runner
@pytest.mark.operator_env(QGOV_POD_SWEEP_SECONDS="1")
def test_a_pod_that_cannot_start_says_why_in_the_job_and_the_job_runs_once_it_starts(env: Env) -> None:
    env.budget("5.00")
    env.job("stuck")
    env.wait(lambda: env.core.read_namespaced_pod("stuck-run-1", NS), "the executor pod")
    # what a kubelet writes when the executor image cannot be pulled
    env.core.patch_namespaced_pod_status("stuck-run-1", NS, {"status": {"phase": "Pending", "containerStatuses": [
        {"name": "executor", "ready": False, "restartCount": 0, "image": "ghcr.io/qgov/executor:0.1.0",
         "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff",
                                              "message": 'Back-off pulling image "ghcr.io/qgov/executor:0.1.0"'}}}]}})

    def stalled() -> dict | None:
        return next((c for c in env.status("stuck").get("conditions") or [] if c["type"] == "Stalled"), None)

    condition = env.wait(lambda: (stalled() or {}).get("status") == "True" and stalled(), "the Stalled condition")
    assert condition["reason"] == "ImagePullBackOff"
    assert 'Back-off pulling image "ghcr.io/qgov/executor:0.1.0"' in condition["message"]
    assert "stuck-run-1 cannot start" in env.status("stuck")["message"]
    assert env.status("stuck")["phase"] == "Admitted"
    env.core.patch_namespaced_pod_status("stuck-run-1", NS, {"status": {"phase": "Running", "containerStatuses": [
        {"name": "executor", "ready": True, "restartCount": 0, "image": "ghcr.io/qgov/executor:0.1.0",
         "imageID": "", "state": {"running": {"startedAt": "2026-11-24T08:00:00Z"}}}]}})
    env.wait(lambda: env.status("stuck").get("phase") == "Running", "the job running")
    assert stalled()["status"] == "False" and stalled()["reason"] == "PodRunning"
