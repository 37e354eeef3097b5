"""The admission's writes sent without the kubernetes client (governance/handlers/apiwrites.py)
land as the client's do, and a refusal raises the client's exception with the same status and body."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.rest import ApiException

from governance.handlers.apiwrites import Connection, custom_path, pods_path

NS = "default"


def pod(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_status_merge_patch_json_patch_and_create(api, core, custom, widgets) -> None:
    widgets("w1", 3)
    http = Connection(api)
    assert Connection.supported(api)
    http.request("PATCH", custom_path("example.dev", "v1", NS, "widgets", "w1", "status"),
                 {"status": {"phase": "Ready"}}, "application/merge-patch+json")
    http.request("PATCH", custom_path("example.dev", "v1", NS, "widgets", "w1"),
                 [{"op": "add", "path": "/metadata/finalizers", "value": ["qgov.dev/ledger"]}],
                 "application/json-patch+json")
    w = custom.get_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1")
    assert w["status"] == {"phase": "Ready"} and w["metadata"]["finalizers"] == ["qgov.dev/ledger"]
    for _ in range(3):  # one kept-alive connection, many requests
        http.request("PATCH", custom_path("example.dev", "v1", NS, "widgets", "w1", "status"),
                     {"status": {"n": _}}, "application/merge-patch+json")
    assert custom.get_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1")["status"]["n"] == 2
    answer = json.loads(http.request("POST", pods_path(NS), pod("p1")))
    assert answer["metadata"]["name"] == "p1" and core.read_namespaced_pod("p1", NS).metadata.labels == {"app": "x"}


def test_refusals_raise_the_clients_exceptions(api, core) -> None:
    http = Connection(api)
    http.request("POST", pods_path(NS), pod("p1"))
    with pytest.raises(ApiException) as err:
        http.request("POST", pods_path(NS), pod("p1"))
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as err:
        http.request("PATCH", custom_path("example.dev", "v1", NS, "widgets", "gone", "status"),
                     {"status": {}}, "application/merge-patch+json")
    assert err.value.status == 404
    http.request("POST", pods_path(NS), pod("p2"))  # the connection still serves after refusals
    assert core.read_namespaced_pod("p2", NS).metadata.name == "p2"


def test_a_connection_the_server_closed_is_opened_again(api, core) -> None:
    http = Connection(api)
    http.request("POST", pods_path(NS), pod("p1"))
    http._conn.sock.shutdown(2)  # as if the server had dropped the idle connection
    http.request("POST", pods_path(NS), pod("p2"))
    assert core.read_namespaced_pod("p2", NS).metadata.name == "p2"


def test_what_json_lacks_is_sent_as_the_client_sends_it(api, custom, widgets) -> None:
    from datetime import datetime, timezone

    widgets("w1", 3)
    Connection(api).request("PATCH", custom_path("example.dev", "v1", NS, "widgets", "w1", "status"),
                            {"status": {"at": datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)}},
                            "application/merge-patch+json")
    assert custom.get_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1")["status"]["at"] == \
        api.sanitize_for_serialization(datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc))
