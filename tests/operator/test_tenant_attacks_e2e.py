"""Nothing a tenant can write decides money (issue 19). Each test is an attack by a namespace member
with only the built-in `edit` ClusterRole bound in its namespace, or by the namespace's
`qgov-executor` ServiceAccount (which such a member can run pods as, or impersonate): a forged job
status, a pod squatting on an attempt's name, a malformed report. Each job must be charged exactly
what the trusted source says (the provider's: here the model of the admitted circuits), never less.

On the real control plane the attacker's calls carry Impersonate-User, so the cluster's RBAC judges
them as it would the tenant's own; the emulator has no RBAC and runs the same attacks unchecked
(the money must hold there too)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from decimal import Decimal
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from governance import providers
from governance.api.specs import parse_backend, parse_job
from governance.budget.costmodel import amount_in_unit
from governance.handlers.pods import executor_pod
from governance.jobs.runnerreport import ENDED, report_body
from executor.attempt import write_result

from .conftest import BELL, NS, G, V, Env
from .test_sessions_e2e import FAST, create_session, session_phase

TENANT = "mallory"
EXECUTOR_SA = f"system:serviceaccount:{NS}:qgov-executor"
MANILA = {"provider": "fake", "device": "fake_manila", "pricing": {"perQPUSecond": "1.60"}}
EXECUTOR_IMAGE = "ghcr.io/qgov/executor:0.1.0"  # the operator's default QGOV_EXECUTOR_IMAGE


def as_user(env: Env, user: str) -> tuple[Any, Any, Any]:
    """(core, custom, api client) that act as `user` (Impersonate-User; the emulator ignores it)."""
    api = kubernetes.config.new_client_from_config(config_file=str(env.cluster.kubeconfig))
    api.default_headers["Impersonate-User"] = user
    return kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api), api


@pytest.fixture
def tenant(env: Env) -> Iterator[tuple[Any, Any]]:
    """The tenant: `edit` in its namespace and nothing else."""
    kubernetes.client.RbacAuthorizationV1Api(env.core.api_client).create_namespaced_role_binding(NS, {
        "metadata": {"name": "mallory-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}]})
    core, custom, api = as_user(env, TENANT)
    yield core, custom
    api.close()


def manila_job(custom: Any, name: str, shots: int = 2000, **spec: Any) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name},
        "spec": {"backend": "fake-manila", "circuits": [BELL], "shots": shots, **spec}})


def trusted_charge(env: Env, job: dict[str, Any], backend: str) -> int:
    """What the trusted source says the job costs: the provider's model of the admitted circuits."""
    obj = env.custom.get_cluster_custom_object(G, V, "qiskitbackends", backend)
    parsed = parse_backend(backend, obj["spec"])
    usage = providers.of(parsed).modelled_usage(parse_job(job["spec"]), parsed)
    return amount_in_unit(usage, parsed.prices, "USD")


def charged(env: Env, name: str) -> int:
    ledger = env.ledger()
    try:
        reservation = ledger.reservation(env.get("qiskitjobs", name)["metadata"]["uid"])
        assert ledger.verify() == []
        assert reservation.state == "settled"
        return int(reservation.actual_micro)
    finally:
        ledger.close()


def refused_upstream(env: Env, call: Any) -> bool:
    """Run `call` as an attacker; True if the API server refused it (403)."""
    try:
        call()
    except ApiException as exc:
        if exc.status == 403:
            return True
        raise
    return False


def test_a_forged_status_report_charges_exactly_the_trusted_figure(env: Env, cluster_kind: str,
                                                                   tenant: tuple[Any, Any]) -> None:
    """Before: PATCH status.report {attempt: 1, exitCode: 0} as qgov-executor ended the job
    Succeeded and charged 0.00 (the operator read usage and money state back from the status)."""
    env.backend("fake-manila", **MANILA)
    env.budget("10.00")
    _, tenant_custom = tenant
    _, executor_custom, executor_api = as_user(env, EXECUTOR_SA)
    job = manila_job(tenant_custom, "bell")
    env.wait(lambda: env.status("bell").get("attempts") == 1, "the first attempt")
    forged = {"status": {"report": {"attempt": 1, "exitCode": 0, "usage": {"qpuSeconds": "0"}},
                         "usedMicro": "0", "countedAttempt": 1, "paidBySession": True, "budget": None,
                         "qpuSeconds": "0"}}

    def forge(custom: Any) -> None:
        custom.patch_namespaced_custom_object_status(G, V, NS, "qiskitjobs", "bell", forged)

    # neither the executor's ServiceAccount nor `edit` may write a job's status any more; on the
    # emulator (no RBAC) the forgery lands, and the money must hold all the same
    executor_refused = refused_upstream(env, lambda: forge(executor_custom))
    tenant_refused = refused_upstream(env, lambda: forge(tenant_custom))
    if cluster_kind == "upstream":
        assert executor_refused, "qgov-executor could still write qiskitjobs/status"
        assert tenant_refused, "edit could write qiskitjobs/status"
    status = env.wait_terminal(["bell"])["bell"]
    expected = trusted_charge(env, job, "fake-manila")
    assert expected == 2_418_125  # 1.511328 modelled QPU-seconds at 1.60 USD, rounded up to the micro-dollar
    assert status["phase"] == "Succeeded", status
    assert charged(env, "bell") == expected
    assert status["usedMicro"] == str(expected) and status["budget"] == NS, status
    executor_api.close()


def test_a_pod_squatting_on_the_attempts_name_is_not_the_attempt(env: Env, cluster_kind: str,
                                                                 tenant: tuple[Any, Any]) -> None:
    """Before: a pod `<job>-run-1` made first by the tenant, with the operator's labels and a command
    that writes {"usage": {}} to its termination log, was taken as the attempt: Succeeded, 0.00.
    On the real server the admission policy refuses the tenant's pod; the squatter is then made by
    an admin (as on a cluster without qgov's policies), and the operator must still not take it."""
    env.backend("fake-manila", **MANILA)
    env.budget("10.00")
    tenant_core, tenant_custom = tenant
    env.operator.stop()  # the tenant gets there first: the job is not admitted yet
    job = manila_job(tenant_custom, "bell")
    squatter = executor_pod(job, 1, EXECUTOR_IMAGE)  # exactly what the operator would create ...
    # `edit` may not set blockOwnerDeletion on a QiskitJob (OwnerReferencesPermissionEnforcement): without
    squatter["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = False
    container = squatter["spec"]["containers"][0]
    container["command"] = ["python", "-c", "import json, os; open(os.environ['QGOV_TERMINATION_LOG'], 'w')"
                                            ".write(json.dumps({'usage': {}}))"]  # ... reporting no usage
    if cluster_kind == "upstream":
        with pytest.raises(ApiException) as refused:
            tenant_core.create_namespaced_pod(NS, squatter)
        assert refused.value.status == 403 and "qgov-executor-pods" in str(refused.value.body), refused.value.body
        env.core.create_namespaced_pod(NS, squatter)
    else:
        tenant_core.create_namespaced_pod(NS, squatter)
    env.wait(lambda: env.core.read_namespaced_pod("bell-run-1", NS).status.phase == "Succeeded", "the squatter")
    squatter_uid = env.core.read_namespaced_pod("bell-run-1", NS).metadata.uid
    env.operator.start()
    status = env.wait_terminal(["bell"])["bell"]
    assert status["phase"] == "Succeeded", status
    assert charged(env, "bell") == trusted_charge(env, job, "fake-manila") == 2_418_125
    events = env.core.list_namespaced_event(NS, field_selector="involvedObject.name=bell").items
    taken = [e for e in events if e.reason == "PodNameTaken"]
    assert taken and taken[0].type == "Warning" and "did not create" in taken[0].message, [e.reason for e in events]
    ran = env.core.read_namespaced_pod("bell-run-1", NS)
    assert ran.metadata.uid != squatter_uid  # the operator's own pod ran the attempt
    result = env.core.read_namespaced_config_map("bell-result", NS).data["result.json"]
    assert '"counts"' in result


@pytest.mark.operator_env(**FAST)
def test_a_malformed_runner_report_ends_the_attempt_and_charges_the_trusted_figure(
        env: Env, cluster_kind: str, tenant: tuple[Any, Any]) -> None:
    """Before: a non-numeric usage value in a report was retried every 60 s forever. On the real
    server the policy refuses a report from qgov-executor without its runner pod; the malformed
    report is then written by an admin (as a runner with a bug would write it)."""
    env.backend("fake-manila", **MANILA)
    env.budget("10.00")
    create_session(env, "local", backend="fake-manila", mode="batch", idleTimeout=120)
    session_phase(env, "local", "Open")
    env.wait(lambda: env.core.read_namespaced_pod("local-runner", NS).status.phase == "Running", "the runner")
    _, tenant_custom = tenant
    executor_core, _, executor_api = as_user(env, EXECUTOR_SA)
    env.operator.stop()  # the forged report is there before the attempt is even started
    job = manila_job(tenant_custom, "bell", session="local")
    forged = report_body(job, 1, ENDED, "local-runner", {"usage": {"qpuSeconds": "lots", "shots": "many"}}, 0)
    if cluster_kind == "upstream":
        assert refused_upstream(env, lambda: executor_core.create_namespaced_config_map(NS, forged))
        env.core.create_namespaced_config_map(NS, forged)
    else:
        executor_core.create_namespaced_config_map(NS, forged)  # the runner's own channel, as its identity
    started = time.monotonic()
    env.operator.start()
    status = env.wait_terminal(["bell"], timeout=60)["bell"]
    assert time.monotonic() - started < 60  # no retry loop
    assert status["phase"] == "Succeeded" and status["attempts"] == 1, status
    assert "usage report is malformed" in status["message"] and "charged from" in status["message"], status
    expected = trusted_charge(env, job, "fake-manila")
    assert charged(env, "bell") == expected == 2_418_125
    assert Decimal(status["qpuSeconds"]) == Decimal("1.511328")
    executor_api.close()


@pytest.mark.parametrize("cluster_kind", ["upstream"])  # admission plugins (LimitRanger) are the real server's
def test_a_refused_pod_create_stalls_the_job_with_the_servers_reason_and_holds_the_money(env: Env) -> None:
    """Any refusal of the executor pod other than 409 (here a LimitRange no executor pod meets; Pod
    Security admission refuses the same way) is said on the job, not retried blindly in silence."""
    env.budget("5.00")
    env.core.create_namespaced_limit_range(NS, {"metadata": {"name": "huge-only"}, "spec": {"limits": [
        {"type": "Container", "min": {"memory": "64Gi"}}]}})
    env.job("blocked")
    status = env.wait(lambda: (lambda s: s if any(c["type"] == "Stalled" and c["status"] == "True"
                                                  for c in s.get("conditions") or []) else None)(env.status("blocked")),
                      "the Stalled condition")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "Forbidden" and "refused the executor pod (HTTP 403 Forbidden)" in stalled["message"]
    assert "64Gi" in stalled["message"] and "money held" in stalled["message"], stalled
    events = env.core.list_namespaced_event(NS, field_selector="involvedObject.name=blocked").items
    assert [e.type for e in events if e.reason == "Forbidden"] == ["Warning"]  # once, not per retry
    ledger = env.ledger()
    assert ledger.reservation(env.get("qiskitjobs", "blocked")["metadata"]["uid"]).state == "held"
    ledger.close()
    env.core.delete_namespaced_limit_range("huge-only", NS)  # fixed: the retry with backoff creates the pod
    assert env.wait_terminal(["blocked"], timeout=180)["blocked"]["phase"] == "Succeeded"


def kill_after(env: Env, job: str, *, wrote_result: bool) -> None:
    """The kubelet's part, played by the test (no pod runs): attempt 1's executor wrote the job's
    result, or did not, and then its container was killed (a member's `kubectl exec ... kill 1`, or
    a deleted pod): exit 137, Failed, nothing in its termination log."""
    env.wait(lambda: env.core.read_namespaced_pod(f"{job}-run-1", NS), f"{job}'s executor pod")
    if wrote_result:  # what the executor writes, written by its own code (an admin's client here)
        write_result(SimpleNamespace(CoreV1Api=lambda: env.core), env.get("qiskitjobs", job),
                     {"metadata": {"attempt": 1}, "counts": [{"00": 1000, "11": 1000}]}, attempt=1)
    env.core.patch_namespaced_pod_status(f"{job}-run-1", NS, {"status": {"phase": "Failed", "containerStatuses": [
        {"name": "executor", "ready": False, "restartCount": 0, "image": EXECUTOR_IMAGE, "imageID": "",
         "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}})


@pytest.mark.no_pod_runner
def test_an_executor_killed_after_it_wrote_its_result_is_charged_and_one_killed_before_is_not(
        env: Env, tenant: tuple[Any, Any]) -> None:
    """Before: a failed `fake`/`aer` attempt was charged nothing, so a member who killed its executor
    (or deleted its pod) once the result was written had a Failed job, with its result, for free.
    A result ConfigMap only that attempt's executor can create is the trusted sign the work ran."""
    env.backend("fake-manila", **MANILA)
    env.budget("10.00")
    _, tenant_custom = tenant
    job = manila_job(tenant_custom, "done-then-killed", backoffLimit=0)
    manila_job(tenant_custom, "killed-early", backoffLimit=0)
    kill_after(env, "done-then-killed", wrote_result=True)
    kill_after(env, "killed-early", wrote_result=False)
    statuses = env.wait_terminal(["done-then-killed", "killed-early"])
    assert [statuses[n]["phase"] for n in ("done-then-killed", "killed-early")] == ["Failed", "Failed"], statuses
    expected = trusted_charge(env, job, "fake-manila")
    assert expected == 2_418_125
    assert charged(env, "done-then-killed") == expected
    assert statuses["done-then-killed"]["usedMicro"] == str(expected)
    assert charged(env, "killed-early") == 0  # it never produced anything: an honest failure costs nothing
    events = env.core.list_namespaced_event(NS, field_selector="involvedObject.name=done-then-killed").items
    assert any("failed after it wrote its result" in (e.message or "") for e in events), [e.message for e in events]
    ledger = env.ledger()
    assert ledger.balance(NS, NS).spent_micro == expected and ledger.balance(NS, NS).held_micro == 0
    ledger.close()
