"""The status subresource of qgov's CRDs: users own spec, the operator owns status, and neither
write can clobber the other; metadata.generation counts spec changes only (kopf and the
operator compare it with status.observedGeneration)."""

from __future__ import annotations

from .conftest import Cluster, G, V


def test_create_ignores_status(cluster: Cluster) -> None:
    made = cluster.custom.create_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": "b"},
        "spec": {"limit": "10.00"}, "status": {"limit": "999.00"}})
    assert "status" not in made and "status" not in cluster.get_budget("b")


def test_a_write_to_the_main_resource_ignores_status(cluster: Cluster) -> None:
    cluster.budget("b")
    cluster.custom.patch_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "b",
                                                         {"status": {"limit": "10.00"}})
    patched = cluster.custom.patch_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", "b", {
        "spec": {"limit": "12.00"}, "status": {"limit": "666.00"}})
    assert patched["spec"]["limit"] == "12.00" and patched["status"] == {"limit": "10.00"}
    replaced = cluster.custom.replace_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", "b", {
        **patched, "spec": {**patched["spec"], "limit": "13.00"}, "status": {"limit": "777.00"}})
    assert replaced["spec"]["limit"] == "13.00" and replaced["status"] == {"limit": "10.00"}
    assert cluster.get_budget("b")["status"] == {"limit": "10.00"}


def test_a_write_to_status_ignores_spec_and_metadata(cluster: Cluster) -> None:
    made = cluster.budget("b")
    written = cluster.custom.patch_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "b", {
        "metadata": {"labels": {"sneaky": "yes"}}, "spec": {"limit": "500.00"}, "status": {"spent": "1.00"}})
    assert written["status"] == {"spent": "1.00"} and written["spec"]["limit"] == "10.00"
    assert "sneaky" not in (written["metadata"].get("labels") or {})
    replaced = cluster.custom.replace_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "b", {
        **written, "spec": {"limit": "600.00"}, "status": {"spent": "2.00"}})
    assert replaced["status"] == {"spent": "2.00"} and replaced["spec"] == made["spec"]


def test_generation_counts_spec_changes_only(cluster: Cluster) -> None:
    made = cluster.budget("b")
    assert made["metadata"]["generation"] == 1
    ns = cluster.namespace
    after_status = cluster.custom.patch_namespaced_custom_object_status(G, V, ns, "qiskitbudgets", "b",
                                                                        {"status": {"observedGeneration": 1}})
    assert after_status["metadata"]["generation"] == 1
    after_labels = cluster.custom.patch_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b", {
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}}})
    assert after_labels["metadata"]["generation"] == 1
    after_spec = cluster.custom.patch_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b",
                                                               {"spec": {"limit": "11.00"}})
    assert after_spec["metadata"]["generation"] == 2
    same_spec = cluster.custom.patch_namespaced_custom_object(G, V, ns, "qiskitbudgets", "b",
                                                              {"spec": {"limit": "11.00"}})
    assert same_spec["metadata"]["generation"] == 2
    assert same_spec["metadata"]["resourceVersion"] == after_spec["metadata"]["resourceVersion"]  # a no-op
