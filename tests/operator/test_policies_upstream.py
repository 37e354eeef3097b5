"""Cluster policy on the real control plane (kube-apiserver's own PodSecurity and
ValidatingAdmissionPolicy admission, real RBAC): a job runs in a namespace that enforces the
"restricted" Pod Security profile, and a tenant who holds only the built-in `edit` role in its
namespace (a client certificate of its own; `edit` lets it act as the namespace's ServiceAccounts,
which it does by impersonation) can use qgov but cannot get around it: each door is refused with the
admission policy's message (operator/manifests/policies.yaml)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from executor.attempt import read_result

from .conftest import BELL, NS, Env, G, Operator, V

TENANT = "alice"
OPERATOR = "system:serviceaccount:qgov-system:qgov-operator"
EXECUTOR = f"system:serviceaccount:{NS}:qgov-executor"
PLAIN_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
PLAIN_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@dataclass
class Cluster(Env):
    upstream: Any = None
    admin: Any = None
    tenant: Any = None  # alice's ApiClient

    def as_tenant(self, impersonate: str | None = None) -> Any:
        """alice's client; with `impersonate`, alice acting as that user (a ServiceAccount of her namespace)."""
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.upstream.control_plane.client_kubeconfig(
            "alice", TENANT)), client_configuration=config)
        api = kubernetes.client.ApiClient(config)
        if impersonate:
            api.set_default_header("Impersonate-User", impersonate)
        return api

    def as_operator(self) -> Any:
        return kubernetes.config.new_client_from_config(config_file=str(self.upstream.operator_kubeconfig()))


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    """The API server's message for a call it must refuse with 403."""
    with pytest.raises(ApiException) as refused:
        call(*args, **kwargs)
    assert refused.value.status == 403, (refused.value.status, refused.value.body)
    return str(json.loads(refused.value.body)["message"])


def plain_pod(name: str, **spec: Any) -> dict[str, Any]:
    """A pod "restricted" admits (the tenant's own kind of pod)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **spec.pop("metadata", {})},
            "spec": {"securityContext": PLAIN_POD_SECURITY, "restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "ghcr.io/qgov/executor:0.1.0", "command": ["true"],
                                     "securityContext": PLAIN_CONTAINER_SECURITY}], **spec}}


@pytest.fixture
def cluster(upstream_cluster: Any, tmp_path: Path) -> Iterator[Cluster]:
    upstream = upstream_cluster
    upstream.reset((NS,))
    admin = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
    core, custom = kubernetes.client.CoreV1Api(admin), kubernetes.client.CustomObjectsApi(admin)
    core.create_namespace({"metadata": {"name": NS, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    # alice may do in team-a what the built-in `edit` role says, and nothing else
    kubernetes.client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(NS, {
        "metadata": {"name": "alice-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}]})
    operator = Operator(upstream, f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "operator.log",
                        kubeconfig=upstream.operator_kubeconfig())
    tenant = None
    try:
        operator.start()
        env = Cluster(upstream, core, custom, operator, operator.database_url, upstream=upstream, admin=admin)
        env.tenant = tenant = env.as_tenant()
        env.backend("priced-aer", pricing={"perTask": "0.30"})
        env.budget("1.00")
        yield env
    finally:
        operator.stop()
        upstream.reset((NS,))
        admin.close()
        if tenant is not None:
            tenant.close()


def succeeded_job(env: Cluster, name: str = "bell", *, as_tenant: bool = False) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(env.tenant) if as_tenant else env.custom
    custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name},
        "spec": {"backend": "priced-aer", "circuits": [BELL], "shots": 200}})
    status = env.wait_terminal([name])[name]
    assert status["phase"] == "Succeeded", json.dumps(status)
    return status


def test_a_job_runs_where_the_restricted_pod_security_profile_is_enforced(cluster: Cluster) -> None:
    env = cluster
    # the profile is enforced for real: the executor pod qgov made before (runAsNonRoot/runAsUser only) is refused
    old = plain_pod("old-executor", securityContext={"runAsNonRoot": True, "runAsUser": 10001})
    old["spec"]["containers"][0].pop("securityContext")
    message = refusal(env.core.create_namespaced_pod, NS, old)
    assert 'violates PodSecurity "restricted:latest"' in message and "seccompProfile" in message, message

    status = succeeded_job(env)
    assert status["actualCost"] == "0.30"
    assert sum(read_result(env.core, NS, status["resultConfigMap"])["circuits"][0]["counts"].values()) == 200
    pod = env.core.read_namespaced_pod(status["podName"], NS)
    assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    [container] = pod.spec.containers
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]


def test_a_tenant_with_edit_uses_qgov_through_the_aggregated_roles(cluster: Cluster) -> None:
    env = cluster
    custom = kubernetes.client.CustomObjectsApi(env.tenant)
    status = succeeded_job(env, "alices", as_tenant=True)  # `edit` creates QiskitJobs (qgov-edit)
    assert status["actualCost"] == "0.30"
    assert custom.get_namespaced_custom_object(G, V, NS, "qiskitbudgets", NS)["spec"]["limit"] == "1.00"  # qgov-view
    # a budget is the platform's: `edit` neither changes nor creates one
    message = refusal(custom.patch_namespaced_custom_object, G, V, NS, "qiskitbudgets", NS, {"spec": {"limit": "99"}})
    assert 'cannot patch resource "qiskitbudgets"' in message
    custom.delete_namespaced_custom_object(G, V, NS, "qiskitjobs", "alices")  # and deletes their own jobs


def test_a_tenant_cannot_make_executor_pods(cluster: Cluster) -> None:
    env = cluster
    core = kubernetes.client.CoreV1Api(env.tenant)
    # an ordinary pod is fine (server-side dry run: admission runs, nothing is stored)
    core.create_namespaced_pod(NS, plain_pod("mine"), dry_run="All")
    for label in ("app.kubernetes.io/managed-by", "qgov.dev/job", "qgov.dev/job-uid", "qgov.dev/attempt",
                  "qgov.dev/session-runner"):
        pod = plain_pod("fake-run-1", metadata={"labels": {label: "qgov"}})
        message = refusal(core.create_namespaced_pod, NS, pod)
        assert message.endswith(
            f"pod fake-run-1: only the qgov operator ({OPERATOR}) may create or change pods labelled {label} "
            f"(qgov executor pods, whose reports qgov charges); refused for {TENANT}"), message
    message = refusal(core.create_namespaced_pod, NS, plain_pod("as-executor", serviceAccountName="qgov-executor"))
    assert f"pod as-executor: only the qgov operator ({OPERATOR}) may run pods as the ServiceAccount qgov-executor" \
           in message and f"refused for {TENANT}" in message, message
    # nor through a workload controller: the ReplicaSet's pods are refused with the same message
    apps = kubernetes.client.AppsV1Api(env.tenant)
    template = plain_pod("x", metadata={"labels": {"app": "sneaky"}}, serviceAccountName="qgov-executor")
    template["spec"]["restartPolicy"] = "Always"
    apps.create_namespaced_replica_set(NS, {"metadata": {"name": "sneaky"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "sneaky"}},
        "template": {"metadata": template["metadata"], "spec": template["spec"]}}})
    failure = env.wait(lambda: next((c for c in (apps.read_namespaced_replica_set("sneaky", NS).status.conditions or [])
                                     if c.type == "ReplicaFailure"), None), "the ReplicaSet's failure", 60)
    assert "may run pods as the ServiceAccount qgov-executor" in failure.message, failure.message
    assert env.core.list_namespaced_pod(NS, label_selector="app=sneaky").items == []
    # and an executor pod qgov made cannot be relabelled or changed by the tenant
    status = succeeded_job(env)
    message = refusal(core.patch_namespaced_pod, status["podName"], NS, {"metadata": {"labels": {"x": "y"}}})
    assert f"pod {status['podName']}: only the qgov operator" in message, message


def rbac_allows(env: Cluster, user: str, resource: str, verb: str = "patch") -> bool:
    review = kubernetes.client.AuthorizationV1Api(env.admin).create_subject_access_review({
        "spec": {"user": user, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"],
                 "resourceAttributes": {"group": G, "resource": resource.split("/")[0],
                                        "subresource": resource.split("/")[1], "verb": verb, "namespace": NS}}})
    return bool(review.status.allowed)


def test_only_the_operator_writes_qgovs_status(cluster: Cluster) -> None:
    env = cluster
    succeeded_job(env)
    env.custom.create_namespaced_custom_object(G, V, NS, "qiskitsessions", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitSession", "metadata": {"name": "s"},
        "spec": {"backend": "priced-aer", "mode": "batch"}})
    patch = {"status": {"phase": "Succeeded", "actualCost": "0.00"}}
    for plural, kind, name in (("qiskitjobs", "QiskitJob", "bell"), ("qiskitsessions", "QiskitSession", "s")):
        # alice herself: `edit` grants no status at all (RBAC refuses)
        custom = kubernetes.client.CustomObjectsApi(env.tenant)
        message = refusal(custom.patch_namespaced_custom_object_status, G, V, NS, plural, name, patch)
        assert f'cannot patch resource "{plural}/status"' in message, message
        # alice as the namespace's qgov-executor (`edit` may act as any ServiceAccount of its namespace)
        as_executor = env.as_tenant(impersonate=EXECUTOR)
        custom = kubernetes.client.CustomObjectsApi(as_executor)
        message = refusal(custom.patch_namespaced_custom_object_status, G, V, NS, plural, name, patch)
        as_executor.close()
        if rbac_allows(env, EXECUTOR, f"{plural}/status"):  # RBAC lets it through: the policy refuses
            assert message.endswith(f"the status of {kind} {NS}/{name} is written only by the qgov operator "
                                    f"({OPERATOR}): qgov charges and reports from it; refused for {EXECUTOR}"), message
        else:
            assert f'cannot patch resource "{plural}/status"' in message, message
    assert env.status("bell")["actualCost"] == "0.30"


def test_the_operator_binds_only_qgov_executor_to_qgov_executor(cluster: Cluster) -> None:
    env = cluster
    env.wait(lambda: env.core.read_namespaced_service_account("qgov-executor", NS), "the executor identity")
    operator = env.as_operator()
    rbac, core = kubernetes.client.RbacAuthorizationV1Api(operator), kubernetes.client.CoreV1Api(operator)
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"}
    alice = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}]
    # its own ClusterRole: RBAC's escalation check lets it (it holds every rule it would grant)
    message = refusal(rbac.create_namespaced_role_binding, NS, {
        "metadata": {"name": "escalate"}, "roleRef": {**role_ref, "name": "qgov-operator"}, "subjects": alice})
    assert message.endswith(f"RoleBinding {NS}/escalate: the qgov operator may bind only the ClusterRole "
                            "qgov-executor, to the ServiceAccount qgov-executor of its namespace; not ClusterRole "
                            f"qgov-operator to User {TENANT}"), message
    # the role it may bind, to anyone else
    message = refusal(rbac.create_namespaced_role_binding, NS, {
        "metadata": {"name": "executor-for-alice"}, "roleRef": {**role_ref, "name": "qgov-executor"}, "subjects": alice})
    assert "not ClusterRole qgov-executor to User alice" in message, message
    message = refusal(core.create_namespaced_service_account, NS, {"metadata": {"name": "another"}})
    assert message.endswith(f"ServiceAccount {NS}/another: the qgov operator may create only the ServiceAccount "
                            "qgov-executor"), message
    operator.close()
    # what it made itself passed
    binding = kubernetes.client.RbacAuthorizationV1Api(env.admin).read_namespaced_role_binding("qgov-executor", NS)
    assert binding.role_ref.name == "qgov-executor"


def test_qgovs_secrets_and_result_configmaps_are_qgovs(cluster: Cluster) -> None:
    env = cluster
    status = succeeded_job(env)  # the executor pod wrote its result ConfigMap (its own job's: allowed)
    result = status["resultConfigMap"]
    core = kubernetes.client.CoreV1Api(env.tenant)
    forged = {"data": {"result.json": json.dumps({"circuits": [{"counts": {"11": 1}}]})}}
    expected = (f"ConfigMap {NS}/{result} belongs to qgov (labelled qgov.dev/job): only the qgov operator "
                f"({OPERATOR}) and the executor pod of its job may create, change or delete it; refused for ")
    assert refusal(core.patch_namespaced_config_map, result, NS, forged).endswith(expected + TENANT)
    assert refusal(core.delete_namespaced_config_map, result, NS).endswith(expected + TENANT)
    # impersonating qgov-executor carries no pod: it may not change a result (RBAC: the executor only
    # creates ConfigMaps), nor create one of the job's result names (the policy: no pod, no result)
    as_executor = env.as_tenant(impersonate=EXECUTOR)
    executor_core = kubernetes.client.CoreV1Api(as_executor)
    replaced = env.core.read_namespaced_config_map(result, NS)
    replaced.data = forged["data"]
    message = refusal(executor_core.replace_namespaced_config_map, result, NS, replaced)
    assert "cannot update resource \"configmaps\"" in message, message
    another = f"{result}-attempt-9"
    message = refusal(executor_core.create_namespaced_config_map, NS, {
        "metadata": {"name": another, "labels": {"qgov.dev/job": replaced.metadata.labels["qgov.dev/job"]}},
        "data": forged["data"]})
    assert message.endswith(expected.replace(f"/{result} ", f"/{another} ") + EXECUTOR), message
    as_executor.close()
    assert sum(read_result(env.core, NS, result)["circuits"][0]["counts"].values()) == 200  # untouched
    # a labelled ConfigMap cannot be made either (a result before its executor writes it)
    message = refusal(core.create_namespaced_config_map, NS, {
        "metadata": {"name": "next-result", "labels": {"qgov.dev/job": "next"}}, "data": {"result.json": "{}"}})
    assert "ConfigMap team-a/next-result belongs to qgov (labelled qgov.dev/job)" in message, message

    # a session's token Secret, as the operator writes it (labelled managed-by=qgov and qgov.dev/session)
    operator_core = kubernetes.client.CoreV1Api(operator := env.as_operator())
    operator_core.create_namespaced_secret(NS, {"metadata": {"name": "s-token", "labels": {
        "app.kubernetes.io/managed-by": "qgov", "qgov.dev/session": "s"}}, "data": {"token": "c2VjcmV0"}})
    operator.close()
    secret_refusal = (f"Secret {NS}/s-token belongs to qgov (labelled app.kubernetes.io/managed-by, qgov.dev/session): "
                      f"only the qgov operator ({OPERATOR}) may create, change or delete it; refused for {TENANT}")
    for call, args in ((core.patch_namespaced_secret, ("s-token", NS, {"data": {"token": "Zm9yZ2Vk"}})),
                       (core.patch_namespaced_secret, ("s-token", NS, {"metadata": {"labels": None}})),
                       (core.delete_namespaced_secret, ("s-token", NS))):
        message = refusal(call, *args)
        assert message.endswith(secret_refusal), message
    message = refusal(core.create_namespaced_secret, NS, {"metadata": {"name": "t-token", "labels": {
        "app.kubernetes.io/managed-by": "qgov"}}, "data": {"token": "Zm9yZ2Vk"}})
    assert "Secret team-a/t-token belongs to qgov (labelled app.kubernetes.io/managed-by)" in message, message
    # the tenant's own Secrets and ConfigMaps are theirs as ever
    core.create_namespaced_secret(NS, {"metadata": {"name": "mine"}, "data": {"k": "dg=="}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "mine"}, "data": {"k": "v"}})


def test_a_tenant_cannot_get_a_token_of_qgov_executor(cluster: Cluster) -> None:
    env = cluster
    env.wait(lambda: env.core.read_namespaced_service_account("qgov-executor", NS), "the executor identity")
    core = kubernetes.client.CoreV1Api(env.tenant)
    message = refusal(core.create_namespaced_service_account_token, "qgov-executor", NS,
                      {"spec": {"expirationSeconds": 600}})
    review = kubernetes.client.AuthorizationV1Api(env.admin).create_subject_access_review({"spec": {
        "user": TENANT, "resourceAttributes": {"resource": "serviceaccounts", "subresource": "token", "verb": "create",
                                               "namespace": NS, "name": "qgov-executor"}}})
    assert review.status.allowed  # `edit` may request tokens of its namespace's accounts: RBAC lets this through
    assert message.endswith(f"ServiceAccount {NS}/qgov-executor: only a kubelet, for the qgov executor pods it "
                            f"runs, may request its token (it writes qgov job results); refused for {TENANT}"), message
    # the kubelet's own requests for the executor pods pass: a job runs (its pod's token is the kubelet's)
    assert succeeded_job(env)["actualCost"] == "0.30"
