"""QiskitSession handlers: open IBM Runtime sessions, keep their tokens fresh, close them on time.

A session opens when its QiskitSession is created (after the instance's usage and, for a
dedicated session, the budget say yes), closes (accepting_jobs=false) once it has had no work
for idleTimeout, never outlives maxTime, and is cancelled when its QiskitSession is deleted.
The API key stays in the operator: executor pods mount `<session>-token`, a Secret holding the
current bearer token, which the session timer rotates before the token is due.

The decisions (idle, expire, finish, re-queue) are governance/sessions/lifecycle.py's; the
Runtime calls are governance/providers/ibm/runtime_api.py's. Here they meet the Kubernetes API.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from functools import partial
from typing import Any

import kopf

from .. import metrics, providers
from ..assessment import Problem
from ..api import GROUP, VERSION
from ..api.specs import Backend, SessionSpec, SpecError, parse_session
from ..budget.errors import InvalidTransition, UnknownBudget, UnknownReservation
from ..budget.ledger import Ledger
from ..budget.money import format_amount, format_quantity
from ..budget.types import Decision, ReservationState, ReserveRequest
from ..jobs.events import Event
from ..jobs import ACTIVE, JobStatus
from ..jobs import Phase as JobPhase
from ..jobs.placement import waits_for
from ..sessions.lifecycle import Action, Phase, SessionView, decide
from ..sessions.status import SessionStatus
from ..providers.ibm.runtime_api import RuntimeApiError
from ..sessions.tokens import TokenError, TokenManager
from ..snapshot import ClusterSnapshot
from .budgetnotify import BudgetNotifier
from ..conditions import set_condition
from ..timestamps import iso, now_iso, parse_iso
from .config import OperatorConfig, session_interval_seconds
from .pods import (POD_ENDED, SESSION_RUNNER_LABEL, owner_name, runner_pod_name, session_runner_pod,
                   token_secret_name)
from .retrying import HANDLER_RETRY_SECONDS, run_retrying
from .context import KopfContext
from .jobs import Jobs
from .jobstatus import JobRef
from .kube import Kube, created, discard, emit
from .sessioncredentials import SessionCredentials, TokenSecretTaken
from .sessionview import SessionDirectory, local_runner

PLURAL = "qiskitsessions"


def _stalled_on_secret(status: SessionStatus) -> bool:
    return any(c.get("type") == "Ready" and c.get("reason") == TokenSecretTaken.reason for c in status.conditions)


def _last_activity(status: SessionStatus, jobs: list[dict[str, Any]]) -> float:
    moments = [status.last_activity, status.opened_time]
    for job in jobs:
        js = JobStatus.of(job)
        moments += [js.start_time, js.completion_time]
    return max(parse_iso(m).timestamp() for m in moments if m)


def _live(status: Any, **_: Any) -> bool:
    """Only open and draining sessions have a timer: kopf stops it when this turns false, so the
    closed sessions that pile up (every automatic batch leaves one) cost nothing."""
    return SessionStatus.parse(status or {}).live


MAX_RUNNER_RESTARTS = 3


class Sessions:
    """What the QiskitSession handlers use, given at start-up (startup.py) rather than looked up:
    the ledger (a dedicated session's reservation and settlement), the API (kube.Kube), the IBM
    token cache, the operator's config, the budgets' units (shared with admission), the job
    handlers' object (a session's jobs start, fail and are charged there), what sessions tell
    budgets (budgetnotify.py), the sessions' directory (sessionview.py), and whether the operator
    is running. The kopf handlers below find it in kopf's memo (`memo.sessions`); the pod sweep is
    given it to re-create runners."""

    def __init__(self, ledger: Ledger, clients: Kube, tokens: TokenManager, config: OperatorConfig,
                 snapshot: ClusterSnapshot, jobs: Jobs, notifier: BudgetNotifier,
                 directory: SessionDirectory, kopf_context: KopfContext) -> None:
        self.ledger, self.clients, self.tokens, self.config = ledger, clients, tokens, config
        self.snapshot, self.jobs, self.notifier, self.directory = snapshot, jobs, notifier, directory
        self.kopf_context = kopf_context
        # its IBM credential and token (sessioncredentials.py)
        self.credentials = SessionCredentials(clients, tokens, directory, jobs.admission)

    def _wall_cost(self, session: dict[str, Any], seconds: int) -> int:
        """What `seconds` of a dedicated session cost: its backend's QPU-second price, in its budget's unit."""
        backend = self.jobs.admission.load_backend(session["spec"]["backend"])
        if isinstance(backend, Problem):
            return 0
        unit = SessionStatus.of(session).currency
        return providers.of(backend).session_cost(seconds, backend.prices, unit)

    def _summary(self, session: dict[str, Any], jobs: list[dict[str, Any]], now: float,
                 closed_time: str | None = None) -> dict[str, Any]:
        """Counts, usage and cost: a batch charges its jobs; a dedicated session its wall-clock time,
        until `closed_time` (else the closedTime its status shows, else `now`)."""
        status = SessionStatus.of(session)
        usage = sum(JobStatus.of(j).qpu_seconds for j in jobs)
        if status.mode == "dedicated" and not status.runner:
            opened = _opened(session, status)
            closed_at = closed_time or status.closed_time
            closed = parse_iso(closed_at).timestamp() if closed_at else now
            seconds = int(max(0.0, closed - opened))
            cost = self._wall_cost(session, seconds)
            return {"jobs": len(jobs), "usageSeconds": format_quantity(usage), "wallSeconds": seconds, "cost": format_amount(cost)}
        cost = sum(JobStatus.of(j).used_micro for j in jobs)
        return {"jobs": len(jobs), "usageSeconds": format_quantity(usage), "cost": format_amount(cost)}

    def _stop_runner(self, namespace: str, name: str) -> None:
        self.clients.delete_pod(namespace, runner_pod_name(name))

    def _fail_unreported(self, namespace: str, session_name: str, runner: str) -> None:
        for job in self.directory.session_jobs(namespace, session_name):
            status = JobStatus.of(job)
            if status.phase in ACTIVE and status.attempts > status.counted_attempt and not status.retry_at:
                ref = JobRef.of(job)
                run_retrying(f"job {namespace}/{ref.name}: runner {runner} stopped",
                             partial(self._fail_unreported_attempt, ref, status.attempts, runner),
                             watcher=self.jobs.watcher(ref))

    def _fail_unreported_attempt(self, ref: JobRef, attempt: int, runner: str) -> None:
        """An attempt the stopped runner never reported fails like a lost pod (a retry reads the job afresh)."""
        fresh = self.clients.get_job(ref.namespace, ref.name)
        if fresh is not None and fresh["metadata"]["uid"] == ref.uid and \
                JobStatus.of(fresh).counted_attempt < attempt:
            self.jobs.attempts.attempt_finished(
                fresh, attempt, False, {"error": f"the session runner {runner} stopped before the job finished"}, 137)

    def _patch(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.clients.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})

    def _fail(self, session: dict[str, Any], reason: str, message: str, patch: kopf.Patch) -> None:
        """The session cannot open; the jobs waiting for it fail with this reason (written first, so they see it)."""
        meta = session["metadata"]
        emit(session, Event("Warning", reason, message))
        self._patch(meta["namespace"], meta["name"], {
            "phase": Phase.FAILED.value, "message": message, "closedTime": now_iso(),
            "conditions": set_condition(SessionStatus.of(session).conditions, "Ready", False, reason, message,
                                        meta.get("generation"))})
        self.jobs.start_session_jobs(meta["namespace"], meta["name"])

    def _dedicated_reservation(self, session: dict[str, Any], spec: SessionSpec,
                               backend: Backend) -> Problem | tuple[int, str]:
        """A dedicated session is billed for its wall-clock time: reserve maxTime × price up front."""
        meta = session["metadata"]
        choice = self.jobs.admission.choose_budget(meta["namespace"], None)
        if isinstance(choice, Problem):
            return choice
        if choice is None:  # unbudgeted work is allowed: nothing to reserve
            return 0, "USD"
        amount = providers.of(backend).session_cost(spec.max_time_s, backend.prices, choice[1])
        try:
            outcome = self.ledger.reserve(ReserveRequest(meta["uid"], meta["namespace"], choice[0], amount,
                                                        job=f"{meta['namespace']}/session/{meta['name']}",
                                                        backend=backend.name, session=meta["name"]))
        except UnknownBudget as exc:
            return Problem("UnknownBudget", str(exc))
        self.notifier.refresh_budget_status(meta["namespace"], choice[0])  # its status (and gauges) show the hold
        if outcome.decision is Decision.ADMITTED:
            return amount, choice[1]
        if outcome.decision is Decision.QUEUED:  # a session waits for no one: it opens now or not at all
            self.ledger.release(meta["uid"])
        return Problem("BudgetExceeded", f"a dedicated session is billed for its wall-clock time: maxTime "
                                         f"{spec.max_time_s}s costs up to {format_amount(amount, choice[1])}, and "
                                         f"{outcome.message or 'the budget cannot pay that now'}; lower spec.maxTime "
                                         "or use mode: batch")

    def on_session(self, body: kopf.Body, namespace: str, name: str, patch: kopf.Patch) -> None:
        session = dict(body)
        status = SessionStatus.of(session)
        if status.ended:
            return
        if status.session_id:  # resume: already open
            self.jobs.start_session_jobs(namespace, name)
            return
        try:
            spec = parse_session(dict(session.get("spec") or {}))
        except SpecError as exc:
            return self._fail(session, "InvalidSpec", str(exc), patch)
        backend = self.jobs.admission.load_backend(spec.backend)
        if isinstance(backend, Problem):
            return self._fail(session, backend.reason, backend.message, patch)
        if not providers.of(backend).remote_sessions:
            return self._open_local(session, spec, backend)
        try:
            self.credentials.token_secret_free(session)
        except TokenSecretTaken as exc:
            return self._fail(session, TokenSecretTaken.reason, str(exc), patch)
        try:
            credential, api = self.credentials.runtime_api(namespace, spec, backend)
            usage = api.instance_usage()
        except (TokenError, RuntimeApiError) as exc:
            reason = exc.reason if isinstance(exc, TokenError) else (
                "CredentialsRefused" if exc.status in (401, 403) else "RuntimeUnavailable")
            if reason in ("IamUnavailable", "RuntimeUnavailable"):  # IBM's outage passes: look again later
                emit(session, Event("Warning", reason, str(exc)))
                raise kopf.TemporaryError(str(exc), delay=self.config.instance_retry_seconds) from None
            return self._fail(session, reason, str(exc), patch)
        if usage.limit_reached:
            message = (f"the IBM instance is at its usage limit ({usage.consumed_seconds}s used of "
                       f"{usage.limit_seconds}s); the session opens when time is available, nothing was submitted")
            emit(session, Event("Warning", "InstanceLimitReached", message))
            self._patch(namespace, name, {"phase": Phase.PENDING.value, "message": message, "conditions": set_condition(
                status.conditions, "Ready", False, "InstanceLimitReached", message,
                session["metadata"].get("generation"))})
            raise kopf.TemporaryError(message, delay=self.config.instance_retry_seconds)
        reserved, unit = 0, "USD"
        if spec.mode == "dedicated":
            outcome = self._dedicated_reservation(session, spec, backend)
            if isinstance(outcome, Problem):
                return self._fail(session, outcome.reason, outcome.message, patch)
            reserved, unit = outcome
        try:
            session_id = api.create_session(backend.backend_name, spec.mode, spec.max_time_s)
        except (TokenError, RuntimeApiError) as exc:
            self._release(session)
            return self._fail(session, "RuntimeRefused", f"IBM Quantum did not open the session: {exc}", patch)
        try:
            expiry = self.credentials.fresh_token(session, credential)
        except (TokenError, RuntimeApiError, TokenSecretTaken) as exc:
            with contextlib.suppress(RuntimeApiError):  # nothing may run in it: close it at once
                api.close_session(session_id)
            self._release(session)
            if isinstance(exc, TokenSecretTaken):
                return self._fail(session, TokenSecretTaken.reason, str(exc), patch)
            return self._fail(session, "RuntimeRefused", f"IBM Quantum did not open the session: {exc}", patch)
        opened = now_iso()
        message = f"Runtime {spec.mode} session {session_id} open on {backend.backend_name}"
        emit(session, Event("Normal", "SessionOpened", message))
        if spec.mode == "dedicated":
            metrics.dedicated_opened(session)
        self._patch(namespace, name, {
            "phase": Phase.OPEN.value, "sessionId": session_id, "mode": spec.mode, "ibmBackend": backend.backend_name,
            "instance": credential.instance, "runtimeUrl": credential.url, "searchUrl": credential.search_url,
            "catalogUrl": credential.catalog_url, "openedTime": opened, "lastActivity": opened, "tokenExpiry": expiry,
            "jobs": 0, "usageSeconds": "0", "cost": "0.00", "reservedMicro": str(reserved), "currency": unit,
            "message": message,
            "conditions": set_condition(status.conditions, "Ready", True, "SessionOpen", message,
                                        session["metadata"].get("generation"))})
        self.jobs.start_session_jobs(namespace, name)  # jobs admitted before the session opened were waiting for it

    def _open_local(self, session: dict[str, Any], spec: SessionSpec, backend: Backend) -> None:
        """A session on aer or fake: one runner pod runs its jobs in turn. There is no wall-clock
        billing for a local simulator, so its jobs are charged one by one, whatever the mode."""
        meta = session["metadata"]
        self.create_runner(session)
        opened = now_iso()
        message = f"local {spec.mode} session on {backend.name}: runner pod {runner_pod_name(meta['name'])}"
        emit(session, Event("Normal", "SessionOpened", message))
        self._patch(meta["namespace"], meta["name"], {
            "phase": Phase.OPEN.value, "mode": spec.mode, "runner": runner_pod_name(meta["name"]), "openedTime": opened,
            "lastActivity": opened, "jobs": 0, "usageSeconds": "0", "cost": "0.00", "message": message,
            "conditions": set_condition(SessionStatus.of(session).conditions, "Ready", True, "SessionOpen",
                                        message, meta.get("generation"))})
        self.jobs.start_session_jobs(meta["namespace"], meta["name"])

    def create_runner(self, session: dict[str, Any]) -> bool:
        """Create the session's runner pod; False when it exists already (a replay)."""
        body = session_runner_pod(session, self.config.executor_image, self.config.executor_image_pull_policy,
                                  self.config.executor_pod)
        # 409: a replay; the runner exists
        return created(lambda: discard(self.clients.core.create_namespaced_pod(session["metadata"]["namespace"], body,
                                                                               _preload_content=False)))

    def _release(self, session: dict[str, Any]) -> None:
        try:
            self.ledger.release(session["metadata"]["uid"])
        except (UnknownReservation, InvalidTransition, UnknownBudget):
            pass
        self.notifier.refresh_namespace_budgets(session["metadata"]["namespace"])

    def session_tick(self, body: kopf.Body, namespace: str, name: str) -> None:
        """Rotate the token when due; close an idle session; expire one at maxTime; write the counts."""
        if not self.kopf_context.running:
            return
        session = dict(body)
        status = SessionStatus.of(session)
        phase = status.phase
        if not status.live:
            return
        spec = parse_session(dict(session.get("spec") or {}))
        now = time.time()
        jobs = self.directory.session_jobs(namespace, name)
        active = [j for j in jobs if JobStatus.of(j).phase in ACTIVE]
        running = sum(JobStatus.of(j).phase == JobPhase.RUNNING.value for j in active)
        view = SessionView(Phase(phase), _opened(session, status), _last_activity(status, jobs),
                           spec.max_time_s, spec.idle_timeout_s, waiting=len(active) - running, running=running)
        decision = decide(view, now)
        update: dict[str, Any] = {}
        if status.runner:  # local: the runner pod is the session
            if decision.action in (Action.CLOSE, Action.EXPIRE, Action.FINISH):
                self._end(session, Phase.EXPIRED if decision.action is Action.EXPIRE else Phase.CLOSED, decision.reason,
                           jobs, now)
                self._stop_runner(namespace, name)  # after the status says so: a runner that goes is not replaced then
                return
        else:
            stalled = _stalled_on_secret(status)
            try:
                credential, api = self.credentials.runtime_api(namespace, spec)
                update["tokenExpiry"] = self.credentials.fresh_token(session, credential, force=stalled)
            except (TokenError, RuntimeApiError) as exc:
                emit(session, Event("Warning", "TokenRefreshFailed", str(exc)))
                return
            except TokenSecretTaken as exc:  # replaced by someone else: never written over; stalled until freed
                if not stalled:  # (the session still closes and expires on time meanwhile)
                    emit(session, Event("Warning", TokenSecretTaken.reason, str(exc)))
                    update.update(message=str(exc), conditions=set_condition(
                        status.conditions, "Ready", False, TokenSecretTaken.reason, str(exc),
                        session["metadata"].get("generation")))
                stalled = False
            if stalled:  # the name is free again and the token is back in it
                message = f"the token Secret {token_secret_name(name)} is the session's again"
                emit(session, Event("Normal", "TokenSecretRestored", message))
                update.update(message=message, conditions=set_condition(
                    status.conditions, "Ready", True, "SessionOpen", message, session["metadata"].get("generation")))
        if decision.action in (Action.CLOSE, Action.EXPIRE, Action.FINISH):
            try:
                if decision.action is Action.CLOSE or (decision.action is Action.EXPIRE and phase == Phase.OPEN.value):
                    # at maxTime IBM ends the session by itself and cancels what still waits in it (reason
                    # 1305); those executors report MaxTimeExceeded and their jobs move to a new session
                    if status.session_id:  # none yet: IBM has nothing to close
                        api.close_session(status.session_id)
            except RuntimeApiError as exc:
                emit(session, Event("Warning", "RuntimeUnavailable", str(exc)))
                return
            if decision.action is Action.EXPIRE and running:  # the running job finishes first
                message = f"{decision.reason}: it takes no more jobs, and its running jobs finish"
                emit(session, Event("Normal", "SessionDraining", message))
                self._patch(namespace, name, {**update, **self._summary(session, jobs, now),
                                              "phase": Phase.DRAINING.value, "message": message})
                return
            ended = Phase.EXPIRED if decision.action is Action.EXPIRE else Phase.CLOSED
            self._end(session, ended, decision.reason, jobs, now)
            return
        update.update(self._summary(session, jobs, now))

        for job in active if not status.runner else ():  # admitted while the session opened, started by neither
            js = JobStatus.of(job)
            if js.phase == JobPhase.ADMITTED.value and waits_for(name, js.message):
                self.jobs.attempts.create_attempt_pod(job, js.attempts or 1)
        if active:
            update["lastActivity"] = iso(datetime.fromtimestamp(view.last_activity, timezone.utc))
        self._patch(namespace, name, update)

    def _end(self, session: dict[str, Any], phase: Phase, reason: str, jobs: list[dict[str, Any]], now: float) -> None:
        """The session is over: settle what a dedicated session used, say what it saved, write status."""
        meta, status = session["metadata"], SessionStatus.of(session)
        closed = now_iso()
        summary = self._summary(session, jobs, now, closed)
        message = f"session {status.session_id} {phase.value.lower()}: {reason}"
        metrics.session_ended(session, int(summary["jobs"]))
        if status.mode == "dedicated" and not status.runner:
            spent = self._settle_dedicated(session, summary)
            spec = parse_session(dict(session.get("spec") or {}))
            unused = max(0, spec.max_time_s - int(summary["wallSeconds"]))
            message += f"; charged {format_amount(spent)} for {summary['wallSeconds']}s"
            if phase is Phase.CLOSED and unused:
                message += f", {unused}s before maxTime (not billed)"
        emit(session, Event("Normal" if phase is Phase.CLOSED else "Warning", "SessionClosed" if phase is Phase.CLOSED else "SessionExpired", message))
        self._patch(meta["namespace"], meta["name"], {
            "phase": phase.value, "closedTime": closed, "message": message, **summary,
            "conditions": set_condition(status.conditions, "Ready", False,
                                        "Closed" if phase is Phase.CLOSED else "MaxTimeReached", message,
                                        meta.get("generation"))})

    def _settle_dedicated(self, session: dict[str, Any], summary: dict[str, Any]) -> int:
        uid = session["metadata"]["uid"]
        try:
            reservation = self.ledger.reservation(uid)
        except UnknownReservation:
            return 0
        if reservation.state == ReservationState.SETTLED:
            return reservation.actual_micro or 0
        # the session ran for its wall-clock time: charged even if its hold was released (a late charge)
        outcome = self.ledger.settle(uid, self._wall_cost(session, int(summary["wallSeconds"])), ran=True)
        metrics.dedicated_settled(session, self.snapshot.budgets(session["metadata"]["namespace"]) or {}, summary, outcome)
        self.notifier.refresh_namespace_budgets(session["metadata"]["namespace"])  # its budget's status shows the charge
        self.jobs.start_admitted(outcome.queue_changes)
        return outcome.actual_micro

    def on_session_deleted(self, body: kopf.Body, namespace: str, name: str) -> None:
        """Deleting a QiskitSession cancels its Runtime session: queued and running jobs stop."""
        session = dict(body)
        status = SessionStatus.of(session)
        if status.runner:
            self._stop_runner(namespace, name)
            emit(session, Event("Normal", "SessionCancelled",
                                f"runner {status.runner} stopped: the QiskitSession was deleted"))
        elif status.session_id and not status.ended:
            spec = parse_session(dict(session.get("spec") or {}))
            try:
                self.credentials.runtime_api(namespace, spec)[1].cancel_session(status.session_id)
            except (TokenError, RuntimeApiError) as exc:
                emit(session, Event("Warning", "CancelFailed", str(exc)))
                raise kopf.TemporaryError(str(exc), delay=10) from None
            emit(session, Event("Normal", "SessionCancelled",
                                f"Runtime session {status.session_id} cancelled: its QiskitSession was deleted"))
            summary = self._summary(session, self.directory.session_jobs(namespace, name), time.time(), now_iso())
            metrics.session_ended(session, int(summary["jobs"]))
            if status.mode == "dedicated":
                self._settle_dedicated(session, summary)
        else:
            self._release(session)

    def on_runner_pod(self, body: kopf.Body, type: str) -> None:
        """A runner that stops while its session is open is replaced (it re-runs the attempt it had in
        hand: nothing was reported for it, so nothing was charged), a few times at most. A runner that
        stops for good takes its unfinished attempts with it: they fail like a lost pod (transient), so
        they retry, move on, or fail clearly."""
        pod = dict(body)
        phase = (pod.get("status") or {}).get("phase")
        if not self.kopf_context.running or not (type == "DELETED" or phase in POD_ENDED):
            return
        namespace = pod["metadata"]["namespace"]
        session_name = owner_name(pod, "QiskitSession") or pod["metadata"]["labels"][SESSION_RUNNER_LABEL]
        session = self.clients.get_session(namespace, session_name)
        owner = next((o.get("uid") for o in pod["metadata"].get("ownerReferences") or []), None)
        if session is not None and session["metadata"]["uid"] == owner and local_runner(session) \
                and not session["metadata"].get("deletionTimestamp"):
            restarts = SessionStatus.of(session).runner_restarts
            if type != "DELETED":
                self._stop_runner(namespace, session_name)  # crashed: its DELETED event brings the replacement
                return
            if restarts < MAX_RUNNER_RESTARTS:
                message = f"runner {pod['metadata']['name']} stopped ({phase or 'deleted'}); replaced " \
                          f"({restarts + 1} of {MAX_RUNNER_RESTARTS})"
                emit(session, Event("Warning", "RunnerRestarted", message))
                self._patch(namespace, session_name, {"runnerRestarts": restarts + 1, "message": message})
                self.create_runner(session)
                return
            message = f"runner {pod['metadata']['name']} stopped {restarts + 1} times; the session gives up"
            self._patch(namespace, session_name, {"phase": Phase.FAILED.value, "closedTime": now_iso(), "message": message,
                                                  "conditions": set_condition(SessionStatus.of(session).conditions,
                                                                              "Ready", False, "RunnerFailed", message,
                                                                              session["metadata"].get("generation"))})
            emit(session, Event("Warning", "RunnerFailed", message))
        self._fail_unreported(namespace, session_name, pod["metadata"]["name"])


def _opened(session: dict[str, Any], status: SessionStatus) -> float:
    """When the session opened (epoch seconds). A live session's status says so; were it missing,
    its creation, before which it cannot have opened (maxTime then comes no later than it should)."""
    when = status.opened_time or session["metadata"].get("creationTimestamp")
    return parse_iso(when).timestamp() if when else time.time()


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
def on_session(body: kopf.Body, namespace: str | None, name: str, patch: kopf.Patch, memo: kopf.Memo,
               **_: Any) -> None:
    assert namespace is not None  # QiskitSession is namespaced
    memo.sessions.on_session(body, namespace, name, patch)


@kopf.timer(GROUP, VERSION, PLURAL, interval=session_interval_seconds(), initial_delay=session_interval_seconds(),
            backoff=HANDLER_RETRY_SECONDS, when=_live)
def session_tick(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    assert namespace is not None
    memo.sessions.session_tick(body, namespace, name)


@kopf.on.delete(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
def on_session_deleted(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    assert namespace is not None
    memo.sessions.on_session_deleted(body, namespace, name)


@kopf.on.event("", "v1", "pods", labels={SESSION_RUNNER_LABEL: kopf.PRESENT})
def on_runner_pod(body: kopf.Body, type: str, memo: kopf.Memo, **_: Any) -> None:
    memo.sessions.on_runner_pod(body, type)
