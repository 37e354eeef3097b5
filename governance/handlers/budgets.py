"""QiskitBudget handlers: keep the ledger's budget in step with the spec, and write the cost
report into status, which is what `kubectl get` and `kubectl describe` show a team lead."""

from __future__ import annotations

import time
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from ..api import GROUP, VERSION
from ..api.specs import SpecError, parse_budget
from ..budget.errors import DatabaseUnavailable, LedgerError, UnknownBudget
from ..budget.money import format_amount
from ..budget.report import period_window
from .conditions import set_condition
from .runtime import rt, started

PLURAL = "qiskitbudgets"
TOP_JOBS = 5
NEAR_LIMIT_DEFAULT = 80
LEDGER_RETRY_SECONDS = 2.0  # how soon a budget handler that could not reach the ledger runs again


def budget_event(namespace: str, name: str, type_: str, reason: str, message: str) -> None:
    """An Event on a QiskitBudget, from anywhere (a job's refusal, a threshold crossing)."""
    try:
        body = rt().custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException:
        return
    kopf.event(body, type=type_, reason=reason, message=message)


def budget_status(namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The budget's status: balances of the current period, where the money went, conditions."""
    ledger = rt().ledger
    balance = ledger.balance(namespace, name)
    report = ledger.report(namespace, period_window(balance.period_start, balance.period_end), name)
    unit = balance.unit
    phases = rt().job_phases.counts(namespace, name)
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
    return {
        "limit": format_amount(balance.limit_micro), "spent": format_amount(balance.spent_micro),
        "reserved": format_amount(balance.held_micro), "remaining": format_amount(balance.remaining_micro),
        "unit": unit, "periodStart": balance.period_start.isoformat(),
        "periodEnd": balance.period_end.isoformat() if balance.period_end else None,
        "jobs": {"admitted": phases["Admitted"] + phases["Running"], "refused": phases["Refused"],
                 "queued": phases["Queued"], "succeeded": phases["Succeeded"], "failed": phases["Failed"]},
        "spendByBackend": {s.name or "-": format_amount(s.spent + s.held) for s in report.by_backend},
        "spendBySession": {s.name or "(none)": format_amount(s.spent + s.held) for s in report.by_session},
        "topJobs": [{"job": j.job.partition("/")[2] or j.key, "state": j.state,
                     "estimate": format_amount(j.estimate),
                     "actual": format_amount(j.actual) if j.actual is not None else None}
                    for j in report.top_jobs[:TOP_JOBS]],
        "estimateAccuracy": {"settled": report.accuracy.settled, "meanActualOverEstimate": report.accuracy.mean_ratio},
        # work charged after its hold was released (see Ledger.settle(ran=True)); None when there is none
        "lateCharges": {"jobs": report.late.jobs, "amount": format_amount(report.late.amounts.get(unit, 0))}
        if report.late.jobs else None,
        "conditions": conditions,
    }


def refresh_budget_status(namespace: str, name: str) -> None:
    """Ask for the budget's status to be rewritten. Debounced: the budget's timer writes it at most
    once a second, so a burst of N jobs costs N cheap marks, not N reports of N jobs each."""
    rt().dirty_budgets.add((namespace, name))


def _write_status(namespace: str, name: str, body: dict[str, Any], patch: kopf.Patch) -> None:
    rt().dirty_budgets.discard((namespace, name))
    patch.status.update(budget_status(namespace, name, body))
    if _ledger_was_unavailable(body):
        kopf.event(body, type="Normal", reason="LedgerAvailable", message="the budget ledger is reachable again")


def _ledger_was_unavailable(body: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("reason") == "LedgerUnavailable"
               for c in (body.get("status") or {}).get("conditions") or [])


def _ledger_unavailable(namespace: str, name: str, body: dict[str, Any], patch: kopf.Patch,
                        exc: DatabaseUnavailable) -> None:
    """The budget says it cannot be trusted now: Ready=False (LedgerUnavailable) and one Warning
    Event when it turns so; its figures are the last ones read. Its status is written afresh as
    soon as the ledger answers again (marked dirty)."""
    rt().dirty_budgets.add((namespace, name))
    conditions = (body.get("status") or {}).get("conditions")
    was_ready = not _ledger_was_unavailable(body)
    message = f"the budget ledger cannot be reached ({exc}); admissions and settlements wait for it"
    patch.status["conditions"] = set_condition(conditions, "Ready", False, "LedgerUnavailable", message,
                                               body["metadata"].get("generation"))
    if was_ready:
        kopf.event(body, type="Warning", reason="LedgerUnavailable", message=message)


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=LEDGER_RETRY_SECONDS)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=LEDGER_RETRY_SECONDS)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=LEDGER_RETRY_SECONDS)
def on_budget(body: kopf.Body, spec: kopf.Spec, namespace: str, name: str, patch: kopf.Patch, **_: Any) -> None:
    from .jobs import start_admitted

    obj = dict(body)
    try:
        parsed = parse_budget(namespace, name, dict(spec))
        _, changes = rt().ledger.upsert_budget(parsed)
        rt().budget_units.setdefault(namespace, {})[name] = parsed.unit  # what admission reads
    except DatabaseUnavailable as exc:
        _ledger_unavailable(namespace, name, obj, patch, exc)
        raise kopf.TemporaryError(str(exc), delay=LEDGER_RETRY_SECONDS) from None
    except (SpecError, LedgerError) as exc:
        kopf.event(obj, type="Warning", reason="InvalidBudget", message=str(exc))
        patch.status["conditions"] = set_condition((obj.get("status") or {}).get("conditions"), "Ready", False,
                                                   "InvalidSpec", str(exc), obj["metadata"].get("generation"))
        return
    start_admitted(changes)
    _write_status(namespace, name, obj, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL, backoff=LEDGER_RETRY_SECONDS)
def on_budget_deleted(namespace: str, name: str, **_: Any) -> None:
    """A deleted budget admits nothing more; its queued jobs are refused; what it holds still settles."""
    from .jobs import start_admitted

    rt().budget_units.get(namespace, {}).pop(name, None)
    try:
        start_admitted(rt().ledger.retire_budget(namespace, name))
    except UnknownBudget:
        pass


@kopf.timer(GROUP, VERSION, PLURAL, interval=1.0, initial_delay=1.0, backoff=LEDGER_RETRY_SECONDS)
def budget_tick(body: kopf.Body, namespace: str, name: str, patch: kopf.Patch, **_: Any) -> None:
    """Period rollovers admit queued work; the status follows the ledger when it changed (or every
    QGOV_STATUS_INTERVAL_SECONDS anyway, for what changes with time alone, like ages and periods)."""
    from .jobs import start_admitted

    if not started():
        return
    runtime = rt()
    key = (namespace, name)
    now = time.monotonic()
    try:
        start_admitted(runtime.ledger.admit_queued(namespace))
        if key in runtime.dirty_budgets or now - runtime.status_written.get(key, 0.0) >= \
                runtime.config.status_interval_seconds:
            runtime.status_written[key] = now
            _write_status(namespace, name, dict(body), patch)
    except UnknownBudget:
        pass
    except DatabaseUnavailable as exc:  # said in the status; the next tick (1 s) tries again
        _ledger_unavailable(namespace, name, dict(body), patch, exc)
