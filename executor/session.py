"""A local session's runner: one long-lived executor pod that runs its session's jobs in turn.

    python -m executor.session --namespace NS --session NAME

Python, qiskit and Aer start once (about 1.3 s here) instead of once per job (about 1 ms of
work for a small circuit). The runner watches the namespace's QiskitJobs, takes those the
operator admitted into this session (labelled qgov.dev/session, status.session, an attempt not yet reported), oldest
first, runs each exactly as a pod-per-job executor would (same code, same result ConfigMaps),
and writes what the attempt did into the attempt's report ConfigMap (governance/jobs/runnerreport.py),
which the operator takes as the signal that it ended; what it is charged comes from the operator's
own source, and the job's status is the operator's alone (the runner may not write it). On
SIGTERM it finishes the job in hand and stops.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from governance.api import GROUP as G
from governance.api import VERSION as V
from governance.jobs import runnerreport
from governance.jobs.phases import ACTIVE

from . import attempt as single

JOBS = "qiskitjobs"


def runnable(job: dict[str, Any], session: str) -> int:
    """The attempt this runner should run for the job, or 0."""
    status = job.get("status") or {}
    if status.get("session") != session or status.get("phase") not in ACTIVE:
        return 0
    if job["metadata"].get("deletionTimestamp") or status.get("retryAt"):
        return 0
    attempt = int(status.get("attempts") or 0)
    return attempt if attempt > int(status.get("countedAttempt") or 0) else 0


class Runner:
    def __init__(self, client: Any, namespace: str, session: str) -> None:
        self.custom = client.CustomObjectsApi()
        self.core = client.CoreV1Api()
        self.client, self.namespace, self.session = client, namespace, session
        self.todo: queue.Queue[tuple[dict[str, Any], int]] = queue.Queue()
        self.seen: set[tuple[str, int]] = set()  # (job uid, attempt) queued once
        self.stopping = threading.Event()
        self.backends: dict[str, dict[str, Any]] = {}

    def _offer(self, job: dict[str, Any]) -> None:
        attempt = runnable(job, self.session)
        key = (job["metadata"]["uid"], attempt)
        if attempt and key not in self.seen:
            self.seen.add(key)
            self.todo.put((job, attempt))

    def watch(self) -> None:
        """Feed the queue from a list, then a watch (re-listed when the watch ends)."""
        import kubernetes

        from governance.api import SESSION_LABEL, label_value

        mine = f"{SESSION_LABEL}={label_value(self.session)}"  # the operator labels the session's jobs
        while not self.stopping.is_set():
            try:
                listing = self.custom.list_namespaced_custom_object(G, V, self.namespace, JOBS, label_selector=mine)
                items = sorted(listing.get("items", []), key=lambda j: j["metadata"].get("creationTimestamp", ""))
                for job in items:
                    self._offer(job)
                stream = kubernetes.watch.Watch().stream(
                    self.custom.list_namespaced_custom_object, G, V, self.namespace, JOBS, label_selector=mine,
                    resource_version=listing["metadata"].get("resourceVersion"), timeout_seconds=60)
                for event in stream:
                    if self.stopping.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._offer(event["object"])
            except Exception as exc:  # noqa: BLE001 - the API went away for a moment: list again
                print(f"runner: watch interrupted ({type(exc).__name__}); listing again", flush=True)
                time.sleep(1.0)

    def _backend(self, name: str) -> dict[str, Any]:
        if name not in self.backends:
            self.backends[name] = self.custom.get_cluster_custom_object(G, V, "qiskitbackends", name)
        return self.backends[name]

    def _report(self, job: dict[str, Any], attempt: int, state: str, outcome: dict[str, Any] | None = None,
                code: int | None = None) -> None:
        """Create the attempt's report ConfigMap for `state` (one per state: the runner never updates
        a ConfigMap). One that exists already was this runner's before a restart: left as it is."""
        from governance.kubeerrors import created

        body = runnerreport.report_body(job, attempt, state, os.environ.get("HOSTNAME", ""), outcome, code)
        created(lambda: self.core.create_namespaced_config_map(self.namespace, body))

    def _ended(self, job: dict[str, Any], attempt: int) -> bool:
        """Whether this attempt was reported ended already (a runner restarted after reporting it)."""
        from governance.kubeerrors import unless_gone

        name = runnerreport.report_name(job["metadata"]["name"], attempt, runnerreport.ENDED)
        cm = unless_gone(lambda: self.core.read_namespaced_config_map(name, self.namespace))
        if cm is None:
            return False
        return f'"state":"{runnerreport.ENDED}"' in ((cm.data or {}).get(runnerreport.REPORT_KEY) or "")

    def run_one(self, job: dict[str, Any], attempt: int) -> None:
        """Run one attempt and report it in its ConfigMap. The job is as the watch last showed it; a
        report for a deleted job is garbage-collected with it, one for a stale attempt is ignored."""
        if self._ended(job, attempt):
            return
        self._report(job, attempt, runnerreport.RUNNING)
        try:
            backend = self._backend(job["spec"]["backend"])
        except Exception as exc:  # noqa: BLE001 - reported like any failed attempt; the operator decides
            outcome, code = {"error": single.describe(exc)}, 1
        else:
            outcome, code = single.run_attempt(self.client, job, backend, attempt=attempt, session=self.session)
        self._report(job, attempt, runnerreport.ENDED, outcome, code)

    def serve(self) -> int:
        threading.Thread(target=self.watch, daemon=True).start()
        print(f"runner for session {self.namespace}/{self.session} ready", flush=True)
        while not self.stopping.is_set():
            try:
                job, attempt = self.todo.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.run_one(job, attempt)
            except Exception as exc:  # noqa: BLE001 - one job's API trouble must not stop the session
                print(f"runner: job {job['metadata']['name']} attempt {attempt}: {type(exc).__name__}: {exc}",
                      flush=True)
                self.seen.discard((job["metadata"]["uid"], attempt))  # offered again by the next event or listing
        return 0


def warm_up() -> None:
    """Pay the imports and the transpiler's first run once, before saying ready, not in the first job."""
    from qiskit import QuantumCircuit, transpile
    from qiskit_aer import AerSimulator

    circuit = QuantumCircuit(1, 1)
    circuit.h(0)
    circuit.measure(0, 0)
    simulator = AerSimulator()
    simulator.run(transpile(circuit, simulator), shots=1).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="executor.session")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--session", required=True)
    args = parser.parse_args(argv)
    warm_up()

    runner = Runner(single.load_client(), args.namespace, args.session)
    signal.signal(signal.SIGTERM, lambda *_: runner.stopping.set())
    return runner.serve()


if __name__ == "__main__":
    sys.exit(main())
