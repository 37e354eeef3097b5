"""Only the pod the operator created (its UID in the ledger) is an attempt's pod, whatever a
squatter copies of it: name, owner, labels, ServiceAccount and image are all a tenant's to write."""

from __future__ import annotations

import copy

from governance.handlers.pods import executor_pod
from governance.jobs.ownpod import (CLAIM_ANNOTATION, NOT_RECORDED, adoptable, carries_claim, claim_record, foreign_pod,
                                   recorded_uid)

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


def claimed(nonce: str | None) -> dict:
    body = pod()
    if nonce is not None:
        body["metadata"].setdefault("annotations", {})[CLAIM_ANNOTATION] = nonce
    return body


def test_a_pod_made_under_the_recorded_claim_is_adopted_once_its_creator_had_time_to_record_it() -> None:
    claim = claim_record("n0nce")
    assert recorded_uid(claim) is None and recorded_uid("pod-uid") == "pod-uid" and recorded_uid(None) is None
    assert adoptable(claimed("n0nce"), claim, young=False)
    assert not adoptable(claimed("n0nce"), claim, young=True)  # its creator may be recording it now
    assert carries_claim(claimed("n0nce"), claim)


def test_no_other_pod_is_adopted() -> None:
    claim = claim_record("n0nce")
    assert not adoptable(claimed(None), claim, young=False)  # a squatter made before the claim
    assert not adoptable(claimed("guess"), claim, young=False)
    assert not adoptable(claimed("n0nce"), "pod-uid", young=False)  # the attempt's pod is recorded already
    assert not adoptable(claimed("n0nce"), None, young=False)
    assert not adoptable(claimed("n0nce"), claim_record("other"), young=False)  # an older claim's pod
