"""The pods that should exist, asserted again every QGOV_POD_SWEEP_SECONDS.

The operator watches only qgov's pods that have left Pending (server-side label and field
selectors): created, scheduled, pulling, the Pending events are most of a pod's events, and
nothing in them is the operator's business. What that costs: a pod deleted while still
Pending sends the operator nothing. So a sweep lists qgov's pods now and then and creates
again the executor pod of an Admitted job, or the runner of an open local session, that is
not there. Creating is idempotent (deterministic names; 409 means it exists), so a sweep that
races a creation creates nothing twice; an attempt whose pod never ran costs nothing.

The same sweep says why a job's pod is stuck in Pending (an image that cannot be pulled, a
Secret that is missing, no node that fits): the job's Stalled condition and message name the
kubelet's or the scheduler's reason, instead of a job that stays Admitted without a word.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from ..api import GROUP, MANAGED_BY_LABEL, VERSION
from .pods import pending_problem
from .runtime import rt, started

log = logging.getLogger("qgov.podsweep")


def qgov_pods() -> dict[tuple[str, str], dict[str, Any]]:
    """Every pod qgov created, whatever its phase, by (namespace, name)."""
    answer = rt().core.list_pod_for_all_namespaces(label_selector=f"{MANAGED_BY_LABEL}=qgov",
                                                   _preload_content=False)
    items = json.loads(answer.data).get("items") or []
    return {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in items}


def sweep() -> list[str]:
    """Create the pods that are missing, say why stuck ones do not start; returns the names
    (namespace/name) of the pods created."""
    from .jobs import attempt_placement, create_pod
    from .sessions import _create_runner, local_runner

    pods = qgov_pods()
    created: list[str] = []
    for job in rt().custom.list_cluster_custom_object(GROUP, VERSION, "qiskitjobs").get("items", []):
        meta, status = job["metadata"], job.get("status") or {}
        wanted = (meta["namespace"], status.get("podName") or "")
        if status.get("phase") != "Admitted" or not status.get("podName") or status.get("retryAt") \
                or meta.get("deletionTimestamp"):
            continue
        if wanted in pods:
            report_stalled(job, pods[wanted])
            continue
        placed = attempt_placement(job)
        if placed.kind == "pod":
            create_pod(job, int(status.get("attempts") or 1), placed.runtime)
            created.append("/".join(wanted))
    for session in rt().custom.list_cluster_custom_object(GROUP, VERSION, "qiskitsessions").get("items", []):
        runner = local_runner(session)
        wanted = (session["metadata"]["namespace"], runner or "")
        if runner and wanted not in pods and not session["metadata"].get("deletionTimestamp"):
            _create_runner(session)
            created.append("/".join(wanted))
    return created


def report_stalled(job: dict[str, Any], pod: dict[str, Any]) -> None:
    """Write why the job's pod does not start into its Stalled condition (once per new reason)."""
    from .jobs import _conditions, _patch_status

    problem = pending_problem(pod)
    if problem is None:
        return
    reason, text = problem
    message = f"executor pod {pod['metadata']['name']} cannot start: {reason}: {' '.join(text.split())[:500]}"
    if any(c.get("type") == "Stalled" and c.get("status") == "True" and c.get("message") == message
           for c in (job.get("status") or {}).get("conditions") or []):
        return
    meta = job["metadata"]
    _patch_status(meta["namespace"], meta["name"], {
        "message": message, "conditions": _conditions(job, ("Stalled", True, reason, message))})
    log.warning(f"job {meta['namespace']}/{meta['name']}: {message}")


class PodSweeper:
    """A thread that sweeps every `interval` seconds until stopped."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qgov-pod-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not started():
                continue
            try:
                for name in sweep():
                    log.warning(f"pod {name} was gone before it ran (deleted while Pending?): created again")
            except Exception as exc:  # noqa: BLE001 - a failed sweep is tried again at the next interval
                log.warning(f"pod sweep failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
