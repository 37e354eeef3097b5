"""Label and field selectors on list and watch: the operator finds its pods, result ConfigMaps
and a team's jobs by label, and a node finds its pods by spec.nodeName."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from .conftest import Cluster, G, V, api_error, watch_events


def names(listed: object) -> set[str]:
    items = listed["items"] if isinstance(listed, dict) else listed.items  # type: ignore[attr-defined,index]
    return {(i["metadata"]["name"] if isinstance(i, dict) else i.metadata.name) for i in items}


def configmaps(cluster: Cluster) -> None:
    for name, labels in (("a", {"app": "qgov", "tier": "1"}), ("b", {"app": "qgov", "tier": "2"}),
                         ("c", {"app": "other"}), ("d", {})):
        cluster.core.create_namespaced_config_map(cluster.namespace, {"metadata": {"name": name, "labels": labels}})


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=qgov", {"a", "b"}), ("app==qgov", {"a", "b"}), ("app!=qgov", {"c", "d"}),
    ("app=qgov,tier=2", {"b"}), ("tier in (1,2)", {"a", "b"}), ("tier notin (1)", {"b", "c", "d"}),
    ("tier", {"a", "b"}), ("!tier", {"c", "d"}), ("app in (qgov,other),!tier", {"c"}),
])
def test_label_selectors_on_list(cluster: Cluster, selector: str, expected: set[str]) -> None:
    configmaps(cluster)
    listed = cluster.core.list_namespaced_config_map(cluster.namespace, label_selector=selector)
    assert names(listed) - {"kube-root-ca.crt"} == expected


def test_label_selector_on_custom_resources(cluster: Cluster) -> None:
    cluster.budget("x", labels={"team": "a"})
    cluster.budget("y", labels={"team": "b"})
    listed = cluster.custom.list_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets",
                                                          label_selector="team=b")
    assert names(listed) == {"y"}


def test_field_selectors_on_metadata_name_and_namespace(cluster: Cluster) -> None:
    configmaps(cluster)
    cluster.budget("x")
    cluster.budget("y")
    ns = cluster.namespace
    assert names(cluster.core.list_namespaced_config_map(ns, field_selector="metadata.name=b")) == {"b"}
    unlike_b = cluster.core.list_namespaced_config_map(ns, field_selector="metadata.name!=b")
    assert names(unlike_b) - {"kube-root-ca.crt"} == {"a", "c", "d"}  # the root CA is a controller's
    everywhere = cluster.core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={ns}",
                                                                 label_selector="app")
    assert names(everywhere) == {"a", "b", "c"}
    assert names(cluster.custom.list_cluster_custom_object(G, V, "qiskitbudgets",
                                                           field_selector=f"metadata.namespace={ns},metadata.name=y")) == {"y"}


def test_an_unsupported_field_selector_is_refused(cluster: Cluster) -> None:
    cluster.budget("x")
    with pytest.raises(ApiException) as err:
        cluster.custom.list_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets",
                                                     field_selector="spec.limit=10.00")
    assert err.value.status == 400 and api_error(err.value)["reason"] == "BadRequest"
    assert api_error(err.value)["message"] == "field label not supported: spec.limit"


def pods(cluster: Cluster) -> None:
    """Three pods no kubelet runs: unscheduled, bound to node-a (then `Running`), bound to node-b."""
    cluster.wait_for_default_service_account()
    for name, node in (("loose", None), ("on-a", "node-a"), ("on-b", "node-b")):
        spec = {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "60"]}]}
        if node:
            spec["nodeName"] = node
        cluster.core.create_namespaced_pod(cluster.namespace, {"metadata": {"name": name}, "spec": spec})
    cluster.core.patch_namespaced_pod_status("on-a", cluster.namespace, {"status": {"phase": "Running"}})


@pytest.mark.parametrize(("selector", "expected"), [
    ("spec.nodeName=node-a", {"on-a"}), ("spec.nodeName=", {"loose"}), ("spec.nodeName!=", {"on-a", "on-b"}),
    ("status.phase=Running", {"on-a"}), ("status.phase=Pending", {"loose", "on-b"}),
    ("status.phase!=Running,spec.nodeName!=", {"on-b"}), ("metadata.name=loose", {"loose"}),
])
def test_pod_field_selectors(cluster: Cluster, selector: str, expected: set[str]) -> None:
    pods(cluster)
    assert names(cluster.core.list_namespaced_pod(cluster.namespace, field_selector=selector)) == expected


def test_watch_with_a_label_selector_sees_objects_enter_and_leave(cluster: Cluster) -> None:
    ns = cluster.namespace
    since = cluster.custom.list_namespaced_custom_object(G, V, ns, "qiskitbudgets")["metadata"]["resourceVersion"]
    cluster.budget("in", labels={"team": "a"})
    cluster.budget("out", labels={"team": "b"})
    patch = cluster.custom.patch_namespaced_custom_object
    patch(G, V, ns, "qiskitbudgets", "in", {"spec": {"limit": "11.00"}})
    patch(G, V, ns, "qiskitbudgets", "out", {"metadata": {"labels": {"team": "a"}}})  # enters
    patch(G, V, ns, "qiskitbudgets", "in", {"metadata": {"labels": {"team": "b"}}})  # leaves
    cluster.custom.delete_namespaced_custom_object(G, V, ns, "qiskitbudgets", "out")
    events = watch_events(cluster.custom.list_namespaced_custom_object, G, V, ns, "qiskitbudgets",
                          label_selector="team=a", resource_version=since)
    assert [(kind, obj["metadata"]["name"]) for kind, obj in events] == [
        ("ADDED", "in"), ("MODIFIED", "in"), ("ADDED", "out"), ("DELETED", "in"), ("DELETED", "out")]


def test_watch_with_field_selectors(cluster: Cluster) -> None:
    ns = cluster.namespace
    since = cluster.core.list_namespaced_config_map(ns).metadata.resource_version
    configmaps(cluster)
    cluster.core.patch_namespaced_config_map("b", ns, {"data": {"k": "v"}})
    cluster.core.patch_namespaced_config_map("c", ns, {"data": {"k": "v"}})
    by_name = watch_events(cluster.core.list_config_map_for_all_namespaces, resource_version=since,
                           field_selector=f"metadata.namespace={ns},metadata.name=b")
    assert [(kind, obj["metadata"]["name"]) for kind, obj in by_name] == [("ADDED", "b"), ("MODIFIED", "b")]
    since = cluster.core.list_namespaced_pod(ns).metadata.resource_version
    pods(cluster)
    on_a = watch_events(cluster.core.list_namespaced_pod, ns, resource_version=since,
                        field_selector="spec.nodeName=node-a")
    assert [kind for kind, _ in on_a] == ["ADDED", "MODIFIED"]
    running = watch_events(cluster.core.list_namespaced_pod, ns, resource_version=since,
                           field_selector="status.phase=Running")
    assert [(kind, obj["metadata"]["name"]) for kind, obj in running] == [("ADDED", "on-a")]
