"""Only the pod the operator created (its UID in the ledger) is an attempt's pod, whatever a
squatter copies of it: name, owner, labels, ServiceAccount and image are all a tenant's to write."""

from __future__ import annotations

import copy

from governance.handlers.pods import executor_pod
from governance.jobs.ownpod import NOT_RECORDED, foreign_pod

JOB = {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
       "metadata": {"name": "bell", "namespace": "team-a", "uid": "job-uid"}}
IMAGE = "ghcr.io/qgov/executor:0.1.0"


def pod(uid: str = "pod-uid") -> dict:
    body = copy.deepcopy(executor_pod(JOB, 1, IMAGE))
    body["metadata"]["uid"] = uid
    return body


def test_the_operators_own_pod_is_the_attempt() -> None:
    assert foreign_pod(pod(), "job-uid", "bell-run-1", IMAGE, "pod-uid") is None


def test_a_perfect_copy_with_another_uid_is_not() -> None:
    assert NOT_RECORDED in (foreign_pod(pod("squatter"), "job-uid", "bell-run-1", IMAGE, "pod-uid") or "")
    assert NOT_RECORDED in (foreign_pod(pod(), "job-uid", "bell-run-1", IMAGE, None) or "")


def test_each_difference_is_named() -> None:
    other_owner = pod()
    other_owner["metadata"]["ownerReferences"][0]["uid"] = "another-job"
    other_account = pod()
    other_account["spec"]["serviceAccountName"] = "default"
    other_image = pod()
    other_image["spec"]["containers"][0]["image"] = "evil:latest"
    assert "not owned by the job" in foreign_pod(other_owner, "job-uid", "bell-run-1", IMAGE, "pod-uid")
    assert "runs as 'default'" in foreign_pod(other_account, "job-uid", "bell-run-1", IMAGE, "pod-uid")
    assert "not the executor image" in foreign_pod(other_image, "job-uid", "bell-run-1", IMAGE, "pod-uid")
    assert "is not named bell-run-2" in foreign_pod(pod(), "job-uid", "bell-run-2", IMAGE, "pod-uid")
