"""A local session's runner: one long-lived executor pod that runs its session's jobs in turn.

    python -m executor.session --namespace NS --session NAME

Python, qiskit and Aer start once (about 1.3 s here) instead of once per job (about 1 ms of
work for a small circuit). The runner watches the namespace's QiskitJobs, takes those the
operator admitted into this session (labelled qgov.dev/session, status.session, an attempt not yet reported), oldest
first, runs each exactly as a pod-per-job executor would (same code, same result ConfigMaps),
and writes what the attempt did into the job's status.report, where the operator charges and
settles it. On SIGTERM it finishes the job in hand and stops.
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

from . import __main__ as single

G, V, JOBS = "qgov.dev", "v1alpha1", "qiskitjobs"


def runnable(job: dict[str, Any], session: str) -> int:
    """The attempt this runner should run for the job, or 0."""
    status = job.get("status") or {}
    if status.get("session") != session or status.get("phase") not in ("Admitted", "Running"):
        return 0
    if job["metadata"].get("deletionTimestamp") or status.get("retryAt"):
        return 0
    attempt = int(status.get("attempts") or 0)
    reported = int((status.get("report") or {}).get("attempt") or 0)
    return attempt if attempt > reported and attempt > int(status.get("countedAttempt") or 0) else 0


class Runner:
    def __init__(self, client: Any, namespace: str, session: str) -> None:
        self.custom = client.CustomObjectsApi()
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

    def run_one(self, job: dict[str, Any], attempt: int) -> None:
        """Run one attempt. The job is as the watch last showed it; the status patch below fails
        (404) if it was deleted since, and a report for a stale attempt is ignored by the operator."""
        name = job["metadata"]["name"]
        self.custom.patch_namespaced_custom_object_status(G, V, self.namespace, JOBS, name, {"status": {
            "phase": "Running", "podName": os.environ.get("HOSTNAME", ""),
            "startTime": (job.get("status") or {}).get("startTime") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}})
        try:
            backend = self._backend(job["spec"]["backend"])
        except Exception as exc:  # noqa: BLE001 - reported like any failed attempt; the operator decides
            outcome, code = {"error": single.describe(exc)}, 1
        else:
            outcome, code = single.run_attempt(self.client, job, backend, attempt=attempt, session=self.session)
        report = {"attempt": attempt, "exitCode": code, **outcome}
        self.custom.patch_namespaced_custom_object_status(G, V, self.namespace, JOBS, name,
                                                          {"status": {"report": report}})

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
