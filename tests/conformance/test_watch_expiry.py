"""410 Gone: a watch from a resourceVersion whose history the server no longer keeps (etcd
compacted it) gets an ERROR event with code 410, and a kopf-style watcher relists then watches
on from the new list: nothing written meanwhile is lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .conftest import Cluster, watch_events


def test_a_watch_from_an_expired_resource_version_gets_a_410_error_event(cluster: Cluster) -> None:
    ns = cluster.namespace
    since = cluster.core.list_namespaced_config_map(ns).metadata.resource_version
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    cluster.core.patch_namespaced_config_map("a", ns, {"data": {"k": "v"}})
    cluster.expire_history()
    events = watch_events(cluster.core.list_namespaced_config_map, ns, resource_version=since)
    assert len(events) == 1, events
    kind, status = events[0]
    assert kind == "ERROR"
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"


class Watcher:
    """What kopf does with a resource: list, then watch from the list's resourceVersion; on an
    ERROR event with code 410, list again and go on watching from there."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: dict[str, Any] = {}  # name -> data, as last listed or watched
        self.errors: list[dict[str, Any]] = []  # the ERROR events' Status objects
        self.version = ""

    def relist(self) -> None:
        listed = self.cluster.core.list_namespaced_config_map(self.cluster.namespace, label_selector="watched")
        self.seen = {cm.metadata.name: cm.data for cm in listed.items}
        self.version = listed.metadata.resource_version

    def stream(self) -> Iterator[dict[str, Any]]:
        response = self.cluster.core.list_namespaced_config_map(
            self.cluster.namespace, label_selector="watched", watch=True, resource_version=self.version,
            timeout_seconds=1, allow_watch_bookmarks=True, _preload_content=False)
        try:
            yield from (json.loads(line) for line in iter_resp_lines(response))
        finally:
            response.release_conn()

    def watch_once(self) -> None:
        for event in self.stream():
            obj = event["object"]
            if event["type"] == "ERROR":
                self.errors.append(obj)
                if obj.get("code") == 410:
                    self.relist()
                    return
                raise ApiException(status=obj.get("code"), reason=obj.get("message"))
            self.version = obj["metadata"]["resourceVersion"]
            if event["type"] == "DELETED":
                self.seen.pop(obj["metadata"]["name"], None)
            elif event["type"] != "BOOKMARK":
                self.seen[obj["metadata"]["name"]] = obj.get("data")


def test_a_kopf_style_watcher_sees_the_410_and_relists(cluster: Cluster) -> None:
    ns, core = cluster.namespace, cluster.core
    watcher = Watcher(cluster)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "early", "labels": {"watched": "1"}}})
    watcher.relist()
    assert watcher.seen == {"early": None}
    # while the watcher is away: writes, then the history they made is compacted away
    core.create_namespaced_config_map(ns, {"metadata": {"name": "missed", "labels": {"watched": "1"}},
                                           "data": {"k": "v"}})
    core.delete_namespaced_config_map("early", ns)
    cluster.expire_history()
    watcher.watch_once()
    assert [(e["code"], e["reason"]) for e in watcher.errors] == [(410, "Expired")]
    assert watcher.seen == {"missed": {"k": "v"}}  # the relist caught up
    core.create_namespaced_config_map(ns, {"metadata": {"name": "later", "labels": {"watched": "1"}}})
    watcher.watch_once()  # from the relist's resourceVersion: no 410 this time
    assert len(watcher.errors) == 1 and watcher.seen == {"missed": {"k": "v"}, "later": None}
