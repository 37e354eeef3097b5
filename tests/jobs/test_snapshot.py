"""The cluster snapshot (governance/snapshot.py): fed by the operator's own kopf handlers as the
watches call them, read by the controller's admission and by the webhook in the same process.
A real operator is assembled over a real SQLite ledger; only the API server is absent (what would
call it is a function the test passes, counting its calls)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from governance import snapshot as snapshots
from governance.assessment import Problem, backend_from_object
from governance.budget import db
from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec
from governance.handlers import budgets as budget_handlers
from governance.handlers import jobwatch, observe
from governance.handlers.config import OperatorConfig
from governance.handlers.startup import Operator, assemble
from governance.snapshot import ClusterSnapshot, WatchedSession
from governance.webhook.review import review, review_job
from governance.webhook.server import LiveSources

NS = "team-a"
AER = {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitBackend", "metadata": {"name": "aer-sim"},
       "spec": {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "0.30"}}}
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[tuple[Operator, kopf.Memo]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    ledger = Ledger(url)
    # the executor identity is made by the API server's side: none here
    operator = assemble(replace(OperatorConfig.from_env(), provision_executor_identity=False), ledger)
    memo = kopf.Memo()
    memo.operator, memo.budgets, memo.jobs, memo.sessions = (operator, operator.budgets, operator.jobs,
                                                             operator.sessions)
    operator.kopf_context.running = True  # as start-up leaves it
    yield operator, memo
    ledger.close()


def backend_event(memo: kopf.Memo, type: str | None, obj: dict[str, Any]) -> None:
    jobwatch.on_backend_event(type=type, body=kopf.Body(obj), name=obj["metadata"]["name"], memo=memo)


def with_spec(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {**obj, "spec": {**obj["spec"], **spec}}


class Reads:
    """The API server's side of the one GET a lookup may make: what it was asked, what it has."""

    def __init__(self, objects: dict[str, dict[str, Any]] | None = None) -> None:
        self.objects, self.asked = objects or {}, list[str]()

    def __call__(self, name: str) -> dict[str, Any] | None:
        self.asked.append(name)
        return self.objects.get(name)


def test_backends_follow_their_watch_and_an_unseen_name_is_read_once_per_lookup(
        operator: tuple[Operator, kopf.Memo]) -> None:
    op, memo = operator
    snap = op.snapshot
    assert op.jobs.admission.snapshot is snap and op.budgets.snapshot is snap and op.sessions.snapshot is snap
    backend_event(memo, None, AER)  # the initial listing
    reads = Reads()
    assert snap.backend("aer-sim", reads) == backend_from_object("aer-sim", AER) and reads.asked == []
    assert op.jobs.admission.load_backend("aer-sim") == backend_from_object("aer-sim", AER)

    changed = with_spec(AER, pricing={"perTask": "0.50"})
    backend_event(memo, "MODIFIED", changed)
    assert snap.backend("aer-sim", reads) == backend_from_object("aer-sim", changed)

    broken = {"metadata": {"name": "broken"}, "spec": {"provider": "nope"}}
    backend_event(memo, "ADDED", broken)
    assert isinstance(snap.backend("broken", reads), Problem)  # admission refuses with the problem it has

    backend_event(memo, "DELETED", changed)
    assert snap.backend_names() == {"broken"}
    new = with_spec(AER, pricing={"perTask": "0.40"})
    later = Reads({"aer-sim": new})  # re-created: the watch's event is not here yet
    assert snap.backend("aer-sim", later) == backend_from_object("aer-sim", new)
    assert snap.backend("aer-sim", later) == backend_from_object("aer-sim", new)
    assert later.asked == ["aer-sim", "aer-sim"]  # not kept: the watch's event, when it comes, is the truth
    assert snap.backend("nowhere", later) is None


def test_budgets_follow_their_handlers_and_a_namespace_never_seen_is_read_from_the_ledger_once(
        operator: tuple[Operator, kopf.Memo]) -> None:
    op, memo = operator
    snap, admission, ledger = op.snapshot, op.jobs.admission, op.ledger
    ledger.upsert_budget(BudgetSpec(NS, "research", 10_000_000))  # in the ledger before this operator started
    assert snap.budgets(NS) is None
    assert admission.choose_budget(NS, None) == ("research", "USD")  # the ledger, read now
    assert snap.budgets(NS) == {"research": "USD"}
    ledger.upsert_budget(BudgetSpec(NS, "ops", 5_000_000, "QPU-seconds"))  # past the watch: the snapshot is not re-read
    assert admission.choose_budget(NS, None) == ("research", "USD")

    def budget(name: str, unit: str) -> dict[str, Any]:
        return {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitBudget",
                "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
                "spec": {"limit": "5.00", "unit": unit}}

    obj = budget("ops", "QPU-seconds")
    budget_handlers.on_budget(body=kopf.Body(obj), spec=kopf.Spec(kopf.Body(obj)), namespace=NS, name="ops",
                              patch=kopf.Patch(), memo=memo)
    assert snap.budgets(NS) == {"research": "USD", "ops": "QPU-seconds"}
    chosen = admission.choose_budget(NS, None)
    assert isinstance(chosen, Problem) and chosen.reason == "AmbiguousBudget"
    assert admission.choose_budget(NS, "ops") == ("ops", "QPU-seconds")
    assert snap.budget_keys() == [(NS, "research"), (NS, "ops")] and snap.budget_keys("elsewhere") == []

    budget_handlers.on_budget_deleted(namespace=NS, name="research", memo=memo)
    assert snap.budgets(NS) == {"ops": "QPU-seconds"}
    assert admission.choose_budget(NS, None) == ("ops", "QPU-seconds")
    budget_handlers.on_budget_deleted(namespace=NS, name="ops", memo=memo)
    assert snap.budgets(NS) == {}  # known to have none: the ledger is not read again

    snap.budget_gone("never-seen", "x")
    assert snap.budgets("never-seen") is None  # a deletion seen first leaves the namespace unread


def test_sessions_are_kept_as_their_watch_shows_them(operator: tuple[Operator, kopf.Memo]) -> None:
    op, memo = operator
    session = {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitSession",
               "metadata": {"name": "s1", "namespace": NS, "uid": "u-s1"}, "spec": {"backend": "aer-sim"}}

    def event(type: str | None, obj: dict[str, Any]) -> None:
        asyncio.run(observe.on_session_event(type=type, body=kopf.Body(obj), memo=memo))

    event(None, session)
    assert op.snapshot.session(NS, "s1") == WatchedSession("aer-sim", "batch", "")
    event("MODIFIED", {**session, "spec": {"backend": "aer-sim", "mode": "dedicated"}, "status": {"phase": "Active"}})
    assert op.snapshot.session(NS, "s1") == WatchedSession("aer-sim", "dedicated", "Active")
    event("DELETED", session)
    assert op.snapshot.session(NS, "s1") is None


def test_the_webhook_in_the_operators_process_reads_the_operators_snapshot(
        operator: tuple[Operator, kopf.Memo], tmp_path: Path) -> None:
    op, memo = operator
    # no API client at all: the backend can only come from the snapshot the watch fed
    live = LiveSources(None, f"sqlite:///{tmp_path / 'ledger.db'}", allow_unbudgeted=True,
                       snapshot=lambda: op.snapshot)
    try:
        backend_event(memo, "ADDED", AER)
        assert live.backend("aer-sim") == op.jobs.admission.load_backend("aer-sim")
        verdict = review_job(NS, {"backend": "aer-sim", "shots": 100, "circuits": [BELL]}, live)
        assert verdict.allowed and "0.30 USD" in verdict.warnings[0], verdict
        backend_event(memo, "MODIFIED", with_spec(AER, pricing={"perTask": "0.50"}))
        verdict = review_job(NS, {"backend": "aer-sim", "shots": 100, "circuits": [BELL]}, live)
        assert verdict.allowed and "0.50 USD" in verdict.warnings[0], verdict  # the watch's change, at once
        session = {"kind": {"kind": "QiskitSession"}, "operation": "CREATE", "namespace": NS,
                   "object": {"metadata": {"name": "s"}, "spec": {"backend": "aer-sim"}}}
        assert review(session, live).allowed
    finally:
        live.close()


def test_only_the_running_operator_publishes_its_snapshot() -> None:
    first, second = ClusterSnapshot(), ClusterSnapshot()
    assert snapshots.published() is None
    snapshots.publish(first)
    try:
        assert snapshots.published() is first
        snapshots.withdraw(second)  # another operator's clean-up leaves this one's alone
        assert snapshots.published() is first
    finally:
        snapshots.withdraw(first)
    assert snapshots.published() is None
