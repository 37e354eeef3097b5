"""generateName: the server picks a unique name from a prefix (the operator names its result
ConfigMaps and Events so)."""

from __future__ import annotations

from .conftest import Cluster, G, V


def test_generate_name_makes_distinct_names_from_the_prefix(cluster: Cluster) -> None:
    names = [cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"generateName": "result-"}, "data": {"i": str(i)}}).metadata.name for i in range(5)]
    assert len(set(names)) == 5
    assert all(n.startswith("result-") and len(n) == len("result-") + 5 for n in names)
    made = cluster.custom.create_namespaced_custom_object(G, V, cluster.namespace, "qiskitbudgets", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"generateName": "team-"},
        "spec": {"limit": "1.00"}})
    assert made["metadata"]["name"].startswith("team-") and made["metadata"]["generateName"] == "team-"
    assert cluster.get_budget(made["metadata"]["name"])["spec"]["limit"] == "1.00"


def test_a_given_name_wins_over_generate_name(cluster: Cluster) -> None:
    made = cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": "exact", "generateName": "prefix-"}})
    assert made.metadata.name == "exact"
