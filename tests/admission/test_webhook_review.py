"""The webhook's review: AdmissionReview requests in, what `kubectl apply` shows out. Budgets and
balances come from a real ledger (SQLite), backends are parsed from QiskitBackend specs as the
cluster holds them; the decision is the controller's own (decide_admission, each fact it asks
for answered from the webhook's snapshot), so refusals are compared with what the ledger
answers when it is asked to reserve."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from governance.assessment import Problem, backend_from_object
from governance.api.specs import Backend
from governance.budget import db
from governance.budget.ledger import Ledger
from governance.budget.money import parse_amount
from governance.budget.types import BudgetSpec, Decision, ReserveRequest
from governance.webhook.review import BudgetView, response, review
from governance.webhook.server import ledger_budgets

NS = "team-a"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
BACKENDS = {
    # 0.30 USD per task: a one-circuit job is estimated at exactly 0.30 USD
    "priced-aer": {"spec": {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "0.30"},
                            "limits": {"maxQubits": 20, "maxShots": 100000, "maxCircuits": 4}}},
    "fake-manila": {"spec": {"provider": "fake", "name": "fake_manila", "pricing": {"perQPUSecond": "1.60"}}},
    "torino": {"spec": {"provider": "ibm", "name": "ibm_torino", "pricing": {"perQPUSecond": "1.60"}}},
    "broken": {"spec": {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "lots"}}},
}


class LedgerSources:
    """What the server adapter gives the review, over a real ledger and a dict of backends."""

    def __init__(self, ledger: Ledger, cluster_budgets: Mapping[str, str] | None = None,
                 allow_unbudgeted: bool = False) -> None:
        self.ledger, self.cluster_budgets, self.allow_unbudgeted = ledger, dict(cluster_budgets or {}), allow_unbudgeted
        self.ledger_down = False
        self.ibm_default_secret = "ibm-quantum"
        self.secrets: dict[str, frozenset[str]] = {}

    def backend(self, name: str) -> Backend | Problem | None:
        obj = BACKENDS.get(name)
        return None if obj is None else backend_from_object(name, obj)

    def budgets(self, namespace: str) -> Mapping[str, BudgetView] | None:
        return None if self.ledger_down else ledger_budgets(self.ledger, namespace)

    def budgets_in_cluster(self, namespace: str) -> Mapping[str, str]:
        return self.cluster_budgets

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        return self.secrets.get(name)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    ledger = Ledger(url)
    yield ledger
    ledger.close()


def budget(ledger: Ledger, limit: str, enforcement: str = "hard", name: str = NS) -> None:
    ledger.upsert_budget(BudgetSpec(NS, name, parse_amount(limit), enforcement=enforcement))


def request(spec: dict[str, Any], *, kind: str = "QiskitJob", operation: str = "CREATE", name: str = "job",
            old: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = {"apiVersion": "qgov.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": NS, **(meta or {})}, "spec": spec}
    return {"uid": str(uuid.uuid4()), "kind": {"group": "qgov.dev", "version": "v1alpha1", "kind": kind},
            "operation": operation, "namespace": NS, "name": name, "object": obj, "oldObject": old, "dryRun": False}


def job(backend: str = "priced-aer", circuits: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"backend": backend, "circuits": circuits or [BELL], **spec}


def test_accepted_job_is_told_its_price_and_what_is_left(ledger: Ledger) -> None:
    budget(ledger, "1.00")
    ledger.reserve(ReserveRequest("earlier", NS, NS, parse_amount("0.25")))
    verdict = review(request(job()), LedgerSources(ledger))
    assert verdict.allowed
    assert verdict.warnings[0].startswith("estimated 0.30 USD (")
    assert verdict.warnings[0].endswith("CPU-s on aer_simulator); budget team-a/team-a: 0.75 USD left this period")


def test_qpu_backend_price_names_its_qpu_seconds(ledger: Ledger) -> None:
    budget(ledger, "10.00")
    verdict = review(request(job("fake-manila")), LedgerSources(ledger))
    assert verdict.allowed
    text = verdict.warnings[0]
    assert text.startswith("estimated ") and " QPU-s on fake_manila); budget team-a/team-a: 10.00 USD left" in text


def test_invalid_openqasm_is_refused_with_circuit_index_line_and_column(ledger: Ledger) -> None:
    budget(ledger, "10.00")
    broken = BELL.replace("cx q[0],q[1];", "cx q[0] q[1];")
    verdict = review(request(job(circuits=[BELL, broken])), LedgerSources(ledger))
    assert not verdict.allowed and verdict.reason == "InvalidCircuit"
    assert verdict.message.startswith("spec.circuits[1] line 6 column ")
    assert "invalid OpenQASM" in verdict.message


def test_unknown_backend_and_invalid_backend_are_refused(ledger: Ledger) -> None:
    budget(ledger, "10.00")
    unknown = review(request(job("nope")), LedgerSources(ledger))
    assert not unknown.allowed
    assert unknown.message == "spec.backend: no QiskitBackend named 'nope' (see `kubectl get qiskitbackends`)"
    broken = review(request(job("broken")), LedgerSources(ledger))
    assert not broken.allowed and broken.message.startswith("QiskitBackend broken: spec.pricing")


def test_limits_of_the_backend(ledger: Ledger) -> None:
    budget(ledger, "10.00")
    shots = review(request(job(shots=200000)), LedgerSources(ledger))
    assert (shots.allowed, shots.message) == (False, "spec.shots: 200000 shots, backend priced-aer accepts at most 100000")
    wide = BELL.replace("qreg q[2];", "qreg q[21];").replace("creg c[2];", "creg c[21];")
    qubits = review(request(job(circuits=[wide])), LedgerSources(ledger))
    assert (qubits.allowed, qubits.message) == (False, "spec.circuits[0]: 21 qubits, backend priced-aer has 20")
    cost = review(request(job(maxCost="0.10")), LedgerSources(ledger))
    assert (cost.allowed, cost.message) == (False, "estimated 0.30 USD is above spec.maxCost 0.10 USD")
    obs = review(request(job(primitive="estimator", observables=[["ZZZ"]])), LedgerSources(ledger))
    assert not obs.allowed and obs.message.startswith("spec.observables[0][0]: 'ZZZ' has 3 terms")


def test_over_a_hard_budget_is_refused_with_the_ledgers_own_message(ledger: Ledger) -> None:
    budget(ledger, "1.00")
    ledger.reserve(ReserveRequest("earlier", NS, NS, parse_amount("0.80")))
    verdict = review(request(job()), LedgerSources(ledger))
    assert not verdict.allowed and verdict.reason == "BudgetExceeded"
    assert verdict.message == ("exceeded budget team-a/team-a: requested 0.30 USD, spent 0.00 USD, "
                               "reserved 0.80 USD, limit 1.00 USD")
    # what the controller's reservation of the same job answers
    outcome = ledger.reserve(ReserveRequest("this-job", NS, NS, parse_amount("0.30")))
    assert outcome.decision is Decision.REFUSED and outcome.message == verdict.message


def test_queue_budget_accepts_and_warns_that_the_job_will_wait(ledger: Ledger) -> None:
    budget(ledger, "1.00", enforcement="queue")
    ledger.reserve(ReserveRequest("earlier", NS, NS, parse_amount("0.80")))
    verdict = review(request(job()), LedgerSources(ledger))
    assert verdict.allowed
    outcome = ledger.reserve(ReserveRequest("this-job", NS, NS, parse_amount("0.30")))
    assert outcome.decision is Decision.QUEUED
    assert verdict.warnings[1] == f"the job will wait: {outcome.message}"
    assert outcome.message.startswith("queued for budget team-a/team-a (position 1): requested 0.30 USD")


def test_two_jobs_that_each_fit_both_pass_and_the_ledger_refuses_the_second(ledger: Ledger) -> None:
    budget(ledger, "0.50")
    sources = LedgerSources(ledger)
    first, second = review(request(job(), name="a"), sources), review(request(job(), name="b"), sources)
    assert first.allowed and second.allowed  # the webhook reserves nothing
    a = ledger.reserve(ReserveRequest("a", NS, NS, parse_amount("0.30")))
    b = ledger.reserve(ReserveRequest("b", NS, NS, parse_amount("0.30")))
    assert a.decision is Decision.ADMITTED and b.decision is Decision.REFUSED
    # the next one is refused at the door
    third = review(request(job(), name="c"), sources)
    assert not third.allowed and third.message == ("exceeded budget team-a/team-a: requested 0.30 USD, spent 0.00 USD, "
                                                   "reserved 0.30 USD, limit 0.50 USD")


def test_no_budget_in_the_namespace(ledger: Ledger) -> None:
    verdict = review(request(job()), LedgerSources(ledger))
    assert not verdict.allowed and verdict.reason == "NoBudget"
    assert verdict.message.startswith("namespace 'team-a' has no QiskitBudget, so no quantum work is admitted here")
    allowed = review(request(job()), LedgerSources(ledger, allow_unbudgeted=True))
    assert allowed.allowed and "namespace team-a has no budget: the operator admits unbudgeted work" in allowed.warnings[0]
    named = review(request(job(budget="other")), LedgerSources(ledger))
    assert not named.allowed and named.message == "spec.budget: no QiskitBudget 'other' in namespace 'team-a'"


def test_a_job_in_a_session_is_priced_and_the_session_decides_what_the_budget_pays(ledger: Ledger) -> None:
    """The webhook reads no QiskitSession: a job naming one is priced, and whether its budget pays
    (a dedicated session pays for its time) is left to the controller; an IBM job without one runs
    in an automatic batch, charged to its budget as any job, so the budget's balance rules."""
    budget(ledger, "1.00")
    named = review(request(job(session="s1")), LedgerSources(ledger))
    assert named.allowed and named.warnings[0].startswith("estimated 0.30 USD (")
    assert named.warnings[0].endswith("; runs in QiskitSession s1: what budget team-a/team-a pays is decided "
                                      "with the session")
    unbudgeted = review(request(job(session="s1")), LedgerSources(ledger, allow_unbudgeted=True))
    assert unbudgeted.warnings == named.warnings  # the namespace has a budget: it is the one that pays
    refused = review(request(job("torino")), LedgerSources(ledger))  # about 2.52 USD of QPU time
    assert not refused.allowed and refused.reason == "BudgetExceeded"
    assert refused.message.startswith("exceeded budget team-a/team-a: requested ")
    budget(ledger, "10.00")
    batch = review(request(job("torino")), LedgerSources(ledger))
    assert batch.allowed and " QPU-s on ibm_torino); budget team-a/team-a: 10.00 USD left" in batch.warnings[0]
    in_session = review(request(job("torino", session="s1")), LedgerSources(ledger))
    assert in_session.allowed and "runs in QiskitSession s1" in in_session.warnings[0]


def test_budget_applied_with_the_job_is_left_to_the_controller(ledger: Ledger) -> None:
    verdict = review(request(job()), LedgerSources(ledger, cluster_budgets={NS: "USD"}))
    assert verdict.allowed
    assert verdict.warnings[1] == "QiskitBudget team-a is not in the ledger yet: the operator decides when it is"


def test_ledger_unreachable_prices_and_lets_the_controller_decide(ledger: Ledger) -> None:
    sources = LedgerSources(ledger, cluster_budgets={NS: "USD"})
    sources.ledger_down = True
    verdict = review(request(job()), sources)
    assert verdict.allowed and verdict.warnings[0].startswith("estimated 0.30 USD")
    assert "the budget ledger cannot be read now" in verdict.warnings[1]
    assert not review(request(job(circuits=["OPENQASM 2.0; nonsense"])), sources).allowed


def test_spec_of_a_decided_job_cannot_change(ledger: Ledger) -> None:
    budget(ledger, "10.00")
    sources = LedgerSources(ledger)
    old = {"metadata": {"name": "job", "namespace": NS, "generation": 1}, "spec": job(),
           "status": {"phase": "Running", "estimatedCost": "0.30", "currency": "USD", "admittedGeneration": 1}}
    edited = review(request(job(shots=100000), operation="UPDATE", old=old), sources)
    assert not edited.allowed and edited.reason == "SpecImmutable"
    assert edited.message.startswith("spec: the spec of a QiskitJob cannot change once it is decided (phase Running; "
                                     "it was priced at 0.30 USD as admitted, generation 1)")
    relabelled = review(request(job(), operation="UPDATE", old=old, meta={"labels": {"x": "y"}}), sources)
    assert relabelled.allowed and not relabelled.warnings
    undecided = dict(old, status={})
    assert review(request(job(shots=2000), operation="UPDATE", old=undecided), sources).allowed
    too_many = review(request(job(shots=200000), operation="UPDATE", old=undecided), sources)
    assert not too_many.allowed and too_many.message.startswith("spec.shots: 200000 shots")
    failed = dict(old, status={"phase": "Failed", "message": "spec.circuits[0]: …"})
    refixed = review(request(job(), operation="UPDATE", old=dict(failed, spec=job(shots=7))), sources)
    assert not refixed.allowed and refixed.message == (
        "spec: the spec of a QiskitJob cannot change once it is decided (phase Failed, and a decided job is never "
        "reconsidered): create a new QiskitJob instead")
    deleting = review(request(job(shots=5), operation="UPDATE", old=old,
                              meta={"deletionTimestamp": "2026-11-30T00:00:00Z"}), sources)
    assert deleting.allowed


def test_budgets_backends_and_sessions_are_validated(ledger: Ledger) -> None:
    sources = LedgerSources(ledger)
    bad_limit = review(request({"limit": "ten"}, kind="QiskitBudget"), sources)
    assert not bad_limit.allowed and bad_limit.message.startswith("spec.limit: ")
    assert review(request({"limit": "10.00"}, kind="QiskitBudget"), sources).allowed
    model = review(request({"provider": "fake", "name": "fake_nowhere"}, kind="QiskitBackend", name="m"), sources)
    assert not model.allowed and model.message.startswith(
        "QiskitBackend m: spec.name: no fake_provider backend named 'fake_nowhere'")
    assert review(request(BACKENDS["fake-manila"]["spec"], kind="QiskitBackend", name="fake-manila"), sources).allowed
    bad_price = review(request(BACKENDS["broken"]["spec"], kind="QiskitBackend", name="broken"), sources)
    assert not bad_price.allowed and bad_price.message.startswith("QiskitBackend broken: spec.pricing")
    session = review(request({"backend": "nope", "mode": "batch"}, kind="QiskitSession"), sources)
    assert not session.allowed and session.message.startswith("spec.backend: no QiskitBackend named 'nope'")
    assert review(request({"backend": "priced-aer"}, kind="QiskitSession"), sources).allowed  # local: no Secret
    nocreds = review(request({"backend": "torino", "credentialsSecret": "ibm-team-a"}, kind="QiskitSession"), sources)
    assert not nocreds.allowed and nocreds.message == ("spec.credentialsSecret: no Secret 'ibm-team-a' in namespace "
                                                       "'team-a' (it needs keys apiKey and instance)")
    sources.secrets["ibm-quantum"] = frozenset({"apiKey"})
    partial = review(request({"backend": "torino"}, kind="QiskitSession"), sources)
    assert not partial.allowed and partial.message.startswith("spec: Secret ibm-quantum has no instance")
    sources.secrets["ibm-quantum"] = frozenset({"apiKey", "instance"})
    assert review(request({"backend": "torino"}, kind="QiskitSession"), sources).allowed
    mode = review(request({"backend": "priced-aer", "mode": "shared"}, kind="QiskitSession"), sources)
    assert not mode.allowed and mode.message == "spec.mode: 'shared' is not one of dedicated, batch"


def test_admission_review_response() -> None:
    from governance.webhook.review import Verdict

    sent = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-1"}}
    denied = response(sent, Verdict(False, "exceeded budget x/y: …", "BudgetExceeded"))
    assert denied == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
        "uid": "u-1", "allowed": False, "status": {"code": 403, "reason": "Forbidden", "message": "exceeded budget x/y: …"}}}
    warned = response(sent, Verdict(True, warnings=("estimated 0.30 USD",)))
    assert warned["response"] == {"uid": "u-1", "allowed": True, "warnings": ["estimated 0.30 USD"]}


def test_the_servers_budget_cache_counts_a_new_budget_at_once_and_spares_a_down_ledger(
        tmp_path: Path) -> None:
    """Time is the sources' own clock here, moved by hand: what the test asks depends on the
    time-to-live rules, not on how fast the machine upgrades a schema."""
    from governance.webhook.server import LEDGER_RETRY_SECONDS, LiveSources

    now = [1000.0]
    url = f"sqlite:///{tmp_path / 'live.db'}"
    db.upgrade(url)
    live = LiveSources(None, url, allow_unbudgeted=False, clock=lambda: now[0])
    try:
        assert live.budgets(NS) == {}  # none yet: not remembered
        writer = Ledger(url)
        budget(writer, "1.00")
        [view] = live.budgets(NS).values()  # created a moment ago: counted at once
        assert (view.name, view.balance.limit_micro) == (NS, 1_000_000)
        writer.reserve(ReserveRequest("k", NS, NS, parse_amount("0.40")))
        assert live.budgets(NS)[NS].balance.held_micro == 0  # balances are kept 1 s...
        now[0] += 1.1
        assert live.budgets(NS)[NS].balance.held_micro == 400_000  # ...then read again
        writer.close()
    finally:
        live.close()
    missing = tmp_path / "later" / "ledger.db"
    down = LiveSources(None, f"sqlite:///{missing}", allow_unbudgeted=False, clock=lambda: now[0])
    assert down.budgets(NS) is None  # no ledger schema there (yet)
    missing.parent.mkdir(exist_ok=True)
    db.upgrade(f"sqlite:///{missing}")
    now[0] += LEDGER_RETRY_SECONDS - 0.1
    assert down.budgets(NS) is None  # not asked again before LEDGER_RETRY_SECONDS
    now[0] += 0.2
    assert down.budgets(NS) == {}
    down.close()


def test_the_server_answers_admission_reviews_and_lets_through_what_it_cannot_price_in_time(ledger: Ledger) -> None:
    """The aiohttp adapter (HTTP here; TLS through the real API server in test_webhook_upstream):
    the AdmissionReview answer, a review that outlasts its time let through with a warning (the
    controller decides), garbage refused as a bad request, and the counts in /metrics."""
    import asyncio
    import concurrent.futures
    import threading

    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import REGISTRY

    from governance.webhook.server import make_app

    budget(ledger, "1.00")

    class Slow(LedgerSources):
        def __init__(self, ledger: Ledger) -> None:
            super().__init__(ledger)
            self.release = threading.Event()

        def backend(self, name: str) -> Backend | Problem | None:
            if name == "slow":
                self.release.wait(10)
                name = "priced-aer"
            return super().backend(name)

    def count(verdict: str, reason: str) -> float:
        return REGISTRY.get_sample_value("qgov_webhook_reviews_total",
                                         {"kind": "QiskitJob", "verdict": verdict, "reason": reason}) or 0.0

    sources = Slow(ledger)
    pool = concurrent.futures.ThreadPoolExecutor(2)
    denied_before, timeouts_before = count("denied", "TooManyShots"), count("undecided", "Timeout")

    async def scenario() -> list[Any]:
        async with TestClient(TestServer(make_app(sources, pool, timeout=0.5))) as client:
            answers = []
            for spec in (job(shots=200000), job("slow")):
                sent = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request(spec)}
                reply = await client.post("/validate", json=sent)
                answers.append((sent["request"]["uid"], reply.status, await reply.json()))
            sources.release.set()
            garbage = await client.post("/validate", data=b"{not json")
            answers.append(garbage.status)
            return answers

    try:
        (uid, status, denied), (uid2, status2, slow), garbage = asyncio.run(scenario())
    finally:
        pool.shutdown()
    assert status == 200 and denied["response"] == {"uid": uid, "allowed": False, "status": {
        "code": 403, "reason": "Forbidden", "message": "spec.shots: 200000 shots, backend priced-aer accepts at most 100000"}}
    assert status2 == 200 and slow["response"]["uid"] == uid2 and slow["response"]["allowed"] is True
    assert slow["response"]["warnings"] == ["qgov could not price this in time: the operator decides when it "
                                            "reconciles the object"]
    assert garbage == 400
    assert count("denied", "TooManyShots") == denied_before + 1
    assert count("undecided", "Timeout") == timeouts_before + 1


def test_a_circuit_expanding_past_the_cap_is_denied_with_the_controller_s_message(ledger: Ledger) -> None:
    """The 22-level nested definition (4,194,305 operations) is denied at apply time, before qiskit
    parses it, with the words the job's status would carry."""
    budget(ledger, "100.00")
    lines = ['OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\ngate g0 a { x a; }\n']
    lines += [f"gate g{k} a {{ g{k - 1} a; g{k - 1} a; }}\n" for k in range(1, 23)]
    nested = "".join(lines) + "g22 q[0];\nmeasure q -> c;\n"
    verdict = review(request(job(circuits=[nested])), LedgerSources(ledger))
    assert not verdict.allowed and verdict.reason == "TooManyOperations"
    assert verdict.message == ("spec.circuits[0]: expands to 4194305 operations, above the limit of 1000000 "
                               "(QGOV_MAX_EXPANDED_OPERATIONS)")


def test_reviews_beyond_the_bounded_queue_are_let_through_at_once_as_not_reviewed(ledger: Ledger) -> None:
    """With every slot taken by a review that waits, the next is answered at once (allowed, with the
    busy warning) instead of queueing; once the slots free, reviews are priced again."""
    import asyncio
    import concurrent.futures
    import threading

    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import REGISTRY

    from governance.webhook.server import BUSY_WARNING, make_app

    budget(ledger, "1.00")

    class Stuck(LedgerSources):
        def __init__(self, ledger: Ledger) -> None:
            super().__init__(ledger)
            self.release = threading.Event()

        def backend(self, name: str) -> Backend | Problem | None:
            if name == "stuck":
                self.release.wait(30)
                name = "priced-aer"
            return super().backend(name)

    def busy() -> float:
        return REGISTRY.get_sample_value("qgov_webhook_reviews_total",
                                         {"kind": "QiskitJob", "verdict": "undecided", "reason": "Busy"}) or 0.0

    sources = Stuck(ledger)
    pool = concurrent.futures.ThreadPoolExecutor(2)
    busy_before = busy()

    def sent(spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request(spec)}

    async def scenario() -> tuple[list[Any], Any, Any]:
        async with TestClient(TestServer(make_app(sources, pool, timeout=0.2, max_pending=3))) as client:
            stuck = [await (await client.post("/validate", json=sent(job("stuck")))).json() for _ in range(3)]
            overflow = await (await client.post("/validate", json=sent(job(shots=200000)))).json()
            sources.release.set()
            for _ in range(100):  # the stuck reviews finish in their threads and free their slots
                await asyncio.sleep(0.05)
                again = await (await client.post("/validate", json=sent(job(shots=200000)))).json()
                if not again["response"]["allowed"]:
                    break
            return stuck, overflow, again

    try:
        stuck, overflow, again = asyncio.run(scenario())
    finally:
        sources.release.set()
        pool.shutdown()
    assert all(s["response"]["allowed"] and "could not price this in time" in s["response"]["warnings"][0]
               for s in stuck)
    assert overflow["response"]["allowed"] is True and overflow["response"]["warnings"] == [BUSY_WARNING]
    assert busy() >= busy_before + 1
    assert again["response"]["allowed"] is False
    assert again["response"]["status"]["message"] == "spec.shots: 200000 shots, backend priced-aer accepts at most 100000"
