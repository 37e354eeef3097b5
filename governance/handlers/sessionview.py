"""What the job handlers need to know of QiskitSessions: which session a job runs in (creating
an automatic batch when it names none), whether that session is open, and how its pods reach
the Runtime session. The session handlers (sessions.py) open, tick and close sessions; both
read sessions through here, so neither needs the other's private names.

What it uses (the API clients, the automatic batches, the config's defaults) is given at start-up:
startup.py builds a SessionDirectory and hands it to the job and session handlers. What needs none
of it (whether a session has ended, is open, has a runner) are the module's functions."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..assessment import Problem
from ..api import GROUP, MANAGED_BY_LABEL, SESSION_LABEL, VERSION, label_value
from .. import providers
from ..api.specs import Backend
from ..providers.base import ExecutorSession
from ..sessions.batching import BatchKey, Batcher
from ..sessions.lifecycle import DEFAULT_MAX_TIME_S, Phase, expired
from ..sessions.status import SessionStatus
from ..jobs import JobStatus
from ..timestamps import parse_iso
from .kube import SESSIONS as PLURAL
from .kube import created
from .pods import token_secret_name
from .config import OperatorConfig

AUTO_BATCH_LABEL = "qgov.dev/auto-batch"


class SessionDirectory:
    def __init__(self, clients: Any, batches: Batcher, config: OperatorConfig) -> None:
        """`clients`: the API clients (`.custom`, `get_session`: one per thread, see kube.Kube); `batches`:
        the automatic Runtime batches of ibm jobs; `config`: the default credential Secret and an
        automatic batch's idle timeout and maximum time."""
        self.clients, self.batches, self.config = clients, batches, config
        self.batch_lock = threading.Lock()

    def credentials_secret(self, name: str | None) -> str:
        """The credential Secret a session or job names, else the operator's default."""
        return name or self.config.ibm_default_secret

    def session_jobs(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The session's jobs, selected by the API server by their session label (jobmarks.py `mark`);
        the label holds 63 characters of the name, the status all of it."""
        jobs = self.clients.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "qiskitjobs", label_selector=f"{SESSION_LABEL}={label_value(name)}")["items"]
        return [j for j in jobs if JobStatus.of(j).session == name]

    def auto_batch(self, namespace: str, backend: Backend, job_uid: str, secret: str) -> str:
        """The automatic batch an ibm job that names no session runs in (created when new)."""
        with self.batch_lock:
            batch = self.batches.assign(BatchKey(namespace, backend.name, secret), job_uid, time.monotonic())
            self.batches.sealed(time.monotonic())
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QiskitSession",
                "metadata": {"name": batch.name, "namespace": namespace,
                             "labels": {AUTO_BATCH_LABEL: "true", MANAGED_BY_LABEL: "qgov"}},
                "spec": {"backend": backend.name, "mode": "batch", "credentialsSecret": secret,
                         "idleTimeout": self.config.batch_idle_seconds,
                         "maxTime": self.config.batch_max_time_seconds}}
        created(lambda: self.clients.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))
        return batch.name

    def session_for_job(self, namespace: str, job_uid: str, requested: str | None, backend: Backend,
                        secret: str | None) -> tuple[str, str] | Problem:
        """(session name, mode) an ibm job runs in, or why it cannot run."""
        if not requested:
            return self.auto_batch(namespace, backend, job_uid, self.credentials_secret(secret)), "batch"
        session = self.clients.get_session(namespace, requested)
        if session is None:
            return Problem("UnknownSession", f"spec.session: no QiskitSession {requested!r} in namespace {namespace!r}")
        spec = session.get("spec") or {}
        if spec.get("backend") != backend.name:
            return Problem("SessionBackendMismatch", f"spec.session: QiskitSession {requested} runs on backend "
                                                     f"{spec.get('backend')}, the job asks for {backend.name}")
        status = SessionStatus.of(session)
        if status.ended:
            return Problem("SessionEnded", f"spec.session: QiskitSession {requested} is {status.phase}; it runs no more jobs")
        return requested, providers.of(backend).session_mode(spec.get("mode"))


def ended_phase(session: dict[str, Any] | None) -> str | None:
    """Closed, Expired or Failed (or gone); Expired too once maxTime has passed, before the timer says so."""
    if session is None:
        return "gone"
    status = SessionStatus.of(session)
    if status.ended:
        return status.phase
    if status.opened_time:
        max_time = (session.get("spec") or {}).get("maxTime", DEFAULT_MAX_TIME_S)
        if expired(parse_iso(status.opened_time).timestamp(), int(max_time), time.time()):
            return Phase.EXPIRED.value
    return None


def executor_session(session: dict[str, Any]) -> ExecutorSession | None:
    """The remote session an executor pod of this session submits into, once it is open."""
    status = SessionStatus.of(session)
    if not status.live or not status.session_id or ended_phase(session):
        return None
    return ExecutorSession(status.session_id, status.mode or "batch", token_secret_name(session["metadata"]["name"]),
                           status.instance, status.runtime_url, status.search_url, status.catalog_url)


def local_runner(session: dict[str, Any] | None) -> str | None:
    """The runner pod of an open local session (its jobs need no pod of their own)."""
    status = SessionStatus.of(session)
    if status.runner and status.live and not ended_phase(session):
        return status.runner
    return None
