"""What a user sees with kubectl: the CRDs' printer columns, Table output over the API, Event
ages, and `kubectl apply` of a List with client-side validation on."""

from __future__ import annotations

import datetime
import json
import re


from .conftest import Cluster, G, V

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_kubectl_get_shows_the_printer_columns(cluster: Cluster) -> None:
    cluster.budget("team-a")
    cluster.custom.patch_namespaced_custom_object_status(G, V, cluster.namespace, "qiskitbudgets", "team-a", {
        "status": {"limit": "10.00", "spent": "1.50", "reserved": "0.50", "remaining": "8.00"}})
    out = cluster.kubectl("get", "qiskitbudgets", "-n", cluster.namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "LIMIT", "SPENT", "RESERVED", "REMAINING", "UNIT", "AGE"]
    row = out[1].split()
    assert row[:6] == ["team-a", "10.00", "1.50", "0.50", "8.00", "USD"] and re.fullmatch(r"\d+s", row[6])
    short = cluster.kubectl("get", "qbudget", "team-a", "-n", cluster.namespace, "--no-headers").stdout.split()
    assert short[:2] == ["team-a", "10.00"]


def test_table_output_over_the_api(cluster: Cluster) -> None:
    cluster.budget("team-a")
    path = f"/apis/{G}/{V}/namespaces/{cluster.namespace}/qiskitbudgets"
    table = cluster.api.call_api(path, "GET", header_params={"Accept": TABLE}, response_types_map={200: "object"},
                                 _return_http_data_only=True)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Limit", "Spent", "Reserved", "Remaining", "Unit", "Age"]
    assert [c["type"] for c in table["columnDefinitions"]] == ["string"] * 6 + ["date"]
    (row,) = table["rows"]
    assert row["cells"][0] == "team-a" and row["cells"][1:5] == [None] * 4 and row["cells"][5] == "USD"
    assert re.fullmatch(r"\d+s", row["cells"][6])
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "team-a"


def test_kubectl_get_events_shows_their_age(cluster: Cluster) -> None:
    """Events posted as kopf posts them: timestamps with microseconds and `+00:00`."""
    owner = cluster.budget("team-a")
    now = datetime.datetime.now(datetime.UTC)
    cluster.core.create_namespaced_event(cluster.namespace, {
        "metadata": {"generateName": "team-a."}, "type": "Normal", "reason": "Reserved", "message": "1.00 USD",
        "involvedObject": {"apiVersion": owner["apiVersion"], "kind": "QiskitBudget", "name": "team-a",
                           "namespace": cluster.namespace, "uid": owner["metadata"]["uid"]},
        "source": {"component": "kopf"}, "reportingComponent": "kopf", "reportingInstance": "dev",
        "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1})
    out = cluster.kubectl("get", "events", "-n", cluster.namespace).stdout.splitlines()
    assert out[0].split()[:2] == ["LAST", "SEEN"]
    last_seen = out[1].split()[0]
    assert re.fullmatch(r"\d+s", last_seen), out
    assert "qiskitbudget/team-a" in out[1] and "Reserved" in out[1]


def test_kubectl_apply_of_a_list_with_validation(cluster: Cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    namespace = f"{cluster.namespace}-applied"
    cluster.extra_namespaces.append(namespace)
    manifest = tmp_path / "list.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": "team-a", "namespace": namespace},
         "spec": {"limit": "5.00", "unit": "USD"}}]}))
    out = cluster.kubectl("apply", "-f", str(manifest)).stdout
    assert f"namespace/{namespace} created" in out and "qiskitbudget.qgov.dev/team-a created" in out
    budget = cluster.custom.get_namespaced_custom_object(G, V, namespace, "qiskitbudgets", "team-a")
    assert budget["spec"] == {"limit": "5.00", "unit": "USD", "period": "monthly", "enforcement": "hard"}
    again = cluster.kubectl("apply", "-f", str(manifest)).stdout
    assert f"namespace/{namespace} unchanged" in again and "qiskitbudget.qgov.dev/team-a unchanged" in again
