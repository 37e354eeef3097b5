"""Audit the cluster against the ledger: every QiskitJob's phase and charge must match its reservation.

`qgov ledger verify` proves the ledger agrees with itself; it cannot see a job whose status says
"charged 0.30" while its reservation was released, or money held for a job that is gone. This
module crosses the two. `audit` is pure (plain dicts from the API, rows from
`Ledger.reservations()`), so every rule is tested without a cluster; `audit_cluster` only lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .api import GROUP, VERSION
from .jobs.phases import ACTIVE, TERMINAL, Phase  # (governance.jobs does not import its qiskit-bound admission module)
from .budget.money import AmountError, format_amount, parse_amount
from .budget.types import OPEN_STATES, ReservationRow, ReservationState

UNCHARGED = (ReservationState.RELEASED, ReservationState.REFUSED)  # finished without a charge
PAGE = 500


def audit(jobs: Sequence[Mapping[str, Any]], sessions: Sequence[Mapping[str, Any]],
          reservations: Iterable[ReservationRow]) -> list[str]:
    """Every disagreement between the QiskitJobs (and QiskitSessions) and the ledger, one line each,
    sorted. Jobs being deleted are skipped (their finalizer is settling them) but still exist."""
    by_key = {r.key: r for r in reservations}
    existing = {o["metadata"]["uid"] for o in [*jobs, *sessions]}
    problems = [p for job in jobs if not job["metadata"].get("deletionTimestamp")
                for p in _check_job(job, by_key.get(job["metadata"]["uid"]))]
    problems += [f"{r.job or r.key}: reservation for a job that does not exist: {_describe(r)}, key {r.key}"
                 for r in by_key.values() if r.state in OPEN_STATES and r.key not in existing]
    return sorted(problems)


def _check_job(job: Mapping[str, Any], r: ReservationRow | None) -> list[str]:
    """The mismatches of one job with its reservation (at most one line: the first rule broken)."""
    meta, status = job["metadata"], job.get("status") or {}
    phase, unit = status.get("phase") or "none", status.get("currency")
    head = f"{meta['namespace']}/{meta['name']} (phase {phase})"
    ledger = _describe(r, unit)
    if not status.get("budget"):  # unbudgeted, failed before pricing, or paid by a dedicated session
        if r is not None and r.state in OPEN_STATES:
            return [f"{head}: no budget in its status, yet the ledger has {ledger}"]
        return []
    if phase in TERMINAL and r is not None and r.state in OPEN_STATES:
        return [f"{head}: finished job holds money: the ledger has {ledger}"]
    if phase in ACTIVE:
        if r is None:
            return [f"{head}: admitted job lacks a reservation in budget {status['budget']}"]
        if r.state != ReservationState.HELD:
            return [f"{head}: an admitted job needs a held reservation, the ledger has {ledger}"]
    elif phase == Phase.QUEUED.value and (r is None or r.state != ReservationState.QUEUED):
        why = (" (the ledger admitted it and the job was never started)"
               if r is not None and r.state == ReservationState.HELD else "")
        return [f"{head}: a queued job needs a queued reservation, the ledger has {ledger}{why}"]
    elif phase in (Phase.SUCCEEDED.value, Phase.FAILED.value) and status.get("actualCost") is not None:
        return _check_charge(head, status, r, unit)
    elif phase == Phase.REFUSED.value and r is not None and r.state not in UNCHARGED:
        return [f"{head}: a refused job must hold or spend nothing, the ledger has {ledger}"]
    return []


def _check_charge(head: str, status: Mapping[str, Any], r: ReservationRow | None, unit: str | None) -> list[str]:
    """A job that ran: its reservation is settled at exactly what its status says it was charged."""
    try:
        charged = parse_amount(str(status["actualCost"]), field="status.actualCost")
        used = int(status["usedMicro"]) if status.get("usedMicro") not in (None, "") else None
    except (AmountError, ValueError) as exc:
        return [f"{head}: unreadable charge in its status ({exc}), the ledger has {_describe(r, unit)}"]
    if charged == 0 and not used and r is not None and r.state in UNCHARGED and not r.actual_micro:
        return []  # nothing ran that cost anything, nothing is held: the books agree (the ledger charges no 0)
    said = f"charged {format_amount(charged, unit)}" + (
        f" (usedMicro {format_amount(used, unit)})" if used is not None and used != charged else "")
    if (r is None or r.state != ReservationState.SETTLED or r.actual_micro != charged
            or (used is not None and used != charged)):
        return [f"{head}: status says {said}, the ledger has {_describe(r, unit)}"]
    return []


def _describe(r: ReservationRow | None, unit: str | None = None) -> str:
    """A reservation as a person reads it: state and amounts."""
    if r is None:
        return "no reservation"
    actual = "none" if r.actual_micro is None else format_amount(r.actual_micro, unit)
    overrun = f", overrun {format_amount(r.overrun_micro, unit)}" if r.overrun_micro else ""
    return f"a {r.state} reservation (reserved {format_amount(r.amount_micro, unit)}, actual {actual}{overrun})"


def _list_all(custom_api: Any, plural: str) -> list[dict[str, Any]]:
    """Every object of a qgov kind, cluster-wide, page by page."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = custom_api.list_cluster_custom_object(GROUP, VERSION, plural, limit=PAGE,
                                                     **({"_continue": token} if token else {}))
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def audit_cluster(custom_api: Any, ledger: Any) -> tuple[list[str], int, int]:
    """Audit a live cluster (a `kubernetes.client.CustomObjectsApi`) against `ledger`: returns
    (problems, jobs checked, reservations checked). The ledger is read after the lists, so a job
    deleted meanwhile has already released its reservation (its finalizer does that first)."""
    jobs = _list_all(custom_api, "qiskitjobs")
    sessions = _list_all(custom_api, "qiskitsessions")
    reservations: list[ReservationRow] = ledger.reservations()
    checked = sum(1 for j in jobs if not j["metadata"].get("deletionTimestamp"))
    return audit(jobs, sessions, reservations), checked, len(reservations)
