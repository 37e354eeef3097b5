"""Optimistic concurrency: a write naming a stale resourceVersion is refused with 409 Conflict
(the operator's status writer and kopf's patches rely on it to never overwrite a newer object)."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from .conftest import Cluster, G, V, api_error


def test_update_with_a_stale_resource_version_is_a_conflict(cluster: Cluster) -> None:
    made = cluster.budget("b")
    stale = made["metadata"]["resourceVersion"]
    fresh = cluster.custom.replace_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", "b", {
        **made, "spec": {**made["spec"], "limit": "20.00"}})
    assert fresh["metadata"]["resourceVersion"] != stale
    with pytest.raises(ApiException) as err:
        cluster.custom.replace_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", "b", {
            **made, "spec": {**made["spec"], "limit": "30.00"}})
    assert err.value.status == 409 and api_error(err.value)["reason"] == "Conflict"
    assert "the object has been modified" in api_error(err.value)["message"]
    assert cluster.get_budget("b")["spec"]["limit"] == "20.00"


def test_status_update_with_a_stale_resource_version_is_a_conflict(cluster: Cluster) -> None:
    made = cluster.budget("b")
    first = cluster.custom.replace_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "b", {
        **made, "status": {"limit": "10.00"}})
    with pytest.raises(ApiException) as err:  # `made` is stale now
        cluster.custom.replace_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "b", {
            **made, "status": {"limit": "99.00"}})
    assert err.value.status == 409 and api_error(err.value)["reason"] == "Conflict"
    assert cluster.get_budget("b")["status"] == {"limit": "10.00"}
    again = cluster.custom.replace_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "b", {
        **first, "status": {"limit": "11.00"}})
    assert again["status"] == {"limit": "11.00"}


def test_a_merge_patch_naming_a_stale_resource_version_is_a_conflict(cluster: Cluster) -> None:
    made = cluster.budget("b")
    cluster.custom.patch_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", "b",
                                                  {"metadata": {"labels": {"touched": "yes"}}})
    with pytest.raises(ApiException) as err:
        cluster.custom.patch_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "b", {
            "metadata": {"resourceVersion": made["metadata"]["resourceVersion"]}, "status": {"limit": "1.00"}})
    assert err.value.status == 409
    assert "status" not in cluster.get_budget("b")
