"""The job controller's parts built on a real ledger, with small stand-ins for the Kubernetes side
only: an attempt's end is charged once, from the terms the ledger recorded at admission, however
often its pod's event arrives; the job's status says what was charged, and the budget agrees."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import kopf
from kopf._core.engines.posting import event_queue_loop_var, event_queue_var, settings_var

from governance.assessment import backend_from_object
from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec, JobTerms, QueueChange, ReserveRequest
from governance.handlers.budgetnotify import BudgetNotifier
from governance.handlers.config import OperatorConfig
from governance.handlers.jobadmission import Admission
from governance.handlers.jobattempts import Attempts
from governance.handlers.jobpods import AttemptPods
from governance.handlers.jobsettlement import Settlement
from governance.handlers.kube import Kube
from governance.handlers.sessionview import SessionDirectory
from governance.snapshot import ClusterSnapshot

NAMESPACE, BUDGET, UID = "team-a", "team-a", "job-uid-1"
# IBM's fake_manila model priced at 1.60 USD per QPU-second (samples/backends.yaml)
BACKEND = {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitBackend", "metadata": {"name": "fake-manila"},
           "spec": {"provider": "fake", "name": "fake_manila", "pricing": {"currency": "USD", "perQPUSecond": "1.60"}}}


class StatusWrites:
    """The API server's side of what the parts write: job status patches, as they were sent."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.patches.append((namespace, name, status))


class BudgetRefreshes:
    """What jobs tell budgets: which budget's status is to be written again, and the Events posted
    on a budget."""

    def __init__(self) -> None:
        self.refreshed: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str, str, str]] = []

    def refresh_budget_status(self, namespace: str, name: str) -> None:
        self.refreshed.append((namespace, name))

    def budget_event(self, namespace: str, name: str, type_: str, reason: str, message: str) -> None:
        self.events.append((namespace, name, type_, reason, message))


@pytest.fixture
def posted() -> Iterator[Callable[[], list[tuple[str, str, str]]]]:
    """The Kubernetes Events the parts post through kopf.event, as kopf's poster receives them:
    (type, reason, message) of each delivered so far."""
    loop, queue = asyncio.new_event_loop(), asyncio.Queue[Any]()
    tokens = event_queue_loop_var.set(loop), event_queue_var.set(queue), settings_var.set(kopf.OperatorSettings())

    def delivered() -> list[tuple[str, str, str]]:
        loop.run_until_complete(asyncio.sleep(0))  # handed over from a handler's thread, as kopf's are
        return [(e.type, e.reason, e.message) for e in [queue.get_nowait() for _ in range(queue.qsize())]]

    try:
        yield delivered
    finally:
        settings_var.reset(tokens[2])
        event_queue_var.reset(tokens[1])
        event_queue_loop_var.reset(tokens[0])
        loop.close()


def job() -> dict[str, Any]:
    return {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
            "metadata": {"name": "bell", "namespace": NAMESPACE, "uid": UID, "generation": 1},
            "spec": {"backend": "fake-manila", "circuits": ["OPENQASM 3.0; qubit q;"], "shots": 100},
            "status": {"phase": "Running", "attempts": 1, "budget": BUDGET, "podName": "bell-run-1"}}


def admitted(ledger: Ledger) -> OperatorConfig:
    """The job admitted: 6.00 USD held of a 10.00 USD budget, and the terms admission recorded (the
    model says 2.5 QPU-seconds, so an attempt costs 4.00 USD); the operator's config."""
    ledger.upsert_budget(BudgetSpec(NAMESPACE, BUDGET, 10_000_000))
    ledger.reserve(ReserveRequest(UID, NAMESPACE, BUDGET, 6_000_000, job=f"{NAMESPACE}/bell", backend="fake-manila"))
    ledger.record_terms(JobTerms(UID, f"{NAMESPACE}/bell", f"{NAMESPACE}/{BUDGET}", "USD", False, "fake-manila", "",
                                 "2.5", "0", 100, 1))
    return OperatorConfig(database_url=None, executor_image="ghcr.io/qgov/executor:0.1.0", allow_unbudgeted=False,
                          retry_base_seconds=2, status_interval_seconds=1)


def test_a_finished_attempt_is_charged_once_when_its_event_is_replayed(
        ledger: Ledger, posted: Callable[[], list[tuple[str, str, str]]]) -> None:
    config = admitted(ledger)
    kube, notifier, freed = StatusWrites(), BudgetRefreshes(), []
    # the Kubernetes side: none of these is read on this path (the backend comes from its watch)
    as_kube, as_notifier = cast(Kube, kube), cast(BudgetNotifier, notifier)
    admission = Admission(config, ledger, cast(Any, None), as_kube, as_notifier, cast(SessionDirectory, None),
                          ClusterSnapshot())
    admission.snapshot.backend_event("ADDED", "fake-manila", BACKEND)
    pods = AttemptPods(config, ledger, as_kube)

    def start_admitted(changes: tuple[QueueChange, ...] | list[QueueChange]) -> None:
        freed.extend(changes)

    settlement = Settlement(config, ledger, as_kube, as_notifier, admission, pods, start_admitted)
    attempts = Attempts(config, ledger, as_kube, as_notifier, cast(SessionDirectory, None), admission, pods,
                        settlement)
    assert backend_from_object("fake-manila", BACKEND) == admission.load_backend("fake-manila")

    report = {"resultConfigMap": "bell-result-1", "qpuSeconds": 999, "costMicro": 1}  # a tenant can write these
    attempts.attempt_finished(job(), 1, True, dict(report), 0)
    attempts.attempt_finished(job(), 1, True, dict(report), 0)  # the pod's event again (a watch restart)

    balance = ledger.balance(NAMESPACE, BUDGET)
    assert (balance.spent_micro, balance.held_micro) == (4_000_000, 0)  # charged once, the hold gone
    assert [p[2]["phase"] for p in kube.patches] == ["Succeeded", "Succeeded"]
    for _, name, status in kube.patches:  # the replay's status says what the first did
        assert name == "bell" and status["actualCost"] == "4.00" and status["currency"] == "USD"
        assert status["usedMicro"] == "4000000" and status["qpuSeconds"] == "2.5"
        assert status["resultConfigMap"] == "bell-result-1" and status["budget"] == BUDGET
    assert ledger.attempt_totals(UID).used_micro == 4_000_000
    assert notifier.refreshed == [(NAMESPACE, BUDGET)] * 2
    assert freed == []  # nothing was queued behind it
    assert posted() == [("Normal", "Succeeded", "succeeded on attempt 1; charged 4.00 USD")] * 2


def test_work_that_ran_after_its_hold_was_released_is_charged_late_and_said_so(
        ledger: Ledger, posted: Callable[[], list[tuple[str, str, str]]]) -> None:
    config = admitted(ledger)
    ledger.release(UID)  # say, an operator that thought the job gone
    kube, notifier = cast(Kube, StatusWrites()), BudgetRefreshes()
    admission = Admission(config, ledger, cast(Any, None), kube, cast(BudgetNotifier, notifier),
                          cast(SessionDirectory, None), ClusterSnapshot())
    settlement = Settlement(config, ledger, kube, cast(BudgetNotifier, notifier), admission,
                            AttemptPods(config, ledger, kube), lambda changes: None)

    assert settlement.settle(job(), 4_000_000) == (
        4_000_000, "a late charge: its reservation had been released before it was settled")
    assert settlement.settle(job(), 4_000_000)[0] == 4_000_000  # replayed: the same charge, not a second

    assert ledger.balance(NAMESPACE, BUDGET).spent_micro == 4_000_000
    message = ("charged 4.00 USD after its reservation had been released (a late charge, recorded in the ledger "
               "as an overrun)")
    assert posted() == [("Warning", "LateCharge", message)]  # once: the replay says nothing new
    assert notifier.events == [(NAMESPACE, BUDGET, "Warning", "LateCharge", f"QiskitJob bell: {message}")]
