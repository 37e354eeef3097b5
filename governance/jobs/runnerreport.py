"""A local session's runner reports each attempt in a ConfigMap of its own, not in the job's status.

The runner (executor/session.py) runs as the namespace's qgov-executor ServiceAccount, which a
namespace member can run pods as or impersonate: whatever it writes, a tenant can write. So its
report lives in a ConfigMap owned by the job, with a deterministic name per attempt, and the
operator reads it only as the signal that the attempt runs or ended and whether it succeeded;
what the attempt is charged comes from the trusted source (Provider.charged_usage). The job's
status is the operator's alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REPORT_LABEL = "qgov.dev/runner-report"  # on a runner's report ConfigMaps (the operator watches these)
REPORT_KEY = "report.json"
RUNNING, ENDED = "Running", "Ended"


def report_name(job_name: str, attempt: int, state: str = ENDED) -> str:
    """Deterministic: one per attempt and state, so a replayed report changes nothing, and a runner
    only ever creates ConfigMaps (it may not update one): `<job>-report-<n>-running` when the attempt
    starts, `<job>-report-<n>` when it ended."""
    return f"{job_name}-report-{attempt}{'-running' if state == RUNNING else ''}"[:253]


def report_body(job: Mapping[str, Any], attempt: int, state: str, runner: str,
                outcome: Mapping[str, Any] | None = None, exit_code: int | None = None) -> dict[str, Any]:
    """The ConfigMap a runner writes for the attempt: that it runs, or how it ended."""
    from ..api import JOB_LABEL, JOB_UID_LABEL, label_value

    meta = job["metadata"]
    payload: dict[str, Any] = {"attempt": attempt, "state": state, "runner": runner}
    if state == ENDED:
        payload.update(exitCode=exit_code, **(outcome or {}))
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": report_name(meta["name"], attempt, state), "namespace": meta["namespace"],
        "labels": {REPORT_LABEL: "true", JOB_LABEL: label_value(meta["name"]), JOB_UID_LABEL: meta["uid"]},
        "ownerReferences": [{"apiVersion": job.get("apiVersion", "qgov.dev/v1alpha1"), "kind": "QiskitJob",
                             "name": meta["name"], "uid": meta["uid"], "controller": True,
                             "blockOwnerDeletion": True}]},
        "data": {REPORT_KEY: json.dumps(payload, separators=(",", ":"))}}


@dataclass(frozen=True)
class RunnerReport:
    job: str
    job_uid: str
    attempt: int
    running: bool
    exit_code: int | None
    runner: str
    report: Mapping[str, Any] = field(default_factory=dict)  # what the attempt said (error, usage, result ...)
    problem: str = ""  # the report could not be read: the attempt ended, and this is why it failed


def parse(configmap: Mapping[str, Any]) -> RunnerReport | None:
    """A report ConfigMap as the operator takes it; None when it names no job and attempt (nothing
    to act on). A report that names them but cannot be read ends the attempt with `problem`."""
    meta = configmap.get("metadata") or {}
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "QiskitJob"), None)
    if owner is None or not owner.get("name") or not owner.get("uid"):
        return None
    prefix = f"{owner['name']}-report-"
    suffix = str(meta.get("name") or "")[len(prefix):] if str(meta.get("name") or "").startswith(prefix) else ""
    suffix = suffix.removesuffix("-running")
    if not suffix.isdigit() or int(suffix) < 1:
        return None
    attempt = int(suffix)
    text = ((configmap.get("data") or {}).get(REPORT_KEY)) or ""
    try:
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return RunnerReport(owner["name"], owner["uid"], attempt, False, None, "", {},
                            f"the runner's report for attempt {attempt} cannot be read ({exc})")
    if payload.get("attempt") != attempt:
        return RunnerReport(owner["name"], owner["uid"], attempt, False, None, "", {},
                            f"the runner's report names attempt {payload.get('attempt')!r}, not {attempt}")
    runner = str(payload.get("runner") or "")
    if payload.get("state") == RUNNING:
        return RunnerReport(owner["name"], owner["uid"], attempt, True, None, runner)
    code = payload.get("exitCode")
    if not isinstance(code, int) or isinstance(code, bool):
        return RunnerReport(owner["name"], owner["uid"], attempt, False, None, runner,
                            {k: v for k, v in payload.items() if k in ("error", "usage")},
                            f"the runner's report for attempt {attempt} has no integer exitCode ({code!r})")
    report = {k: v for k, v in payload.items() if k not in ("attempt", "state", "runner", "exitCode")}
    return RunnerReport(owner["name"], owner["uid"], attempt, False, code, runner, report)
