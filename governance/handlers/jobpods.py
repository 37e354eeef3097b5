"""An attempt's executor pod: created under a claim recorded in the ledger first (ownpod.py), so
only the pod the operator created is the attempt's; a pod in the way is deleted; a refused
create is said on the job (Stalled)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone
from typing import Any

from .. import metrics
from ..budget.ledger import Ledger
from ..jobs import STALLED, stalled_with
from ..jobs.events import Event
from ..jobs.ownpod import CLAIM_ANNOTATION, CLAIM_PREFIX, adoptable, claim_record, recorded_uid
from ..kubeerrors import Conflict, KubeError, Refused, api_errors
from ..providers.base import ExecutorNeeds
from .config import OperatorConfig
from .identity import missing_account
from ..jobs.status import job_conditions
from .kube import Kube, emit, unless_gone
from .pods import executor_pod
from .retrying import NotYet
from ..timestamps import parse_iso

log = logging.getLogger("qgov.jobs")


# a pod in the way of an attempt's create that the ledger does not know is left alone this long:
# another operator (a failover, a rolling update) records the pod it created within milliseconds
ADOPTION_GRACE_SECONDS = 5.0


class AttemptPods:
    """Creates attempts' executor pods and knows which pod is an attempt's (the ledger's record)."""

    def __init__(self, config: OperatorConfig, ledger: Ledger, kube: Kube) -> None:
        self.config, self.ledger, self.kube = config, ledger, kube

    def create_pod(self, job: dict[str, Any], attempt: int, needs: ExecutorNeeds | None) -> bool:
        """Create the attempt's executor pod and record its UID in the ledger (only that pod is the
        attempt); False when the operator's pod exists already (a replay, or a race). A pod of that
        name the operator did not create is deleted (PodNameTaken) and the creation retried; a
        refusal of the create is said on the job (Stalled) and retried with backoff."""
        meta = job["metadata"]
        body = executor_pod(job, attempt, self.config.executor_image, needs, self.config.executor_image_pull_policy,
                            self.config.executor_pod)
        previous = self.ledger.attempt_pod(meta["uid"], attempt)
        if recorded_uid(previous) is not None:  # a replay (a resume, a second operator): is the recorded pod there?
            name, namespace = body["metadata"]["name"], meta["namespace"]
            existing = unless_gone(lambda: self.kube.core.read_namespaced_pod(name, namespace))
            if existing is not None and existing.metadata.uid == previous:
                return False  # the record stays the pod's UID: its events are never taken for a stranger's
        # claimed before the create, so a pod created by an operator that dies before recording its
        # UID is still known for its own (ownpod.adoptable) and its work is charged; a claim already
        # held is kept, since the pod of the operator that made it may carry it
        claim = previous if previous is not None and previous.startswith(CLAIM_PREFIX) \
            else claim_record(secrets.token_hex(16))
        if not self.ledger.record_pod(meta["uid"], attempt, claim, previous):
            return False  # another operator is creating the attempt's pod, or the attempt was counted
        body["metadata"].setdefault("annotations", {})[CLAIM_ANNOTATION] = claim.removeprefix(CLAIM_PREFIX)
        try:
            with api_errors():
                uid = self.kube.create_pod(meta["namespace"], body)
        except Conflict:
            return self._name_taken(job, attempt, body["metadata"]["name"], previous, claim)
        except Refused as exc:
            self._stalled_on_refusal(job, exc)
            raise
        if not self.ledger.record_pod(meta["uid"], attempt, uid, claim):
            # another operator recorded its own pod for the attempt meanwhile (a failover): this one goes
            self.kube.delete_pod_uid(meta["namespace"], body["metadata"]["name"], uid)
            return False
        return True

    def _name_taken(self, job: dict[str, Any], attempt: int, name: str, previous: str | None, claim: str) -> bool:
        """The attempt's pod name is taken: by the operator's own pod (a replay: False; its record,
        `previous` before this create's `claim`, is put back), or by a pod it did not create, which
        is deleted, said on the job, and replaced (NotYet: retried)."""
        namespace, uid = job["metadata"]["namespace"], job["metadata"]["uid"]
        pod = self.kube.core.read_namespaced_pod(name, namespace)
        body = self.kube.core.api_client.sanitize_for_serialization(pod)
        if pod.metadata.uid == recorded_uid(previous) or adoptable(body, previous, young(body)):
            self.ledger.record_pod(uid, attempt, pod.metadata.uid, claim)
            return False
        recorded = self.ledger.attempt_pod(uid, attempt)
        if pod.metadata.uid == recorded:
            return False
        if recorded_uid(previous) is None and young(body) and pod.metadata.deletion_timestamp is None:
            # maybe another operator's, created a moment ago and not recorded yet (a failover): wait
            # for its record before calling it a squatter
            raise NotYet(f"pod {namespace}/{name} is not recorded as the attempt's pod (yet)")
        message = (f"a pod named {name} that qgov did not create was in the way of attempt {attempt}; qgov "
                   f"deleted it and creates its own (only pods qgov creates run or report a job's attempts)")
        if pod.metadata.deletion_timestamp is None:
            log.warning(f"job {namespace}/{job['metadata']['name']}: {message}")
            emit(job, Event("Warning", "PodNameTaken", message))
        self.kube.delete_pod_uid(namespace, name, pod.metadata.uid)
        raise NotYet(f"pod {namespace}/{name} was taken by a pod qgov did not create; it was deleted")

    def _stalled_on_refusal(self, job: dict[str, Any], exc: KubeError) -> None:
        """The API server refused the attempt's pod (a missing ServiceAccount, Pod Security admission,
        a quota...): say why on the job, once per reason (Stalled, and a Warning Event with the API
        server's words); the money stays held, and the creation is retried with backoff (run_retrying)
        until the cause is fixed or the job is deleted."""
        message = missing_account(exc)
        reason = "ServiceAccountMissing"
        if message is None:
            reason = refusal_reason(exc)
            message = (f"the API server refused the executor pod (HTTP {exc.status} {reason}): "
                       f"{refusal_message(exc)}; qgov keeps the money held and tries again with backoff")
        if stalled_with(job.get("status") or {}, message):
            return
        metrics.pod_stalled(reason)
        meta = job["metadata"]
        self.kube.patch_job_status(meta["namespace"], meta["name"], {
            "message": message, "conditions": job_conditions(job, (STALLED, True, reason, message))})
        emit(job, Event("Warning", reason, message))

    def attempt_pod_uid(self, job_uid: str, attempt: int, pod: dict[str, Any]) -> str | None:
        """The UID of the pod the operator created for the attempt, as the ledger records it; `pod`,
        found in the attempt's name, is adopted when an operator created it and died before
        recording it (ownpod.adoptable), so the work it did is charged."""
        recorded = self.ledger.attempt_pod(job_uid, attempt)
        if adoptable(pod, recorded, young(pod)) and \
                self.ledger.record_pod(job_uid, attempt, pod["metadata"]["uid"], recorded):
            log.info(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} is attempt {attempt}'s: "
                     "the operator that created it stopped before recording it")
            return str(pod["metadata"]["uid"])
        return recorded_uid(recorded)


def young(pod: dict[str, Any]) -> bool:
    """Created less than ADOPTION_GRACE_SECONDS ago."""
    created = (pod.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return False
    when = parse_iso(created)  # a watch event's string, or a client object's datetime
    return (datetime.now(timezone.utc) - when).total_seconds() < ADOPTION_GRACE_SECONDS


def refusal_reason(exc: KubeError) -> str:
    """The API server's CamelCase reason for a refusal (its Status `reason`, else the HTTP reason)."""
    return exc.kube_reason or "".join(w.capitalize() for w in (exc.reason or "Refused").split()) or "Refused"


def refusal_message(exc: KubeError) -> str:
    """The API server's message for a refusal, on one line, bounded (its Status message, else the HTTP reason)."""
    return " ".join(exc.message.split())[:500]
