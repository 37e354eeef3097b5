"""The API semantics an operator relies on, each driven by the real kubernetes client over HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

NS = "default"


def cm(name: str, labels: dict | None = None, **data: str) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def test_create_answers_201_and_fills_metadata(core, api) -> None:
    _, status, _ = core.create_namespaced_config_map_with_http_info(NS, cm("a", x="1"))
    assert status == 201
    made = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}, "data": {}})
    assert made is not None and made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
    assert made.metadata.uid and made.metadata.creation_timestamp and made.metadata.namespace == NS
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, cm("a"))
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("nowhere", cm("b"))
    assert err.value.status == 404 and json.loads(err.value.body)["message"] == 'namespaces "nowhere" not found'


def test_resource_version_bumps_on_every_write_and_generation_on_spec_changes(widgets, custom) -> None:
    w = widgets("w1", 3)
    rv1, gen1 = int(w["metadata"]["resourceVersion"]), w["metadata"]["generation"]
    w = custom.patch_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1", {"spec": {"size": 4}})
    assert int(w["metadata"]["resourceVersion"]) > rv1 and w["metadata"]["generation"] == gen1 + 1
    rv2 = int(w["metadata"]["resourceVersion"])
    w = custom.patch_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1",
                                              {"metadata": {"labels": {"a": "b"}}})
    assert int(w["metadata"]["resourceVersion"]) > rv2 and w["metadata"]["generation"] == gen1 + 1
    w = custom.patch_namespaced_custom_object_status("example.dev", "v1", NS, "widgets", "w1",
                                                     {"status": {"phase": "Ready"}})
    assert w["metadata"]["generation"] == gen1 + 1  # status writes never bump generation


def test_stale_resource_version_on_update_answers_409(core) -> None:
    made = core.create_namespaced_config_map(NS, cm("a", x="1"))
    core.replace_namespaced_config_map("a", NS, {"metadata": {"name": "a", "resourceVersion":
                                                              made.metadata.resource_version}, "data": {"x": "2"}})
    with pytest.raises(ApiException) as err:  # the same, now stale, resourceVersion
        core.replace_namespaced_config_map("a", NS, {"metadata": {"name": "a", "resourceVersion":
                                                                  made.metadata.resource_version}, "data": {"x": "3"}})
    assert err.value.status == 409 and "the object has been modified" in err.value.body
    assert core.read_namespaced_config_map("a", NS).data == {"x": "2"}


def test_merge_json_and_strategic_patches(core, api) -> None:
    core.create_namespaced_config_map(NS, cm("a", x="1", y="2"))
    patched = core.patch_namespaced_config_map("a", NS, {"data": {"x": None, "z": "3"}})  # merge: null deletes
    assert patched.data == {"y": "2", "z": "3"}
    ok = api.call_api(f"/api/v1/namespaces/{NS}/configmaps/a", "PATCH",
                      header_params={"Content-Type": "application/json-patch+json", "Accept": "application/json"},
                      body=[{"op": "test", "path": "/data/y", "value": "2"},
                            {"op": "replace", "path": "/data/y", "value": "20"}],
                      response_types_map={200: "object"}, _return_http_data_only=True)
    assert ok["data"]["y"] == "20"
    with pytest.raises(ApiException) as err:
        api.call_api(f"/api/v1/namespaces/{NS}/configmaps/a", "PATCH",
                     header_params={"Content-Type": "application/json-patch+json", "Accept": "application/json"},
                     body=[{"op": "test", "path": "/data/y", "value": "nope"},
                           {"op": "remove", "path": "/data/y"}], response_types_map={200: "object"})
    assert err.value.status == 422
    assert core.read_namespaced_config_map("a", NS).data["y"] == "20"  # nothing applied
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "x", "command": ["sleep", "60"], "env": [{"name": "A", "value": "1"}]},
        {"name": "b", "image": "y", "command": ["sleep", "60"]}]}}
    core.create_namespaced_pod(NS, pod)
    # strategic merge: containers merge by name (a JSON merge patch would replace the whole list)
    patched = core.patch_namespaced_pod("p", NS, {"spec": {"containers": [{"name": "b", "image": "y2"}]}})
    assert [(c.name, c.image) for c in patched.spec.containers] == [("a", "x"), ("b", "y2")]


def test_delete_and_deletecollection(core) -> None:
    for i in range(3):
        core.create_namespaced_config_map(NS, cm(f"c{i}", {"group": "x" if i < 2 else "y"}))
    core.delete_collection_namespaced_config_map(NS, label_selector="group=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map(NS).items] == ["c2"]
    core.delete_namespaced_config_map("c2", NS)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("c2", NS)
    assert err.value.status == 404


def test_status_subresource_is_separate_from_spec(widgets, custom) -> None:
    widgets("w1", 3)
    w = custom.patch_namespaced_custom_object_status(
        "example.dev", "v1", NS, "widgets", "w1", {"spec": {"size": 99}, "status": {"phase": "Ready"}})
    assert w["spec"]["size"] == 3 and w["status"] == {"phase": "Ready"}  # /status changes only status
    w = custom.patch_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1",
                                              {"spec": {"size": 5}, "status": {"phase": "Hacked"}})
    assert w["spec"]["size"] == 5 and w["status"] == {"phase": "Ready"}  # main endpoint ignores status
    created = widgets("w2", 1, meta={}, **{})
    assert "status" not in created


def test_label_and_field_selectors_on_list(core) -> None:
    core.create_namespaced_config_map(NS, cm("a", {"tier": "web", "env": "prod"}))
    core.create_namespaced_config_map(NS, cm("b", {"tier": "db", "env": "prod"}))
    core.create_namespaced_config_map(NS, cm("c", {"tier": "web"}))

    def names(**kw) -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map(NS, **kw).items]

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier=web,env=prod") == ["a"]
    assert names(label_selector="tier in (db, cache)") == ["b"]
    assert names(label_selector="!env") == ["c"]
    assert names(label_selector="tier!=web") == ["b"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="tier=web") == ["a", "c"]
    with pytest.raises(ApiException) as err:
        names(label_selector="tier in web")
    assert err.value.status == 400


def test_watch_from_a_list_snapshot_misses_nothing(core) -> None:
    core.create_namespaced_config_map(NS, cm("before"))
    listed = core.list_namespaced_config_map(NS)
    for i in range(20):  # written after the snapshot, before the watch starts
        core.create_namespaced_config_map(NS, cm(f"after-{i}"))
    core.delete_namespaced_config_map("before", NS)
    events = list(kubernetes.watch.Watch().stream(core.list_namespaced_config_map, NS,
                                                  resource_version=listed.metadata.resource_version,
                                                  timeout_seconds=1))
    seen = [(e["type"], e["object"].metadata.name) for e in events]
    assert seen == [("ADDED", f"after-{i}") for i in range(20)] + [("DELETED", "before")]


def test_watch_streams_live_events_with_selectors_and_transitions(core) -> None:
    events: list[tuple[str, str]] = []

    def watch() -> None:
        for e in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, NS, label_selector="app=x",
                                                 timeout_seconds=2):
            events.append((e["type"], e["object"].metadata.name))

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    core.create_namespaced_config_map(NS, cm("in", {"app": "x"}))
    core.create_namespaced_config_map(NS, cm("out", {"app": "y"}))
    core.patch_namespaced_config_map("out", NS, {"metadata": {"labels": {"app": "x"}}})  # enters the selection
    core.patch_namespaced_config_map("in", NS, {"metadata": {"labels": {"app": "z"}}})  # leaves it
    t.join()
    assert events == [("ADDED", "in"), ("ADDED", "out"), ("DELETED", "in")]


@pytest.mark.parametrize("flag", ["true", "1", "True"])
def test_watch_flag_spellings_and_timeout(cluster, core, flag: str) -> None:
    core.create_namespaced_config_map(NS, cm("a"))
    started = time.monotonic()
    with urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces/{NS}/configmaps?watch={flag}&timeoutSeconds=1") as r:
        lines = [json.loads(line) for line in r.read().splitlines()]
    assert time.monotonic() - started < 5
    assert [(x["type"], x["object"]["metadata"]["name"]) for x in lines] == [("ADDED", "a")]


def test_finalizers_hold_deletion_until_removed(core) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "held", "finalizers": ["qgov.dev/ledger"]}})
    core.delete_namespaced_config_map("held", NS)
    held = core.read_namespaced_config_map("held", NS)
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as err:  # no new finalizers while deleting
        core.patch_namespaced_config_map("held", NS, {"metadata": {"finalizers": ["qgov.dev/ledger", "x/y"]}})
    assert err.value.status == 422
    core.patch_namespaced_config_map("held", NS, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("held", NS)
    assert err.value.status == 404


def test_owner_references_garbage_collect_dependents_transitively(core) -> None:
    parent = core.create_namespaced_config_map(NS, cm("parent"))
    ref = lambda o, n: [{"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": o.metadata.uid}]  # noqa: E731
    child = core.create_namespaced_config_map(NS, {"metadata": {"name": "child",
                                                                "ownerReferences": ref(parent, "parent")}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "grandchild", "ownerReferences": ref(child, "child")}})
    other = core.create_namespaced_config_map(NS, cm("other"))
    core.create_namespaced_config_map(NS, {"metadata": {"name": "shared", "ownerReferences":
                                                        ref(parent, "parent") + ref(other, "other")}})
    core.delete_namespaced_config_map("parent", NS)
    assert sorted(c.metadata.name for c in core.list_namespaced_config_map(NS).items) == ["other", "shared"]


def test_crd_becomes_discoverable_validates_defaults_and_prunes(api, widgets, custom) -> None:
    groups = kubernetes.client.ApisApi(api).get_api_versions()
    assert "example.dev" in [g.name for g in groups.groups]
    resources = api.call_api("/apis/example.dev/v1", "GET", response_types_map={200: "object"}, _return_http_data_only=True)
    assert {"widgets", "widgets/status"} <= {r["name"] for r in resources["resources"]}
    w = widgets("w1", 2, junk="dropped")
    assert w["spec"] == {"size": 2, "color": "blue"}  # default applied, unknown field pruned
    with pytest.raises(ApiException) as err:
        widgets("bad", 0, color="green", tags=[1])
    body = json.loads(err.value.body)
    assert err.value.status == 422
    fields = sorted(c["field"] for c in body["details"]["causes"])
    assert fields == ["spec.color", "spec.size", "spec.tags[0]"]
    assert "spec.size in body should be greater than or equal to 1" in body["message"]


def test_secrets_string_data_becomes_data_and_other_core_kinds(core) -> None:
    s = core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "stringData": {"apiKey": "k3y"}})
    assert s.data == {"apiKey": "azN5"} and s.type == "Opaque"
    core.create_namespaced_service_account(NS, {"metadata": {"name": "qgov"}})
    assert [a.metadata.name for a in core.list_namespaced_service_account(NS).items] == ["qgov"]
    core.create_namespaced_event(NS, {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p"},
                                      "reason": "Started", "message": "m", "type": "Normal"})
    evs = core.list_namespaced_event(NS, field_selector="involvedObject.name=p,involvedObject.kind=Pod")
    assert [e.reason for e in evs.items] == ["Started"]


def test_deleting_a_namespace_deletes_its_contents(core) -> None:
    core.create_namespace({"metadata": {"name": "team-a"}})
    core.create_namespaced_config_map("team-a", cm("x"))
    core.delete_namespace("team-a")
    assert core.list_namespaced_config_map("team-a").items == []
    with pytest.raises(ApiException):
        core.read_namespace("team-a")


def test_labels_are_checked_as_the_api_server_checks_them(core) -> None:
    core.create_namespaced_config_map(NS, cm("fine", {"app.kubernetes.io/name": "x", "qgov.dev/job": "a" * 63,
                                                      "empty": ""}))
    for labels, says in [({"qgov.dev/job": "a" * 62 + "-"}, "must start and end with an alphanumeric character"),
                         ({"qgov.dev/job": "a" * 64}, "must be no more than 63 characters"),
                         ({"-bad": "x"}, "name part must consist of alphanumeric characters"),
                         ({"Bad_Prefix.io/x": "y"}, "DNS subdomain prefix")]:
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map(NS, cm("bad", labels))
        assert err.value.status == 422 and says in json.loads(err.value.body)["message"], (labels, err.value.body)
        assert json.loads(err.value.body)["message"].startswith('ConfigMap "bad" is invalid: metadata.labels')
    with pytest.raises(ApiException) as err:  # a patch is checked too
        core.patch_namespaced_config_map("fine", NS, {"metadata": {"labels": {"x": "y-"}}})
    assert err.value.status == 422
    assert core.read_namespaced_config_map("fine", NS).metadata.labels["qgov.dev/job"] == "a" * 63


def test_only_types_with_a_generation_get_one(core, widgets) -> None:
    """ConfigMaps, Secrets, Events, ServiceAccounts and Namespaces have no metadata.generation on a real server."""
    made = core.create_namespaced_config_map(NS, cm("g", x="1"))
    assert made.metadata.generation is None
    assert core.patch_namespaced_config_map("g", NS, {"data": {"x": "2"}}).metadata.generation is None
    assert widgets("w1")["metadata"]["generation"] == 1


def test_server_side_dry_run_is_refused_rather_than_written(kubectl) -> None:
    out = kubectl("apply", "--dry-run=server", "-f", "-", input='{"apiVersion":"v1","kind":"ConfigMap",'
                                                                '"metadata":{"name":"dry"}}', check=False)
    assert out.returncode != 0 and "dryRun is not supported" in out.stderr
    assert kubectl("get", "cm", "dry", check=False).returncode != 0


def test_lists_come_in_pages_of_limit_with_a_continue_token(core, kubectl) -> None:
    for i in range(5):
        core.create_namespaced_config_map(NS, cm(f"p{i}"))
    first = core.list_namespaced_config_map(NS, limit=2)
    assert [c.metadata.name for c in first.items] == ["p0", "p1"]
    assert first.metadata._continue and first.metadata.remaining_item_count == 3
    names, token = [], None
    while True:
        page = core.list_namespaced_config_map(NS, limit=2, **({"_continue": token} if token else {}))
        assert page.metadata.resource_version == first.metadata.resource_version  # every page: the first's rv
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"p{i}" for i in range(5)]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map(NS, limit=2, _continue="not-a-token")
    assert err.value.status == 400
    # kubectl pages too (--chunk-size), and shows every row
    rows = kubectl("get", "cm", "--chunk-size=2", "-o", "name").stdout.split()
    assert rows == [f"configmap/p{i}" for i in range(5)]


def test_names_must_be_rfc1123_as_on_a_real_server(core, kubectl, widgets) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, cm("Bad_Name"))
    assert err.value.status == 422
    assert 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain' in \
        json.loads(err.value.body)["message"]
    with pytest.raises(ApiException) as err:
        widgets("w" * 254)
    assert err.value.status == 422 and "must be no more than 253 characters" in err.value.body
    bad = kubectl("apply", "-f", "-", input='{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a.b"}}',
                  check=False)
    assert bad.returncode != 0 and "a lowercase RFC 1123 label must consist of" in bad.stderr


def test_secret_data_must_be_base64(core) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "data": {"token": "not base64!"}})
    assert err.value.status == 400 and "illegal base64 data in data.token" in err.value.body
    assert core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "data": {"token": "aGk="}}).data == {
        "token": "aGk="}


def test_a_deleted_namespace_terminates_until_its_finalized_contents_are_gone(core, kubectl, widgets, custom) -> None:
    kubectl("apply", "-f", "-", input='{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"}}')
    widgets("held", namespace="doomed", meta={"finalizers": ["example.dev/hold"]})
    core.create_namespaced_config_map("doomed", cm("c"))
    kubectl("delete", "namespace", "doomed", "--wait=false")
    assert kubectl("get", "ns", "doomed", "-o", "jsonpath={.status.phase}").stdout == "Terminating"
    assert kubectl("get", "cm", "-n", "doomed", "-o", "name").stdout == ""  # the rest went at once
    with pytest.raises(ApiException) as err:  # nothing new in a terminating namespace
        core.create_namespaced_config_map("doomed", cm("late"))
    assert err.value.status == 403 and "being terminated" in err.value.body
    custom.patch_namespaced_custom_object("example.dev", "v1", "doomed", "widgets", "held",
                                          {"metadata": {"finalizers": None}})
    assert kubectl("get", "ns", "doomed", check=False).returncode != 0
    refused = kubectl("delete", "namespace", "default", check=False)
    assert refused.returncode != 0 and "this namespace may not be deleted" in refused.stderr


def test_a_watch_from_a_compacted_resource_version_gets_an_error_event_410(threaded, cluster, core) -> None:
    """As the API server's watch cache: HTTP 200, then one ERROR event with the Expired status."""
    holder, _ = threaded
    core.create_namespaced_config_map(NS, cm("busy"))
    first_rv = int(core.read_namespaced_config_map("busy", NS).metadata.resource_version)

    def churn() -> None:
        store = cluster.store
        rtype = store.types[("", "configmaps")]
        for i in range(store.history[rtype.key].maxlen + 1):
            store.replace(rtype, NS, "busy", {"metadata": {"name": "busy"}, "data": {"i": str(i)}})

    holder.call(churn)
    url = f"{cluster.url}/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={first_rv}"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        events = [json.loads(line) for line in response.read().splitlines()]
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
