"""QiskitBudget handlers: keep the ledger's budget in step with the spec, and write the cost
report into status, which is what `kubectl get` and `kubectl describe` show a team lead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from .. import metrics
from ..api import GROUP, VERSION
from ..api.specs import SpecError, parse_budget
from ..budget.burnrate import NO_SPEND, burn_rate, burn_status, next_midnight
from ..budget.errors import DatabaseUnavailable, LedgerError, UnknownBudget
from ..budget.money import format_amount
from ..jobs.events import Event
from .budgetnotify import provide_executor_identity, refresh_budget_status
from .conditions import set_condition
from .jobs import start_admitted
from .kube import discard, emit
from .retrying import HANDLER_RETRY_SECONDS
from .context import remember_kopf_context, ctx

PLURAL = "qiskitbudgets"
TOP_JOBS = 5
NEAR_LIMIT_DEFAULT = 80


@dataclass(frozen=True)
class MetricsOnly:
    """What the budget's metrics show besides its status' figures (metrics.budget_status)."""

    warn_at: tuple[int, ...]  # the warning thresholds, percentages (NearLimit uses the highest)
    exhaustion: datetime | None  # the funds run out then at the burn rate, before the period ends
    oldest_queued: datetime | None  # the head of the queue was queued then


def budget_figures(namespace: str, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], MetricsOnly]:
    """The budget's status: balances of the current period, where the money went, conditions; and
    what its metrics show besides (from the same reads)."""
    reads = ctx().ledger.status_reads(namespace, name)  # one connection: four statements, five when jobs wait
    balance, report = reads.balance, reads.report
    unit = balance.unit
    phases = ctx().job_phases.counts(namespace, name)
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
    burn = burn_rate(reads.daily, ctx().ledger.clock(), balance.remaining_micro)
    projected = burn.exhausted_at if burn.remaining > 0 and burn.exhausted_at is not None and (
        balance.period_end is None or burn.exhausted_at < balance.period_end) else None
    return {
        "limit": format_amount(balance.limit_micro), "spent": format_amount(balance.spent_micro),
        "reserved": format_amount(balance.held_micro), "remaining": format_amount(balance.remaining_micro),
        "unit": unit, "periodStart": balance.period_start.isoformat(),
        "periodEnd": balance.period_end.isoformat() if balance.period_end else None,
        "jobs": {"admitted": phases["Admitted"] + phases["Running"], "refused": phases["Refused"],
                 "queued": phases["Queued"], "succeeded": phases["Succeeded"], "failed": phases["Failed"]},
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


def _get_budget(namespace: str, name: str) -> dict[str, Any]:
    try:
        return ctx().custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            raise UnknownBudget(f"QiskitBudget {namespace}/{name} is gone") from None
        raise


def _patch_budget_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    discard(ctx().custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                              {"status": status}, _preload_content=False))


def status_and_gauges(namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The budget's status from the ledger; its metrics are set from the same reads."""
    status, more = budget_figures(namespace, name, body)
    metrics.budget_status(namespace, name, status, warn_at=more.warn_at, exhaustion=more.exhaustion,
                          oldest_queued=more.oldest_queued)
    return status


def write_status(key: tuple[str, str]) -> datetime | None:
    """The status writer's `write`: the budget's status from the ledger, written only if it
    differs from what the object shows; returns the end of its current period."""
    namespace, name = key
    body = _get_budget(namespace, name)
    status = status_and_gauges(namespace, name, body)
    shown = body.get("status") or {}
    if any(shown.get(k) != v for k, v in status.items()):
        _patch_budget_status(namespace, name, status)
    if _ledger_was_unavailable(body):
        emit(body, Event("Normal", "LedgerAvailable", "the budget ledger is reachable again"))
    end = datetime.fromisoformat(status["periodEnd"]) if status.get("periodEnd") else None
    # the burn rate moves at midnight (a day leaves its window) even when nothing else happens
    change = None if status["burnRate"]["forecast"] == NO_SPEND else next_midnight(ctx().ledger.clock())
    return min((t for t in (end, change) if t is not None), default=None)


def rollover(key: tuple[str, str]) -> None:
    """The status writer's `rollover`: the budget's period ended; the new one has funds for its queue."""
    start_admitted(ctx().ledger.admit_queued(key[0]))


def _ledger_was_unavailable(body: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("reason") == "LedgerUnavailable"
               for c in (body.get("status") or {}).get("conditions") or [])


def ledger_unavailable(key: tuple[str, str], exc: DatabaseUnavailable) -> None:
    """The status writer's `unavailable`: the budget says it cannot be trusted now (Ready=False,
    LedgerUnavailable, one Warning Event when it turns so); its figures are the last ones read.
    The writer tries again until the ledger answers, then writes Ready=True."""
    body = _get_budget(*key)
    if _ledger_was_unavailable(body):
        return
    message = f"the budget ledger cannot be reached ({exc}); admissions and settlements wait for it"
    _patch_budget_status(key[0], key[1], {"conditions": set_condition(
        (body.get("status") or {}).get("conditions"), "Ready", False, "LedgerUnavailable", message,
        body["metadata"].get("generation"))})
    emit(body, Event("Warning", "LedgerUnavailable", message))


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=HANDLER_RETRY_SECONDS)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
def on_budget(body: kopf.Body, spec: kopf.Spec, namespace: str, name: str, patch: kopf.Patch, **_: Any) -> None:
    remember_kopf_context()
    obj = dict(body)
    try:
        parsed = parse_budget(namespace, name, dict(spec))
        _, changes = ctx().ledger.upsert_budget(parsed)
        ctx().budget_units.setdefault(namespace, {})[name] = parsed.unit  # what admission reads
    except DatabaseUnavailable as exc:
        refresh_budget_status(namespace, name)  # the writer says so in its status
        raise kopf.TemporaryError(str(exc), delay=HANDLER_RETRY_SECONDS) from None
    except (SpecError, LedgerError) as exc:
        emit(obj, Event("Warning", "InvalidBudget", str(exc)))
        patch.status["conditions"] = set_condition((obj.get("status") or {}).get("conditions"), "Ready", False,
                                                   "InvalidSpec", str(exc), obj["metadata"].get("generation"))
        return
    start_admitted(changes)
    refresh_budget_status(namespace, name)
    provide_executor_identity(obj, namespace)


@kopf.on.delete(GROUP, VERSION, PLURAL, backoff=HANDLER_RETRY_SECONDS)
def on_budget_deleted(namespace: str, name: str, **_: Any) -> None:
    """A deleted budget admits nothing more; its queued jobs are refused; what it holds still settles."""
    ctx().budget_units.get(namespace, {}).pop(name, None)
    ctx().status_writer.forget((namespace, name))
    try:
        start_admitted(ctx().ledger.retire_budget(namespace, name))
    except UnknownBudget:
        pass
