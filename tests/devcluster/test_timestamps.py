"""Timestamps come back as a real API server writes them, so kubectl's ages and describe read them."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes.client.rest import ApiException

NS = "team-a"


@pytest.fixture
def team(kubectl) -> str:
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
    return NS


def kopf_event(name: str, moment: datetime, **extra: object) -> dict:
    """An Event the way kopf posts one: isoformat() timestamps with microseconds and `+00:00`."""
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": NS},
            "involvedObject": {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitBudget", "name": "team-a",
                               "namespace": NS},
            "reason": "Logging", "message": f"{name} happened", "type": "Normal",
            "source": {"component": "kopf"}, "firstTimestamp": moment.isoformat(),
            "lastTimestamp": moment.isoformat(), "eventTime": moment.isoformat(), **extra}


def test_kopf_style_event_timestamps_are_normalised_and_show_an_age(team, core, kubectl) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=123456)
    core.create_namespaced_event(NS, kopf_event("e1", now))
    stored = json.loads(kubectl("get", "event", "e1", "-n", NS, "-o", "json").stdout)
    assert stored["firstTimestamp"] == stored["lastTimestamp"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stored["eventTime"] == now.strftime("%Y-%m-%dT%H:%M:%S.123456Z")

    table = kubectl("get", "events", "-n", NS).stdout.splitlines()
    assert table[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert re.match(r"^\d+s\s+Normal\s+Logging\s+qiskitbudget/team-a\s+e1 happened$", table[1]), table


def test_an_event_with_only_event_time_is_aged_by_it(team, core, kubectl) -> None:
    """printEvent: no lastTimestamp -> firstTimestamp -> eventTime (events.k8s.io style events)."""
    then = datetime.now(timezone.utc) - timedelta(hours=3)
    body = kopf_event("e2", then, reportingComponent="qgov", reportingInstance="op-1")
    for unset in ("firstTimestamp", "lastTimestamp", "source"):
        body.pop(unset)
    core.create_namespaced_event(NS, body)
    stored = json.loads(kubectl("get", "event", "e2", "-n", NS, "-o", "json").stdout)
    # Go encodes an Event's unset Time fields as null, its unset source as {}
    assert stored["firstTimestamp"] is None and stored["lastTimestamp"] is None and stored["source"] == {}
    wide = kubectl("get", "events", "-n", NS, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
                               "FIRST", "SEEN", "COUNT", "NAME"]
    cells = re.split(r"\s{2,}", wide[1].strip())
    assert cells[0] == "3h" and cells[4] == "qgov, op-1" and cells[6:] == ["3h", "1", "e2"], cells


def test_a_timestamp_that_is_not_rfc3339_is_a_bad_request(team, core) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_event(NS, kopf_event("e3", datetime.now(timezone.utc), lastTimestamp="yesterday"))
    assert err.value.status == 400
    assert 'Event in version "v1" cannot be handled as a Event' in json.loads(err.value.body)["message"]
    assert "lastTimestamp" in json.loads(err.value.body)["message"]


def test_custom_resource_status_timestamps_are_kept_as_sent(widgets, custom) -> None:
    """The server never decodes a custom resource's status: a `+00:00` time there stays as written."""
    widgets("w1")
    written = "2026-11-30T11:00:00.123456+00:00"
    got = custom.patch_namespaced_custom_object_status("example.dev", "v1", "default", "widgets", "w1",
                                                       {"status": {"since": written}})
    assert got["status"]["since"] == written
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", got["metadata"]["creationTimestamp"])
