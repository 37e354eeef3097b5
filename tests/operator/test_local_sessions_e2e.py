"""Local sessions: one long-lived runner pod runs a session's aer jobs in turn."""

from __future__ import annotations

import pytest

from .conftest import NS, G, V, Env
from .test_sessions_e2e import FAST, create_session, session_phase


def pods(env: Env) -> list[str]:
    return sorted(p.metadata.name for p in env.core.list_namespaced_pod(NS).items)


@pytest.mark.operator_env(**FAST)
def test_a_local_session_runs_its_jobs_in_one_runner_pod_charges_each_and_stops_when_idle(env: Env) -> None:
    env.budget("5.00")
    create_session(env, "warm", backend="priced-aer", mode="batch", idleTimeout=3)
    session_phase(env, "warm", "Open")
    names = [f"warm-{i}" for i in range(8)]
    for name in names:
        env.job(name, session="warm", shots=500)
    statuses = env.wait_terminal(names)
    assert all(s["phase"] == "Succeeded" and s["actualCost"] == "0.30" and s["attempts"] == 1
               for s in statuses.values()), statuses
    assert all(s["podName"] == "warm-runner" for s in statuses.values()), {n: (s["podName"], s.get("startTime")) for n, s in statuses.items() if s["podName"] != "warm-runner"}
    assert pods(env) == ["warm-runner"]  # no pod per job
    # the session's jobs carry its label: `kubectl get qjob -l qgov.dev/session=warm` lists them
    labelled = env.custom.list_namespaced_custom_object(G, V, NS, "qiskitjobs", label_selector="qgov.dev/session=warm")
    assert sorted(j["metadata"]["name"] for j in labelled["items"]) == sorted(names)
    result = env.core.read_namespaced_config_map("warm-3-result", NS).data["result.json"]
    assert '"session":"warm"' in result and '"counts"' in result
    closed = session_phase(env, "warm", "Closed")["status"]
    assert closed["jobs"] == 8 and closed["cost"] == "2.40"
    env.wait(lambda: pods(env) == [] or None, "the runner pod to go")
    ledger = env.ledger()
    assert ledger.balance(NS, NS).spent_micro == 2_400_000 and ledger.verify() == []
    ledger.close()


@pytest.mark.operator_env(**FAST)
def test_a_local_sessions_runner_that_dies_is_replaced_and_no_job_is_lost_or_charged_twice(env: Env) -> None:
    env.budget("5.00")
    create_session(env, "fragile", backend="priced-aer", mode="batch", idleTimeout=60)
    session_phase(env, "fragile", "Open")
    env.wait(lambda: env.core.read_namespaced_pod("fragile-runner", NS).status.phase == "Running", "the runner")
    first = env.core.read_namespaced_pod("fragile-runner", NS).metadata.uid
    env.core.delete_namespaced_pod("fragile-runner", NS)  # the node went away, say
    names = [f"orphan-{i}" for i in range(3)]
    for name in names:
        env.job(name, session="fragile", shots=500, backoffLimit=0)
    statuses = env.wait_terminal(names)
    assert all(s["phase"] == "Succeeded" for s in statuses.values()), statuses
    assert env.core.read_namespaced_pod("fragile-runner", NS).metadata.uid != first
    session = env.get("qiskitsessions", "fragile")["status"]
    assert session["runnerRestarts"] == 1 and session["phase"] == "Open"
    events = env.core.list_namespaced_event(NS, field_selector="involvedObject.name=fragile").items
    assert any(e.reason == "RunnerRestarted" for e in events)
    ledger = env.ledger()
    assert ledger.balance(NS, NS).spent_micro == 900_000 and ledger.balance(NS, NS).held_micro == 0
    assert ledger.verify() == []
    ledger.close()
