"""Owner references: a job's result ConfigMaps are owned by the QiskitJob, so deleting the job
deletes them (the garbage collector, within seconds upstream), as the deletion's
propagationPolicy says."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from .conftest import Cluster, G, V, eventually


def owned(cluster: Cluster, owner: dict[str, Any], name: str, *more_owners: dict[str, Any]) -> None:
    refs = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "controller": i == 0, "blockOwnerDeletion": True}
            for i, o in enumerate((owner, *more_owners))]
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": name, "ownerReferences": refs}, "data": {"result": name}})


def exists(cluster: Cluster, name: str) -> bool:
    try:
        cluster.core.read_namespaced_config_map(name, cluster.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def budget_gone(cluster: Cluster, name: str) -> bool:
    try:
        cluster.get_budget(name)
    except ApiException as exc:
        return exc.status == 404
    return False


def delete_budget(cluster: Cluster, name: str, policy: str | None) -> dict[str, Any]:
    body = {"propagationPolicy": policy} if policy else None
    return cluster.custom.delete_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", name, body=body)


@pytest.mark.parametrize("policy", [None, "Background"])
def test_deleting_the_owner_deletes_its_configmaps(cluster: Cluster, policy: str | None) -> None:
    owner, other = cluster.budget("owner"), cluster.budget("other")
    owned(cluster, owner, "result-1")
    owned(cluster, owner, "result-2")
    owned(cluster, owner, "shared", other)
    owned(cluster, other, "unrelated")
    delete_budget(cluster, "owner", policy)
    eventually(lambda: not exists(cluster, "result-1") and not exists(cluster, "result-2"), "the results to go")
    # a dependent with another live owner stays, and loses its reference to the deleted owner
    refs = eventually(lambda: [r.name for r in cluster.core.read_namespaced_config_map(
        "shared", cluster.namespace).metadata.owner_references or []] == ["other"] and ["other"],
        "the dangling reference to be dropped")
    assert refs == ["other"] and exists(cluster, "unrelated")


def test_foreground_deletion_deletes_the_dependents_first(cluster: Cluster) -> None:
    owner = cluster.budget("owner")
    owned(cluster, owner, "result-1")
    answer = delete_budget(cluster, "owner", "Foreground")
    assert answer["metadata"]["deletionTimestamp"] and "foregroundDeletion" in answer["metadata"]["finalizers"]
    eventually(lambda: budget_gone(cluster, "owner"), "the owner to go")
    assert not exists(cluster, "result-1")  # gone before its owner


def test_orphan_deletion_keeps_the_dependents_without_the_reference(cluster: Cluster) -> None:
    owner, other = cluster.budget("owner"), cluster.budget("other")
    owned(cluster, owner, "result-1")
    owned(cluster, owner, "shared", other)
    answer = delete_budget(cluster, "owner", "Orphan")
    assert answer["metadata"]["deletionTimestamp"] and "orphan" in answer["metadata"]["finalizers"]
    eventually(lambda: budget_gone(cluster, "owner"), "the owner to go")
    orphan = cluster.core.read_namespaced_config_map("result-1", cluster.namespace)
    assert not orphan.metadata.owner_references and orphan.data == {"result": "result-1"}
    shared = cluster.core.read_namespaced_config_map("shared", cluster.namespace)
    assert [r.name for r in shared.metadata.owner_references] == ["other"]
