"""The executor's identity in a team namespace: ServiceAccount `qgov-executor` and a RoleBinding
to the ClusterRole `qgov-executor`, made by the operator in every namespace that has a QiskitBudget.

Why the operator: executor pods run as `qgov-executor` (a real API server refuses to create a pod
whose ServiceAccount does not exist), and a team that creates a budget should not also have to
know which RBAC its pods need. The operator may bind only that one ClusterRole (`bind` with its
resourceName), so this grants nothing it was not given. Both objects have fixed names: a replay
creates nothing twice. A platform that manages identities itself sets
QGOV_PROVISION_EXECUTOR_IDENTITY=false.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from ..api import MANAGED_BY_LABEL
from ..kubeerrors import Forbidden, KubeError
from ..kubeerrors import created as kube_created

EXECUTOR_ACCOUNT = "qgov-executor"
EXECUTOR_ROLE = "qgov-executor"  # the ClusterRole in operator/manifests/rbac.yaml

log = logging.getLogger("qgov.identity")


def executor_identity(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ServiceAccount and RoleBinding bodies (pure)."""
    labels = {MANAGED_BY_LABEL: "qgov"}
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": EXECUTOR_ACCOUNT, "namespace": namespace, "labels": labels}}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": EXECUTOR_ACCOUNT, "namespace": namespace, "labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": EXECUTOR_ROLE},
               "subjects": [{"kind": "ServiceAccount", "name": EXECUTOR_ACCOUNT, "namespace": namespace}]}
    return account, binding


def ensure_executor_identity(core: Any, rbac: Any, namespace: str) -> bool:
    """Create what is missing; True when anything was created. An existing object is left as it
    is (a platform team may have made its own)."""
    account, binding = executor_identity(namespace)
    created = False
    for create, body in ((core.create_namespaced_service_account, account),
                         (rbac.create_namespaced_role_binding, binding)):
        created = kube_created(partial(create, namespace, body)) or created
    if created:
        log.info(f"namespace {namespace}: created ServiceAccount and RoleBinding {EXECUTOR_ACCOUNT} for executor pods")
    return created


def missing_account(exc: KubeError) -> str | None:
    """The API server's refusal of a pod whose ServiceAccount does not exist, as a job message."""
    body = str(getattr(exc, "body", "") or "")
    if isinstance(exc, Forbidden) and "serviceaccount" in body.lower() and "not found" in body.lower():
        return (f"ServiceAccount {EXECUTOR_ACCOUNT} does not exist in this namespace, so the executor pod cannot be "
                f"created: create it with a RoleBinding to the ClusterRole {EXECUTOR_ROLE} (the operator does this "
                f"for every namespace with a QiskitBudget unless QGOV_PROVISION_EXECUTOR_IDENTITY=false)")
    return None
