"""What a job's attempts are charged, from sources no namespace member can write, and the settlement
of its reservation: when it ends, when it is deleted (its finalizer), and for reservations whose
object is gone (reconcile_ledger)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .. import metrics, providers
from ..assessment import Problem
from ..api import GROUP, JOB_UID_LABEL, VERSION
from ..budget.costmodel import Usage
from ..budget.errors import UnknownBudget, UnknownReservation
from ..budget.ledger import Ledger
from ..budget.money import format_amount, format_quantity
from ..budget.types import OPEN_STATES, QueueChange, ReservationState, SettleOutcome
from ..jobs import JobStatus, attempt_charge
from ..jobs.events import Event
from ..jobs.ownpod import carries_claim, foreign_pod
from ..jobs.results import result_names, written_by
from .budgetnotify import BudgetNotifier
from .config import OperatorConfig
from .jobadmission import Admission
from .jobpods import AttemptPods, young
from .jobstatus import usage_of
from .kube import JOBS as PLURAL
from .kube import Kube, emit, unless_gone
from .pods import POD_ENDED, pod_name
from .retrying import NotYet

log = logging.getLogger("qgov.jobs")


class Settlement:
    """Charges ended attempts and settles or releases jobs' reservations. Funds it frees go to
    `start_admitted` (the queue: jobs.py), handed in, not imported."""

    def __init__(self, config: OperatorConfig, ledger: Ledger, kube: Kube, notifier: BudgetNotifier,
                 admission: Admission, pods: AttemptPods,
                 start_admitted: Callable[[tuple[QueueChange, ...] | list[QueueChange]], None]) -> None:
        self.config, self.ledger, self.kube, self.notifier = config, ledger, kube, notifier
        self.admission, self.pods, self.start_admitted = admission, pods, start_admitted
        # (namespace, QiskitSession name, Runtime job id) -> (IBM's metered usage | None, why none):
        # set by startup.py once the session handlers (which hold the credentials) exist
        self.metering: Any = None

    def result_written(self, job: dict[str, Any], attempt: int) -> bool:
        """Whether attempt `attempt` wrote the job's result (governance/jobs/results.py): a ConfigMap
        only that attempt's executor pod can create, so the attempt ran to its end whatever its pod
        says now (deleted, or killed through `kubectl exec`, after it wrote the result)."""
        meta = job["metadata"]
        for name in result_names(meta["name"], attempt):
            configmap = unless_gone(lambda: self.kube.core.read_namespaced_config_map(name, meta["namespace"]))
            if configmap is not None and written_by(
                    self.kube.core.api_client.sanitize_for_serialization(configmap)["metadata"], meta["uid"], attempt):
                return True
        return False

    def trusted_charge(self, job: dict[str, Any], attempt: int, succeeded: bool,
                       report: dict[str, Any]) -> tuple[int, str, str, bool]:
        """What an ended attempt is charged, from sources no namespace member can write: (micro-units
        in the budget's unit, QPU-seconds, where the figure came from, whether it failed after it
        wrote its result). The provider says which
        source counts (Provider.charged_usage): the model of the admitted circuits the ledger
        recorded, or IBM's meter for the attempt's Runtime job, read here and checked to be in the
        Runtime session qgov opened for the job. What the report says is never charged. A failed
        attempt that wrote its result counts as one that ran: its work was done."""
        produced = not succeeded and self.result_written(job, attempt)
        succeeded = succeeded or produced
        terms = self.admission.terms(job)
        backend = self.admission.load_backend(terms.backend)
        if isinstance(backend, Problem):  # deleted since admission: its prices are unknown
            return 0, "0", f"nothing: backend {terms.backend} is gone, its prices are unknown", produced
        provider = providers.of(backend)
        modelled = Usage(qpu_seconds=Decimal(terms.model_qpu_seconds), cpu_seconds=Decimal(terms.model_cpu_seconds),
                         shots=terms.model_shots, tasks=terms.model_tasks)
        metered, note = None, ""
        runtime_job = report.get("runtimeJob")
        if provider.metered and runtime_job and terms.session and self.metering is not None and \
                not terms.paid_by_session:
            metered, note = self.metering(job["metadata"]["namespace"], terms.session, str(runtime_job))
        usage = provider.charged_usage(modelled, metered, succeeded)
        if usage is None:
            return 0, "0", "nothing: the attempt failed and no metered work of it was found", produced
        if metered is not None and usage is metered:
            source = f"IBM's meter for Runtime job {runtime_job}"
        else:
            source = "the model of the admitted circuits" + (f" ({note})" if note else "")
        if produced:
            source += " (the attempt failed after it wrote its result)"
        charge = attempt_charge(usage, backend.prices, terms.unit, terms.paid_by_session)
        return charge, format_quantity(usage.qpu_seconds), source, produced

    def settle(self, job: dict[str, Any], used: int) -> tuple[int, str]:
        """Settle the job's reservation (keyed by its UID) with what all its counted attempts were
        charged: (what was charged, a note when it was a late charge). The work ran, so it is charged
        even when its reservation is no longer held (`ran=True`). Whether a budget pays is the
        ledger's (the job's terms and reservation), not the status'. A ledger that cannot be reached
        raises; the caller is retried (retrying.py)."""
        terms = self.admission.terms(job)
        if not terms.budget:
            return used, ""
        try:
            outcome = self.ledger.settle(job["metadata"]["uid"], used, ran=True)
        except UnknownReservation:
            message = (f"the ledger has no reservation for this job, so its {format_amount(used)} "
                       f"{terms.unit} could not be charged (see `qgov ledger audit`)")
            emit(job, Event("Warning", "NotInLedger", message))
            return 0, message
        metrics.job_settled(job, outcome)
        self.start_admitted(outcome.queue_changes)
        if not outcome.late:
            return outcome.actual_micro, ""
        note = "a late charge: its reservation had been released before it was settled"
        if not outcome.replayed:
            self._late_charge_events(job, outcome)
        return outcome.actual_micro, note

    def _late_charge_events(self, job: dict[str, Any], outcome: SettleOutcome) -> None:
        """Say so on the job and its budget: a late charge means money moved outside a hold."""
        meta, terms = job["metadata"], self.admission.terms(job)
        message = (f"charged {format_amount(outcome.actual_micro, terms.unit)} after its reservation had been "
                   "released (a late charge, recorded in the ledger as an overrun)")
        emit(job, Event("Warning", "LateCharge", message))
        self.notifier.budget_event(meta["namespace"], terms.budget.partition("/")[2], "Warning", "LateCharge",
                                   f"QiskitJob {meta['name']}: {message}")

    def finalize_job(self, job: dict[str, Any]) -> None:
        """Release an unused reservation, or settle what ran; stop the executor."""
        namespace, uid = job["metadata"]["namespace"], job["metadata"]["uid"]
        status = JobStatus.of(job)
        selector = f"{JOB_UID_LABEL}={uid}"
        totals = self.ledger.attempt_totals(uid)
        for pod in self.kube.core.list_namespaced_pod(namespace, label_selector=selector).items:
            # attempts that finished but were never counted (say, while the operator was down) still
            # cost: the operator's own pods only, charged from the trusted source
            body = self.kube.core.api_client.sanitize_for_serialization(pod)
            label = (pod.metadata.labels or {}).get("qgov.dev/attempt", "0")
            attempt = int(label) if label.isdigit() else 0
            if not attempt or totals.counted(attempt) or not pod.status or pod.status.phase not in POD_ENDED:
                continue
            if foreign_pod(body, uid, pod_name(job["metadata"]["name"], attempt), self.config.executor_image,
                           self.pods.attempt_pod_uid(uid, attempt, body)):
                if young(body) and carries_claim(body, self.ledger.attempt_pod(uid, attempt)):
                    # created a moment ago under the attempt's claim: its creator may be recording it
                    raise NotYet(f"pod {namespace}/{pod.metadata.name} is not recorded as attempt {attempt}'s (yet)")
                continue
            report = usage_of(body)[0]
            charge, qpu, source, _ = self.trusted_charge(job, attempt, pod.status.phase == "Succeeded", report)
            totals = self.ledger.count_attempt(uid, attempt, charge, qpu, source)
        used = totals.used_micro
        self.kube.core.delete_collection_namespaced_pod(namespace, label_selector=selector)
        try:
            reservation = self.ledger.reservation(uid)
        except UnknownReservation:
            return
        if used > 0 and reservation.state != ReservationState.SETTLED:  # it ran: charged, late if its hold was gone
            outcome = self.ledger.settle(uid, used, ran=True)
            metrics.job_settled(job, outcome)
            if outcome.late and not outcome.replayed:
                self._late_charge_events(job, outcome)
            self.start_admitted(outcome.queue_changes)
        elif reservation.state in OPEN_STATES:
            self.start_admitted(self.ledger.release(uid).queue_changes)
        if status.budget:
            self.notifier.refresh_budget_status(namespace, status.budget)

    def reconcile_ledger(self, jobs: list[dict[str, Any]] | None = None,
                         sessions: list[dict[str, Any]] | None = None,
                         open_keys: list[str] | None = None) -> list[str]:
        """No reservation stays held or queued for a job (or dedicated session) that is gone; returns
        the keys released. Run on start and by the pod sweep.

        Never releases a live one. Another operator (a rolling update, a failover) may be admitting
        work meanwhile, so absence from a list proves nothing unless the reservation was read BEFORE
        the list: the object exists before its reservation does, and a UID never comes back, so a
        reservation read first whose object is missing from a later list was deleted. Even then the
        object is read once more by name before the release. Pass `open_keys` read before `jobs` and
        `sessions` were listed, or nothing to have all three read here in that order."""
        if open_keys is None:
            open_keys = self.ledger.open_reservations()
        if not open_keys:
            return []
        if jobs is None:
            jobs = self.kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL).get("items", [])
        if sessions is None:
            sessions = self.kube.custom.list_cluster_custom_object(GROUP, VERSION, "qiskitsessions").get("items", [])
        alive = {o["metadata"]["uid"] for o in jobs + sessions}
        released = []
        for key in open_keys:
            if key in alive:
                continue
            try:
                reservation = self.ledger.reservation(key)
                if reservation.state not in OPEN_STATES or self._owner_exists(reservation.job, key):
                    continue
                self.start_admitted(self.ledger.release(key).queue_changes)
            except (UnknownReservation, UnknownBudget):
                continue
            released.append(key)
            log.info(f"released the reservation of {reservation.job or key}: its object (uid {key}) no longer exists")
        return released

    def _owner_exists(self, owner: str, uid: str) -> bool:
        """Whether the QiskitJob ("namespace/name") or QiskitSession ("namespace/session/name") that a
        reservation names still exists with that UID, read now from the API server."""
        namespace, _, rest = owner.partition("/")
        plural, name = ("qiskitsessions", rest.partition("/")[2]) if rest.startswith("session/") else (PLURAL, rest)
        if not namespace or not name:
            return False
        obj = self.kube.get_object(plural, namespace, name)
        return obj is not None and obj["metadata"]["uid"] == uid
