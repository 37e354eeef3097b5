"""Is the webhook being called? A probe that asks the API server, and what its answer means.

With `failurePolicy: Ignore` an API server that cannot reach the webhook (a Service with no
endpoints, a caBundle that does not match, a configuration deleted or edited) admits every
object without a word, and "refused at `kubectl apply`" lapses unseen: the controller still
decides, but the user is told later. So every replica that serves the webhook asks the API
server, now and then, to create a QiskitJob marked as a probe, as a dry run (nothing is stored,
nothing charged). The webhook refuses exactly that request with the probe's nonce; a refusal
carrying the nonce proves that the API server called a replica's webhook for this very request.
An admitted dry run proves it did not. The controller then warns on each job created while the
API server is not calling it (an Event on the job), and the replica's gauge says so (an alert).

Pure: building the probe, reading the answer, and the state of one replica's probes.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

PROBE_ANNOTATION = "qgov.dev/webhook-probe"  # its value: the probe's nonce
PROBE_NAME = "qgov-webhook-probe"
PROBE_REASON = "WebhookProbe"
NOT_CALLED_REASON = "WebhookNotCalled"  # the Event on a job the webhook did not review
# a "not called" answer is believed once it repeats: the first probe after the configuration's
# caBundle was written may race the API server's reload of it
CONFIRMATIONS = 2
WARNED_KEPT = 10_000  # job UIDs remembered as warned

Answer = Literal["called", "not-called", "unknown"]


def new_nonce() -> str:
    return secrets.token_hex(8)


def probe_job(namespace: str, nonce: str) -> dict[str, Any]:
    """The QiskitJob the prober creates as a dry run: valid for the schema, marked as a probe."""
    return {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
            "metadata": {"name": PROBE_NAME, "namespace": namespace, "annotations": {PROBE_ANNOTATION: nonce}},
            "spec": {"backend": "qgov-webhook-probe",
                     "circuits": ["OPENQASM 2.0;\nqreg q[1];\ncreg c[1];\nmeasure q -> c;\n"]}}


def probe_refusal(nonce: str) -> str:
    """What the webhook answers a probe: the refusal message the prober looks for."""
    return f"qgov webhook probe {nonce}: the API server calls qgov's admission webhook"


def is_probe(request: dict[str, Any]) -> str | None:
    """The nonce if this AdmissionReview request is a probe (a dry-run QiskitJob create that
    carries the annotation), else None. A real create with the annotation is reviewed as any
    other: the mark refuses nothing that is meant to be stored."""
    if request.get("operation") != "CREATE" or not request.get("dryRun"):
        return None
    if (request.get("kind") or {}).get("kind") != "QiskitJob":
        return None
    meta = (request.get("object") or {}).get("metadata") or {}
    nonce = (meta.get("annotations") or {}).get(PROBE_ANNOTATION)
    return nonce if isinstance(nonce, str) and nonce else None


def read_answer(nonce: str, created: bool, status: int | None = None, message: str = "") -> tuple[Answer, str]:
    """What the API server's answer to the probe says: (answer, why). `created`: the dry run was
    admitted (2xx); else `status` and `message` are the API server's refusal."""
    if created:
        return "not-called", ("the API server admitted a dry-run QiskitJob without calling qgov's admission "
                              "webhook (is the webhook Service without endpoints, the caBundle stale, or the "
                              "ValidatingWebhookConfiguration missing or changed?)")
    if probe_refusal(nonce) in message:
        return "called", "the API server called the webhook"
    if "failed calling webhook" in message:
        return "not-called", " ".join(message.split())[:300]
    return "unknown", f"the probe's dry run was answered {status}: {' '.join(message.split())[:300]}"


@dataclass
class ProbeState:
    """One replica's probes: `reachable` is None until an answer is believed; `unreachable_since`
    is when the first of the believed run of "not called" answers came."""

    reachable: bool | None = None
    unreachable_since: datetime | None = None
    detail: str = ""
    _misses: int = 0
    _first_miss: datetime | None = field(default=None, repr=False)
    _warned: OrderedDict[str, None] = field(default_factory=OrderedDict, repr=False)

    def record(self, answer: Answer, detail: str, at: datetime) -> bool:
        """Take one probe's answer; True when `reachable` changed."""
        before = self.reachable
        if answer == "called":
            self.reachable, self.unreachable_since, self._misses, self._first_miss = True, None, 0, None
        elif answer == "not-called":
            self._misses += 1
            self._first_miss = self._first_miss or at.replace(microsecond=0)  # as creationTimestamps
            if self._misses >= CONFIRMATIONS:
                self.reachable, self.unreachable_since = False, self._first_miss
        self.detail = detail
        return self.reachable != before

    def missed_review(self, created: datetime | None) -> bool:
        """Was an object created at `created` most likely admitted without the webhook?"""
        return (self.reachable is False and self.unreachable_since is not None and created is not None
                and created >= self.unreachable_since)

    def warn_once(self, uid: str, created: datetime | None) -> bool:
        """True the first time a job (by UID) created while the webhook was not called is seen: the
        controller then warns on it once, whatever watch events repeat (a bounded memory)."""
        if uid in self._warned or not self.missed_review(created):
            return False
        self._warned[uid] = None
        while len(self._warned) > WARNED_KEPT:
            self._warned.popitem(last=False)
        return True


def not_called_message(detail: str) -> str:
    """The Warning Event on a job that was stored without the webhook's review."""
    return ("this QiskitJob was accepted at apply without qgov's admission review: the API server does not call "
            f"qgov's webhook ({detail}). The operator decides the job as always; a refusal shows in its status "
            "instead of at apply")


STATE = ProbeState()  # this process's: the webhook thread's prober writes it, the controller reads it
