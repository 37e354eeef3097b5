"""A runner's report ConfigMap: what the operator takes from it (that an attempt ended and how), and
a report that cannot be read ends the attempt with a reason instead of being retried."""

from __future__ import annotations

import json

from governance.jobs.runnerreport import ENDED, RUNNING, parse, report_body, report_name

JOB = {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
       "metadata": {"name": "bell", "namespace": "team-a", "uid": "job-uid"}}


def test_a_report_round_trips() -> None:
    body = report_body(JOB, 2, ENDED, "warm-runner", {"usage": {"qpuSeconds": "1.5"}, "resultConfigMap": "r"}, 0)
    assert body["metadata"]["name"] == report_name("bell", 2) == "bell-report-2"
    parsed = parse(body)
    assert parsed is not None and (parsed.job, parsed.job_uid, parsed.attempt, parsed.running, parsed.exit_code) == (
        "bell", "job-uid", 2, False, 0)
    assert parsed.report == {"usage": {"qpuSeconds": "1.5"}, "resultConfigMap": "r"} and not parsed.problem
    started = report_body(JOB, 1, RUNNING, "warm-runner")
    # a report of its own per state: the runner creates ConfigMaps, it may not update one
    assert started["metadata"]["name"] == report_name("bell", 1, RUNNING) == "bell-report-1-running"
    running = parse(started)
    assert running is not None and running.running and running.runner == "warm-runner" and running.attempt == 1


def test_an_unreadable_report_names_why() -> None:
    body = report_body(JOB, 1, ENDED, "r", {}, 0)
    body["data"]["report.json"] = "{not json"
    assert "cannot be read" in parse(body).problem
    body["data"]["report.json"] = json.dumps({"attempt": 1, "state": ENDED, "exitCode": "0"})
    assert "no integer exitCode" in parse(body).problem
    body["data"]["report.json"] = json.dumps({"attempt": 7, "state": ENDED, "exitCode": 0})
    assert "names attempt 7, not 1" in parse(body).problem


def test_a_configmap_that_names_no_job_attempt_is_not_a_report() -> None:
    body = report_body(JOB, 1, ENDED, "r", {}, 0)
    body["metadata"]["name"] = "bell-report-x"
    assert parse(body) is None
    body["metadata"]["ownerReferences"] = []
    assert parse(body) is None
