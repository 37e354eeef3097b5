"""Why a Pending executor pod will not start, read from its status as the kubelet and the
scheduler write it."""

from __future__ import annotations

from governance.handlers.pods import pending_problem


def pod(phase: str = "Pending", waiting: dict | None = None, conditions: list | None = None) -> dict:
    status: dict = {"phase": phase, "conditions": conditions or []}
    if waiting is not None:
        status["containerStatuses"] = [{"name": "executor", "state": {"waiting": waiting}}]
    return {"metadata": {"name": "job-run-1"}, "status": status}


def test_an_image_that_cannot_be_pulled_is_named_with_the_kubelets_message() -> None:
    assert pending_problem(pod(waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x:1"'})) \
        == ("ImagePullBackOff", 'Back-off pulling image "x:1"')


def test_a_missing_secret_and_no_fitting_node_are_problems() -> None:
    missing = pod(waiting={"reason": "CreateContainerConfigError", "message": 'secret "s-token" not found'})
    assert pending_problem(missing) == ("CreateContainerConfigError", 'secret "s-token" not found')
    unschedulable = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "0/3 nodes are available: 3 Insufficient memory."}])
    assert pending_problem(unschedulable) == ("Unschedulable", "0/3 nodes are available: 3 Insufficient memory.")


def test_a_pod_on_its_way_is_not_a_problem() -> None:
    assert pending_problem(pod()) is None
    assert pending_problem(pod(waiting={"reason": "ContainerCreating"})) is None
    assert pending_problem(pod(conditions=[{"type": "PodScheduled", "status": "True"}])) is None
    assert pending_problem(pod(phase="Running", waiting={"reason": "ImagePullBackOff"})) is None
