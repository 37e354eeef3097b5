"""QiskitBudget handlers: keep the ledger's budget in step with the spec, and write the cost
report into status, which is what `kubectl get` and `kubectl describe` show a team lead."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import kopf

from .. import metrics
from ..api import GROUP, VERSION
from ..api.specs import SpecError, parse_budget
from ..budget.burnrate import NO_SPEND, burn_rate, burn_status, next_midnight
from ..budget.errors import DatabaseUnavailable, LedgerError, UnknownBudget
from ..budget.ledger import Ledger
from ..budget.money import format_amount
from ..jobs import ACTIVE, Phase
from ..jobs.events import Event
from ..snapshot import ClusterSnapshot
from ..budget.types import QueueChange
from ..kubeerrors import NotFound, api_errors
from .budgetnotify import BudgetNotifier
from .budgetstatus import BudgetStatusWriter
from ..conditions import set_condition
from .jobs import Jobs
from .kube import discard, emit
from .retrying import HANDLER_RETRY_SECONDS
from .context import KopfContext
from .jobphases import JobPhases
from ..timestamps import parse_optional

PLURAL = "qiskitbudgets"
TOP_JOBS = 5
NEAR_LIMIT_DEFAULT = 80


@dataclass(frozen=True)
class MetricsOnly:
    """What the budget's metrics show besides its status' figures (metrics.budget_status)."""

    warn_at: tuple[int, ...]  # the warning thresholds, percentages (NearLimit uses the highest)
    exhaustion: datetime | None  # the funds run out then at the burn rate, before the period ends
    oldest_queued: datetime | None  # the head of the queue was queued then


class Budgets:
    """What the QiskitBudget handlers use, given at start-up (startup.py) rather than looked up:
    the ledger, the API clients (`clients.custom`: one client per thread, see kube.Kube), the
    jobs' phase counts, the cluster snapshot (the budgets' units admission reads, kept here), and
    the status writer, which this object's write_status, rollover and ledger_unavailable drive.
    It makes the notifier through which jobs and sessions tell budgets what changed
    (budgetnotify.py); the jobs a budget change admits start through the job handlers' object,
    connected once that exists (it needs the notifier). The kopf handlers below find it in kopf's memo (`memo.budgets`)."""

    def __init__(self, ledger: Ledger, clients: Any, job_phases: JobPhases, snapshot: ClusterSnapshot,
                 status_interval_seconds: float = 1.0, provision_executor_identity: bool = False,
                 kopf_context: KopfContext | None = None) -> None:
        self.ledger, self.clients, self.job_phases, self.snapshot = ledger, clients, job_phases, snapshot
        self.kopf_context = kopf_context or KopfContext()
        self.status_writer = BudgetStatusWriter(self.write_status, self.rollover, self.ledger_unavailable,
                                                status_interval_seconds, self.kopf_context)
        self.notifier = BudgetNotifier(clients, self.status_writer, snapshot, provision_executor_identity)
        self.jobs: Jobs | None = None

    def connect(self, jobs: Jobs) -> None:
        """The job handlers' object, which starts (or refuses) the jobs a budget change admits."""
        self.jobs = jobs

    def start_admitted(self, changes: tuple[QueueChange, ...] | list[QueueChange]) -> None:
        if self.jobs is None:
            raise RuntimeError("the budgets are not connected to the job handlers (startup.py)")
        self.jobs.start_admitted(changes)

    def budget_figures(self, namespace: str, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], MetricsOnly]:
        """The budget's status: balances of the current period, where the money went, conditions; and
        what its metrics show besides (from the same reads)."""
        reads = self.ledger.status_reads(namespace, name)  # one connection: four statements, five when jobs wait
        balance, report = reads.balance, reads.report
        unit = balance.unit
        phases = self.job_phases.counts(namespace, name)
        committed = balance.spent_micro + balance.held_micro
        warn = sorted((body.get("spec") or {}).get("warnAt") or [NEAR_LIMIT_DEFAULT])
        pct = committed * 100 // balance.limit_micro if balance.limit_micro else 100
        gen = body["metadata"].get("generation")
        conditions = (body.get("status") or {}).get("conditions")
        conditions = set_condition(conditions, "Ready", True, "InLedger", "the budget is active in the ledger", gen)
        near = pct >= warn[-1] if warn else False
        conditions = set_condition(conditions, "NearLimit", near, "AboveThreshold" if near else "BelowThreshold",
                                   f"{pct}% of the limit is spent or reserved", gen)
        exhausted = balance.remaining_micro == 0
        conditions = set_condition(conditions, "Exhausted", exhausted, "NoFundsLeft" if exhausted else "FundsLeft",
                                   f"remaining {format_amount(balance.remaining_micro, unit)}", gen)
        burn = burn_rate(reads.daily, self.ledger.clock(), balance.remaining_micro)
        projected = burn.exhausted_at if burn.remaining > 0 and burn.exhausted_at is not None and (
            balance.period_end is None or burn.exhausted_at < balance.period_end) else None
        return {
            "limit": format_amount(balance.limit_micro), "spent": format_amount(balance.spent_micro),
            "reserved": format_amount(balance.held_micro), "remaining": format_amount(balance.remaining_micro),
            "unit": unit, "periodStart": balance.period_start.isoformat(),
            "periodEnd": balance.period_end.isoformat() if balance.period_end else None,
            "jobs": {"admitted": sum(phases[p] for p in ACTIVE), "refused": phases[Phase.REFUSED.value],
                     "queued": phases[Phase.QUEUED.value], "succeeded": phases[Phase.SUCCEEDED.value],
                     "failed": phases[Phase.FAILED.value]},
            # lists of {name, amount}, not maps: kubectl describe would split a key such as fake_manila
            "spendByBackend": [{"name": s.name or "-", "amount": format_amount(s.spent + s.held), "jobs": s.jobs}
                               for s in report.by_backend],
            "spendBySession": [{"name": s.name, "amount": format_amount(s.spent + s.held), "jobs": s.jobs}
                               for s in report.by_session if s.name] or None,  # none: jobs outside sessions only
            "topJobs": [{"job": j.job.partition("/")[2] or j.key, "state": j.state,
                         "estimate": format_amount(j.estimate),
                         "actual": format_amount(j.actual) if j.actual is not None else None}
                        for j in report.top_jobs[:TOP_JOBS]],
            "estimateAccuracy": {"settled": report.accuracy.settled, "meanActualOverEstimate": report.accuracy.mean_ratio},
            # work charged after its hold was released (see Ledger.settle(ran=True)); None when there is none
            "lateCharges": {"jobs": report.late.jobs, "amount": format_amount(report.late.amounts.get(unit, 0))}
            if report.late.jobs else None,
            "burnRate": burn_status(burn, unit, balance.period_end),
            "conditions": conditions,
        }, MetricsOnly(tuple(warn), projected, reads.oldest_queued)

    def _get_budget(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            with api_errors():
                budget: dict[str, Any] = self.clients.custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                                          PLURAL, name)
            return budget
        except NotFound:
            raise UnknownBudget(f"QiskitBudget {namespace}/{name} is gone") from None

    def _patch_budget_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        discard(self.clients.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                                          {"status": status}, _preload_content=False))

    def status_and_gauges(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """The budget's status from the ledger; its metrics are set from the same reads."""
        status, more = self.budget_figures(namespace, name, body)
        metrics.budget_status(namespace, name, status, warn_at=more.warn_at, exhaustion=more.exhaustion,
                              oldest_queued=more.oldest_queued)
        return status

    def write_status(self, key: tuple[str, str]) -> datetime | None:
        """The status writer's `write`: the budget's status from the ledger, written only if it
        differs from what the object shows; returns the end of its current period."""
        namespace, name = key
        body = self._get_budget(namespace, name)
        status = self.status_and_gauges(namespace, name, body)
        shown = body.get("status") or {}
        if any(shown.get(k) != v for k, v in status.items()):
            self._patch_budget_status(namespace, name, status)
        if self._ledger_was_unavailable(body):
            emit(body, Event("Normal", "LedgerAvailable", "the budget ledger is reachable again"))
        end = parse_optional(status.get("periodEnd"))
        # the burn rate moves at midnight (a day leaves its window) even when nothing else happens
        change = None if status["burnRate"]["forecast"] == NO_SPEND else next_midnight(self.ledger.clock())
        return min((t for t in (end, change) if t is not None), default=None)

    def rollover(self, key: tuple[str, str]) -> None:
        """The status writer's `rollover`: the budget's period ended; the new one has funds for its queue."""
        self.start_admitted(self.ledger.admit_queued(key[0]))

    def _ledger_was_unavailable(self, body: dict[str, Any]) -> bool:
        return any(c.get("type") == "Ready" and c.get("reason") == "LedgerUnavailable"
                   for c in (body.get("status") or {}).get("conditions") or [])

    def ledger_unavailable(self, key: tuple[str, str], exc: DatabaseUnavailable) -> None:
        """The status writer's `unavailable`: the budget says it cannot be trusted now (Ready=False,
        LedgerUnavailable, one Warning Event when it turns so); its figures are the last ones read.
        The writer tries again until the ledger answers, then writes Ready=True."""
        body = self._get_budget(*key)
        if self._ledger_was_unavailable(body):
            return
        message = f"the budget ledger cannot be reached ({exc}); admissions and settlements wait for it"
        self._patch_budget_status(key[0], key[1], {"conditions": set_condition(
            (body.get("status") or {}).get("conditions"), "Ready", False, "LedgerUnavailable", message,
            body["metadata"].get("generation"))})
        emit(body, Event("Warning", "LedgerUnavailable", message))

    def spec_changed(self, body: dict[str, Any], spec: dict[str, Any], namespace: str, name: str,
                     patch: kopf.Patch) -> None:
        """The budget was created or its spec changed (or the operator resumed it): the ledger's
        budget follows the spec; the jobs a larger budget admits start."""
        try:
            meta = body.get("metadata") or {}
            # the object's UID and generation let the ledger refuse a spec a newer one replaced
            # (another operator applied it first; kopf offers no lock between operators)
            parsed = replace(parse_budget(namespace, name, spec), uid=meta.get("uid"), generation=meta.get("generation"))
            _, changes = self.ledger.upsert_budget(parsed)
            self.snapshot.budget_seen(namespace, name, parsed.unit)  # what admission reads
        except DatabaseUnavailable as exc:
            self.status_writer.mark((namespace, name))  # the writer says so in its status
            raise kopf.TemporaryError(str(exc), delay=HANDLER_RETRY_SECONDS) from None
        except (SpecError, LedgerError) as exc:
            emit(body, Event("Warning", "InvalidBudget", str(exc)))
            patch.status["conditions"] = set_condition((body.get("status") or {}).get("conditions"), "Ready", False,
                                                       "InvalidSpec", str(exc), body["metadata"].get("generation"))
            return
        self.start_admitted(changes)
        self.status_writer.mark((namespace, name))
        self.notifier.provide_executor_identity(body, namespace)

    def deleted(self, namespace: str, name: str) -> None:
        """A deleted budget admits nothing more; its queued jobs are refused; what it holds still settles."""
        self.snapshot.budget_gone(namespace, name)
        self.status_writer.forget((namespace, name))
        try:
            self.start_admitted(self.ledger.retire_budget(namespace, name))
        except UnknownBudget:
            pass


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=HANDLER_RETRY_SECONDS)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
def on_budget(body: kopf.Body, spec: kopf.Spec, namespace: str | None, name: str, patch: kopf.Patch, memo: kopf.Memo,
              **_: Any) -> None:
    assert namespace is not None  # QiskitBudget is namespaced
    memo.budgets.kopf_context.remember()
    memo.budgets.spec_changed(dict(body), dict(spec), namespace, name, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
def on_budget_deleted(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    assert namespace is not None  # QiskitBudget is namespaced
    memo.budgets.deleted(namespace, name)
