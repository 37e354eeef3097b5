"""Finalizers: the operator holds a job with one until its charge is settled in the ledger, so a
delete must only mark the object, and the object must go once the last finalizer is removed."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from .conftest import Cluster, G, V, api_error

FINALIZER = "qgov.dev/ledger"


def test_delete_marks_the_object_until_its_finalizers_are_removed(cluster: Cluster) -> None:
    ns = cluster.namespace
    cluster.budget("b", finalizers=[FINALIZER])
    answer = cluster.custom.delete_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b")
    assert answer["metadata"]["deletionTimestamp"]
    held = cluster.get_budget("b")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == [FINALIZER]
    again = cluster.custom.delete_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b")
    assert again["metadata"]["deletionTimestamp"] == held["metadata"]["deletionTimestamp"]
    # a terminating object can still be written: the operator records the outcome, then lets go
    written = cluster.custom.patch_namespaced_custom_object_status(G, V, ns, "qiskitbudgets", "b",
                                                                   {"status": {"spent": "1.00"}})
    assert written["status"] == {"spent": "1.00"}
    cluster.custom.patch_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        cluster.get_budget("b")
    assert err.value.status == 404


def test_a_finalizer_cannot_be_added_to_a_terminating_object(cluster: Cluster) -> None:
    ns = cluster.namespace
    cluster.budget("b", finalizers=[FINALIZER])
    cluster.custom.delete_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b")
    with pytest.raises(ApiException) as err:
        cluster.custom.patch_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b", {
            "metadata": {"finalizers": [FINALIZER, "example.com/another"]}})
    assert err.value.status == 422 and api_error(err.value)["reason"] == "Invalid"
    assert "no new finalizers can be added if the object is being deleted" in api_error(err.value)["message"]
    assert cluster.get_budget("b")["metadata"]["finalizers"] == [FINALIZER]


def test_removing_one_of_two_finalizers_keeps_the_object(cluster: Cluster) -> None:
    ns = cluster.namespace
    cluster.budget("b", finalizers=[FINALIZER, "example.com/another"])
    cluster.custom.delete_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b")
    cluster.custom.patch_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b", {
        "metadata": {"finalizers": ["example.com/another"]}})
    assert cluster.get_budget("b")["metadata"]["finalizers"] == ["example.com/another"]
    cluster.custom.patch_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b", {"metadata": {"finalizers": []}})
    with pytest.raises(ApiException) as err:
        cluster.get_budget("b")
    assert err.value.status == 404
