"""A QiskitJob applied to the dev cluster is validated, priced, reserved, run, settled and reported."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from executor.attempt import read_result
from governance.budget.costview import aggregate, parse_cost_window

from .conftest import BELL, NS, Env

USD = 1_000_000


def kubectl(env: Env, *args: str) -> str:
    binary = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    out = subprocess.run([binary, "--kubeconfig", str(env.cluster.kubeconfig), *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_exactly_the_jobs_that_fit_run_and_the_rest_are_refused(env: Env) -> None:
    env.budget("1.00")
    names = [f"bell-{i}" for i in range(5)]
    for name in names:
        env.job(name, shots=2000)
    statuses = env.wait_terminal(names)
    succeeded = [n for n, s in statuses.items() if s["phase"] == "Succeeded"]
    refused = [n for n, s in statuses.items() if s["phase"] == "Refused"]
    assert len(succeeded) == 3 and len(refused) == 2  # 3 × 0.30 fit in 1.00; a 4th would need 1.20
    for name in refused:
        m = re.fullmatch(r"exceeded budget team-a/team-a: requested 0\.30 USD, spent (\d+\.\d+) USD, "
                         r"reserved (\d+\.\d+) USD, limit 1\.00 USD", statuses[name]["message"])
        assert m, statuses[name]["message"]
        assert Decimal(m[1]) + Decimal(m[2]) + Decimal("0.30") > Decimal("1.00")  # the refusal was justified
        failed = next(c for c in statuses[name]["conditions"] if c["type"] == "Failed")
        assert failed["status"] == "True" and failed["reason"] == "BudgetExceeded"
    # correct results: a Bell pair's counts split near 50/50 (5 sigma of a binomial with n=2000)
    for name in succeeded:
        assert statuses[name]["actualCost"] == "0.30" and statuses[name]["estimatedCost"] == "0.30"
        counts = read_result(env.core, NS, statuses[name]["resultConfigMap"])["circuits"][0]["counts"]
        assert set(counts) <= {"00", "11", "01", "10"} and sum(counts.values()) == 2000
        assert abs(counts.get("00", 0) - 1000) < 5 * 22.4 and counts.get("01", 0) + counts.get("10", 0) == 0
    # no pod was ever created for a refused job
    pods = {p.metadata.name for p in env.core.list_namespaced_pod(NS).items}
    assert pods == {f"{n}-run-1" for n in succeeded}
    # the budget's status, kubectl get and kubectl describe agree with the ledger to the micro-unit
    env.wait(lambda: env.get("qiskitbudgets", NS)["status"].get("spent") == "0.90", "budget status")
    ledger = env.ledger()
    balance = ledger.balance(NS, NS)
    assert (balance.spent_micro, balance.held_micro) == (900_000, 0) and ledger.verify() == []
    ledger.close()
    table = kubectl(env, "get", "qiskitbudgets", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "LIMIT", "SPENT", "RESERVED", "REMAINING", "UNIT", "AGE"]
    assert table[1].split()[:6] == ["team-a", "1.00", "0.90", "0.00", "0.10", "USD"]
    described = kubectl(env, "describe", "qiskitbudget", NS, "-n", NS)
    assert re.search(r"\n  Spent:\s+0\.90\n", described) and re.search(r"\n  Remaining:\s+0\.10\n", described)
    assert "Warning  JobRefused" in described and "exceeded budget team-a/team-a" in described
    assert "Succeeded:   3" in described and "Refused:     2" in described
    jobs_table = kubectl(env, "get", "qjob", "-n", NS).splitlines()
    assert jobs_table[0].split() == ["NAME", "PHASE", "BACKEND", "EST", "COST", "AGE"]


def test_spend_is_attributed_by_the_labels_a_job_had_when_admitted(env: Env) -> None:
    """Costs by label (the cost API's aggregate=label:KEY, FOCUS Tags) come from the job's labels at
    admission, recorded in the ledger: relabelling a job afterwards moves none of its cost."""
    env.budget("2.00")
    env.job("q1", shots=2000, labels={"team": "quantum", "example.com/cost-center": "cc-7"})
    env.job("q2", shots=2000, labels={"team": "quantum"})
    env.job("c1", shots=2000, labels={"team": "chemistry"})
    env.job("plain", shots=2000)
    statuses = env.wait_terminal(["q1", "q2", "c1", "plain"])
    assert {s["phase"] for s in statuses.values()} == {"Succeeded"}
    env.custom.patch_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitjobs", "c1",
                                              {"metadata": {"labels": {"team": "quantum"}}})
    ledger = env.ledger()
    window = parse_cost_window("24h")
    assert [(x.name, x.jobs, x.cost) for x in aggregate(ledger.charges(window, [NS]), "label:team")] == [
        ("", 1, 300_000), ("chemistry", 1, 300_000), ("quantum", 2, 600_000)]
    terms = ledger.job_terms(env.get("qiskitjobs", "q1")["metadata"]["uid"])
    assert terms is not None and dict(terms.labels) == {"team": "quantum", "example.com/cost-center": "cc-7"}
    ledger.close()


def test_the_estimator_returns_expectation_values(env: Env) -> None:
    env.budget("5.00")
    ghz = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[3] q;\nh q[0];\ncx q[0], q[1];\ncx q[1], q[2];\n'
    env.job("ghz", primitive="estimator", circuits=[ghz], observables=[["ZZI", "XXX", "ZII"]], shots=4000)
    status = env.wait_terminal(["ghz"])["ghz"]
    assert status["phase"] == "Succeeded", status
    result = read_result(env.core, NS, status["resultConfigMap"])["circuits"][0]
    zz, xxx, z = result["expectationValues"]
    assert abs(zz - 1) < 0.1 and abs(xxx - 1) < 0.1 and abs(z) < 0.1  # GHZ: <ZZI>=<XXX>=1, <ZII>=0
    assert len(result["stds"]) == 3


def test_a_burst_of_100_jobs_never_admits_beyond_the_limit(env: Env) -> None:
    env.budget("1.50")  # 5 jobs of 0.30
    names = [f"burst-{i:03d}" for i in range(100)]
    for name in names:
        env.job(name, shots=100)
    statuses = env.wait_terminal(names, timeout=300)
    phases = [s["phase"] for s in statuses.values()]
    assert phases.count("Succeeded") == 5 and phases.count("Refused") == 95
    ledger = env.ledger()
    balance = ledger.balance(NS, NS)
    assert balance.spent_micro + balance.held_micro == 1_500_000 and ledger.verify() == []
    ledger.close()


def test_queued_jobs_run_in_order_when_funds_free(env: Env) -> None:
    env.budget("0.60", enforcement="queue")
    for name in ("first", "second", "third", "fourth", "fifth"):
        env.job(name, shots=100)
        env.wait(lambda n=name: env.status(n).get("phase"), f"{name} decided")
    env.wait_terminal(["first", "second"])
    assert [env.status(n)["phase"] for n in ("third", "fourth", "fifth")] == ["Queued"] * 3
    assert "queued for budget team-a/team-a (position 1)" in env.status("third")["message"]
    env.custom.delete_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitjobs", "fourth")  # cancelled
    budget = env.get("qiskitbudgets", NS)
    budget["spec"]["limit"] = "1.20"  # raising the limit frees 0.60: third and fifth, in order
    env.custom.replace_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitbudgets", NS, budget)
    statuses = env.wait_terminal(["third", "fifth"])
    assert statuses["third"]["phase"] == statuses["fifth"]["phase"] == "Succeeded"
    ledger = env.ledger()
    third, fifth = (ledger.reservation(env.get("qiskitjobs", n)["metadata"]["uid"]) for n in ("third", "fifth"))
    assert third.admitted_at <= fifth.admitted_at and third.queue_seq < fifth.queue_seq
    balance = ledger.balance(NS, NS)
    assert balance.spent_micro == 1_200_000 and balance.held_micro == 0 and ledger.verify() == []
    ledger.close()


def test_a_namespace_without_a_budget_is_told_how_to_create_one(env: Env) -> None:
    env.job("orphan")
    status = env.wait_terminal(["orphan"])["orphan"]
    assert status["phase"] == "Refused"
    assert "has no QiskitBudget" in status["message"] and "kind: QiskitBudget" in status["message"]
    assert env.core.list_namespaced_pod(NS).items == []


@pytest.mark.parametrize("limit", ["0.29"])
def test_max_cost_and_budget_refusals_charge_nothing(env: Env, limit: str) -> None:
    env.budget(limit)
    env.job("too-dear")
    env.job("capped", maxCost="0.10")
    statuses = env.wait_terminal(["too-dear", "capped"])
    assert statuses["too-dear"]["phase"] == "Refused"
    assert statuses["capped"]["phase"] == "Refused"
    assert statuses["capped"]["message"] == "estimated 0.30 USD is above spec.maxCost 0.10 USD"
    ledger = env.ledger()
    assert ledger.balance(NS, NS).held_micro == 0 and ledger.balance(NS, NS).spent_micro == 0
    ledger.close()


def test_bell_circuit_text_is_the_sample(env: Env) -> None:
    """The samples the README's demo applies parse and price (guards the demo against drift)."""
    import yaml

    from governance.assessment import Estimate, assess
    from governance.api.specs import parse_backend, parse_job

    root = Path(__file__).resolve().parents[2] / "samples"
    backends = {b["metadata"]["name"]: b for b in yaml.safe_load_all((root / "backends.yaml").read_text())}
    for job in yaml.safe_load_all((root / "jobs.yaml").read_text()):
        backend = parse_backend(job["spec"]["backend"], backends[job["spec"]["backend"]]["spec"])
        assert isinstance(assess(parse_job(job["spec"]), backend, "USD"), Estimate), job["metadata"]["name"]
    assert BELL.count("measure") == 1


def test_deleting_a_budget_refuses_its_queue_and_new_work(env: Env) -> None:
    env.budget("0.30", enforcement="queue")
    env.job("runs", shots=100)
    env.wait(lambda: env.status("runs").get("phase"), "runs decided")
    env.job("waits", shots=100)
    env.wait(lambda: env.status("waits").get("phase") == "Queued", "waits queued")
    env.wait_terminal(["runs"])
    env.custom.delete_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitbudgets", NS)
    waits = env.wait_terminal(["waits"])["waits"]
    assert waits["phase"] == "Refused"
    assert waits["message"] == "budget team-a/team-a was deleted while this job waited in its queue"
    assert next(c for c in waits["conditions"] if c["type"] == "Failed")["reason"] == "BudgetDeleted"
    env.job("after", shots=100)
    after = env.wait_terminal(["after"])["after"]
    assert after["phase"] == "Refused" and "has no QiskitBudget" in after["message"]
    ledger = env.ledger()
    assert ledger.open_reservations() == [] and ledger.balance(NS, NS).spent_micro == 300_000
    assert ledger.verify() == []
    ledger.close()


def test_a_job_with_a_name_longer_than_a_label_runs_and_is_charged(env: Env) -> None:
    """Labels hold 63 characters: the executor pod's job label is cut (and kept valid), and the
    operator finds its job by the pod's owner reference."""
    name = "a" * 62 + "-with-a-name-longer-than-any-label-value"
    env.budget("1.00")
    env.job(name)
    status = env.wait_terminal([name])[name]
    assert status["phase"] == "Succeeded" and status["actualCost"] == "0.30", status["message"]
    pod = env.core.read_namespaced_pod(f"{name}-run-1", NS)
    assert pod.metadata.labels["qgov.dev/job"] == "a" * 62


def test_a_budget_gives_its_namespace_the_executor_identity(env: Env) -> None:
    """Executor pods run as ServiceAccount qgov-executor: the operator makes it, and its RoleBinding,
    where a budget appears (a real API server refuses pods whose account does not exist)."""
    import kubernetes

    env.budget("1.00")
    rbac = kubernetes.client.RbacAuthorizationV1Api(env.core.api_client)
    binding = env.wait(lambda: rbac.read_namespaced_role_binding("qgov-executor", NS), "the RoleBinding")
    assert binding.role_ref.kind == "ClusterRole" and binding.role_ref.name == "qgov-executor"
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", "qgov-executor", NS)]
    assert env.core.read_namespaced_service_account("qgov-executor", NS).metadata.labels == {
        "app.kubernetes.io/managed-by": "qgov"}
    assert not [e for e in env.core.list_namespaced_event(NS).items if e.reason == "ExecutorIdentityFailed"]
