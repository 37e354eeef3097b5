"""Prometheus metrics of the operator, served on /metrics (QGOV_METRICS_PORT, 9090; 0: off).

The handlers call the small functions here where a domain event happens (a decision, a
settlement, a status written); each is O(1): a counter, a gauge or a histogram updated under
prometheus_client's per-series lock. Money is exact until the last step: amounts are micro-units
(ints) or the budget status's decimal strings, turned into the float Prometheus needs once.

Label cardinality is bounded by construction: series are per budget (namespace, budget, unit),
per backend, per session mode and phase, or per reason and status code, never per job or UID.
Labels whose values come from outside qgov's code (kubelet reasons, HTTP codes, reasons read from
a status) go through `Bounded`, which keeps the first few distinct values and calls the rest
"other". Namespaces, budgets and backends are objects of the cluster, as many as its admins make.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIServer

import requests
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import metricsauth
from .budget.types import ReserveOutcome, ReserveRequest, SettleOutcome
from .jobs.status import reason_of
from .metricsauth import Gate
from .wsgiserve import serve_in_thread, shut
from .providers.ibm.iam import Credential
from .sessions.tokens import Token, TokenError
from .timestamps import parse_optional

log = logging.getLogger("qgov.metrics")
disable_created_metrics()  # type: ignore[no-untyped-call]  # a `_created` twin of every counter and histogram series says nothing here
MICRO = Decimal(1_000_000)


class Bounded:
    """At most `limit` distinct values of a label; any later one is reported as "other"."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = str(value) if value not in (None, "") else "none"
        if text in self._seen:  # the common path: a set lookup, no lock
            return text
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(text)
                return text
        return "other"


_reasons, _stall_reasons, _statuses, _backends = Bounded(), Bounded(), Bounded(), Bounded(256)

# ---------------------------------------------------------------------- budgets (from the status writer)

BUDGET_LABELS = ("namespace", "budget", "unit")
BUDGET_LIMIT = Gauge("qgov_budget_limit", "The budget's limit for its current period, in its unit", BUDGET_LABELS)
BUDGET_SPENT = Gauge("qgov_budget_spent", "Charged in the budget's current period (settled work)", BUDGET_LABELS)
BUDGET_HELD = Gauge("qgov_budget_held", "Reserved for admitted work not settled yet", BUDGET_LABELS)
BUDGET_REMAINING = Gauge("qgov_budget_remaining", "Limit minus spent minus held (never below 0)", BUDGET_LABELS)
BUDGET_QUEUED = Gauge("qgov_budget_queued_jobs", "QiskitJobs waiting in the budget's queue", BUDGET_LABELS)
BUDGET_BURN_RATE = Gauge("qgov_budget_burn_rate_per_day", "Committed (spent + held) per day over the window: "
                         "the last 24 hours (1d), or the daily average of the last 7 days (7d)", (*BUDGET_LABELS, "window"))
BUDGET_EXHAUSTION = Gauge("qgov_budget_exhaustion_timestamp_seconds", "When the budget's remaining funds run out at "
                          "its burn rate (the higher of 1d and 7d), if before its period ends; absent otherwise",
                          BUDGET_LABELS)
BUDGET_WARN_AT = Gauge("qgov_budget_warning_threshold_ratio", "The budget's warning thresholds (spec.warnAt, "
                       "default 80%) as fractions of its limit; the threshold label is the percentage",
                       (*BUDGET_LABELS, "threshold"))
BUDGET_OLDEST_QUEUED = Gauge("qgov_budget_oldest_queued_timestamp_seconds", "When the job at the head of the "
                             "budget's queue was queued (Unix time); absent when nothing waits", BUDGET_LABELS)
_BUDGET_GAUGES = (BUDGET_LIMIT, BUDGET_SPENT, BUDGET_HELD, BUDGET_REMAINING, BUDGET_QUEUED, BUDGET_EXHAUSTION,
                  BUDGET_OLDEST_QUEUED)
_budget_units: dict[tuple[str, str], str] = {}  # the unit each budget's series carry now
_budget_thresholds: dict[tuple[str, str], tuple[str, ...]] = {}  # the threshold labels each budget's series carry
BURN_WINDOWS = (("1d", "lastDay"), ("7d", "lastWeek"))  # window label, budget status' burnRate field

# ---------------------------------------------------------------------- admission and settlement

ADMISSIONS = Counter("qgov_admission_decisions", "QiskitJob admission decisions",
                     ("namespace", "budget", "outcome", "reason"))
ADMISSION_LATENCY = Histogram(
    "qgov_admission_latency_seconds",
    "From the QiskitJob's creationTimestamp (whole seconds) to its first decision", ("outcome",),
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300))
RESERVATION_LATENCY = Histogram(
    "qgov_reservation_latency_seconds", "A reservation in the ledger, through the group-commit batcher",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
SETTLEMENTS = Counter("qgov_settlements", "Reservations settled with what the work used", ("namespace", "budget"))
OVERRUNS = Counter("qgov_overruns", "Settlements whose actual cost was above the reservation (late charges "
                                    "included)", ("namespace", "budget"))
COST_RATIO = Histogram("qgov_cost_actual_over_estimate", "A settled job's actual cost over its estimate",
                       ("backend",), buckets=(0, 0.25, 0.5, 0.75, 0.9, 0.99, 1, 1.01, 1.1, 1.25, 1.5, 2, 5, 10))

# ---------------------------------------------------------------------- sessions, IBM, pods

SESSION_WALL = Counter("qgov_session_billed_wall_seconds", "Wall-clock seconds charged for dedicated sessions",
                       ("namespace", "backend"))
SESSION_IDLE = Counter("qgov_session_billed_idle_seconds", "Of the billed wall-clock seconds of dedicated "
                       "sessions, those not metered as quantum work of their jobs", ("namespace", "backend"))
SESSION_IDLE_COST = Counter("qgov_session_billed_idle_cost", "What the billed idle seconds of dedicated sessions "
                            "cost, in the budget's unit (the charge times idle over wall seconds)",
                            ("namespace", "backend", "unit"))
SESSION_JOBS = Histogram("qgov_runtime_session_jobs", "QiskitJobs per IBM Runtime session, when it ends",
                         ("mode",), buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200))
TOKEN_REFRESHES = Counter("qgov_iam_token_refreshes", "IAM bearer tokens obtained for an API key")
TOKEN_FAILURES = Counter("qgov_iam_token_failures", "IAM exchanges that gave no token", ("reason",))
for _reason_ in ("CredentialsRefused", "CredentialsMissing", "IamUnavailable"):  # TokenError's reasons
    TOKEN_FAILURES.labels(_reasons(_reason_))  # at 0 from the start: rate() and increase() see the first failure
IBM_ANSWERS = Counter("qgov_ibm_api_answers", "Answers of IBM Quantum's Runtime API to the operator "
                                              "(status 'error': no answer)", ("method", "status"))
LEADER = Gauge("qgov_leader", "1 on the replica that holds the lease and acts, 0 on a standby")
POD_STALLS = Counter("qgov_executor_pod_start_failures", "Executor pods found unable to start, "
                                                         "once per job and reason", ("reason",))
WEBHOOK_REACHABLE = Gauge("qgov_webhook_reachable", "1 while the API server calls qgov's admission webhook "
                          "(this replica's dry-run probe was refused by the webhook), 0 while it admits the probe "
                          "unreviewed; absent where no webhook is served or before the first answer")
LEDGER_UNAVAILABLE = Counter("qgov_ledger_unavailable", "Ledger work of the acting replica (a budget's status, a "
                             "job's reservation or settlement) that found the database unreachable; each is "
                             "retried while the outage lasts (the alert QgovLedgerUnreachable)")


# ---------------------------------------------------------------------- budgets


def _amount(text: Any) -> float:
    """A status amount ("12.345678"): exact decimal text, one float conversion."""
    return float(Decimal(str(text or "0")))


def _optional(gauge: Gauge, labels: tuple[str, ...], moment: datetime | None) -> None:
    """A timestamp gauge: set to `moment` (Unix seconds), or absent when there is none."""
    if moment is not None:
        gauge.labels(*labels).set(moment.timestamp())
    else:
        try:
            gauge.remove(*labels)
        except KeyError:
            pass


def budget_status(namespace: str, name: str, status: dict[str, Any], *, warn_at: Iterable[int] = (),
                  exhaustion: datetime | None = None, oldest_queued: datetime | None = None) -> None:
    """The budget status writer computed the budget's status: its figures become the gauges. And
    what the status shows only in words or not at all: the warning thresholds (percentages), the
    projected exhaustion time (None: funds last the period, or nothing is spent), and when the
    head of the queue was queued (None: nothing waits)."""
    unit = str(status.get("unit") or "")
    key = (namespace, name)
    previous = _budget_units.get(key)
    if previous is not None and previous != unit:
        forget_budget(key)
    _budget_units[key] = unit
    labels = (namespace, name, unit)
    BUDGET_LIMIT.labels(*labels).set(_amount(status.get("limit")))
    BUDGET_SPENT.labels(*labels).set(_amount(status.get("spent")))
    BUDGET_HELD.labels(*labels).set(_amount(status.get("reserved")))
    BUDGET_REMAINING.labels(*labels).set(_amount(status.get("remaining")))
    BUDGET_QUEUED.labels(*labels).set(int((status.get("jobs") or {}).get("queued") or 0))
    burn = status.get("burnRate") or {}
    for window, field in BURN_WINDOWS:
        BUDGET_BURN_RATE.labels(*labels, window).set(_amount(burn.get(field)))
    _optional(BUDGET_EXHAUSTION, labels, exhaustion)
    _optional(BUDGET_OLDEST_QUEUED, labels, oldest_queued)
    thresholds = tuple(str(p) for p in sorted({int(p) for p in warn_at}))
    for gone in set(_budget_thresholds.get(key, ())) - set(thresholds):
        BUDGET_WARN_AT.remove(*labels, gone)
    _budget_thresholds[key] = thresholds
    for pct in thresholds:
        BUDGET_WARN_AT.labels(*labels, pct).set(float(Fraction(int(pct), 100)))


def forget_budget(key: tuple[str, str]) -> None:
    """The budget is gone: its series go too."""
    unit = _budget_units.pop(key, None)
    thresholds = _budget_thresholds.pop(key, ())
    if unit is None:
        return
    for gauge in _BUDGET_GAUGES:
        try:
            gauge.remove(key[0], key[1], unit)
        except KeyError:
            pass
    for window, _ in BURN_WINDOWS:
        try:
            BUDGET_BURN_RATE.remove(key[0], key[1], unit, window)
        except KeyError:
            pass
    for pct in thresholds:
        try:
            BUDGET_WARN_AT.remove(key[0], key[1], unit, pct)
        except KeyError:
            pass


# ---------------------------------------------------------------------- admission




def _age(job: dict[str, Any]) -> float | None:
    created = job["metadata"].get("creationTimestamp")
    if not created:
        return None
    moment = parse_optional(created)
    if moment is None:
        return None
    return max(0.0, (datetime.now(timezone.utc) - moment).total_seconds())


def admission(job: dict[str, Any], status: dict[str, Any]) -> None:
    """A job's first decision (`status` as admission wrote it): counted, and its latency observed."""
    outcome = str(status.get("phase") or "")
    ADMISSIONS.labels(job["metadata"]["namespace"], status.get("budget") or "", outcome,
                      _reasons(reason_of(status))).inc()
    age = _age(job)
    if age is not None:
        ADMISSION_LATENCY.labels(outcome).observe(age)


def queue_decision(job: dict[str, Any], outcome: str, reason: str) -> None:
    """A queued job admitted or refused later (funds freed, budget deleted): counted, no latency
    (the wait is the budget's, not the operator's)."""
    ADMISSIONS.labels(job["metadata"]["namespace"], (job.get("status") or {}).get("budget") or "", outcome,
                      _reasons(reason)).inc()


def timed_reserve(reserve: Callable[[ReserveRequest], ReserveOutcome], request: ReserveRequest) -> ReserveOutcome:
    """reserve(request), its latency observed."""
    start = time.perf_counter()
    try:
        return reserve(request)
    finally:
        RESERVATION_LATENCY.observe(time.perf_counter() - start)


# ---------------------------------------------------------------------- settlement


def settled(namespace: str, budget: str, outcome: SettleOutcome, backend: str | None = None,
            estimate_micro: int | None = None) -> None:
    """The ledger settled a reservation (a replay counts nothing)."""
    if outcome.replayed:
        return
    SETTLEMENTS.labels(namespace, budget).inc()
    if outcome.overrun_micro > 0:
        OVERRUNS.labels(namespace, budget).inc()
    if backend and estimate_micro:
        COST_RATIO.labels(_backends(backend)).observe(float(Fraction(outcome.actual_micro, estimate_micro)))


def job_settled(job: dict[str, Any], outcome: SettleOutcome) -> None:
    """A job's reservation settled: its actual cost against its estimate, by backend."""
    status = job.get("status") or {}
    settled(job["metadata"]["namespace"], status.get("budget") or "", outcome, status.get("backend"),
            int(status.get("estimatedMicro") or 0) or None)


def dedicated_settled(session: dict[str, Any], budgets: Mapping[str, str], summary: dict[str, Any],
                      outcome: SettleOutcome) -> None:
    """A dedicated session paid for its wall-clock time: billed seconds, the idle part of them
    (wall time minus the quantum seconds its jobs were metered for, exact, floored at 0), and what
    that idle part cost (the charge times idle over wall, exact until the one float). `budgets`: the
    namespace's, name -> unit; a dedicated session reserves in its only one (handlers/jobadmission.py choose_budget)."""
    if outcome.replayed:
        return
    names = list(budgets)
    settled(session["metadata"]["namespace"], names[0] if len(names) == 1 else "", outcome)
    labels = (session["metadata"]["namespace"], _backends((session.get("spec") or {}).get("backend")))
    wall = Decimal(int(summary.get("wallSeconds") or 0))
    idle = max(Decimal(0), wall - Decimal(str(summary.get("usageSeconds") or 0)))
    SESSION_WALL.labels(*labels).inc(float(wall))
    SESSION_IDLE.labels(*labels).inc(float(idle))
    if wall and len(names) == 1:
        cost = Fraction(outcome.actual_micro, 1_000_000) * Fraction(idle) / Fraction(wall)
        SESSION_IDLE_COST.labels(*labels, budgets[names[0]]).inc(float(cost))


def dedicated_opened(session: dict[str, Any]) -> None:
    """A dedicated session opened: its billed-seconds series exist from now on, at 0, so that the
    first charge is an increase Prometheus sees (a series born at 40 has no increase to show)."""
    labels = (session["metadata"]["namespace"], _backends((session.get("spec") or {}).get("backend")))
    SESSION_WALL.labels(*labels)
    SESSION_IDLE.labels(*labels)


def session_ended(session: dict[str, Any], jobs: int) -> None:
    """A session ended; a Runtime session's job count is observed."""
    status = session.get("status") or {}
    if status.get("sessionId"):
        SESSION_JOBS.labels(_session_mode(session)).observe(jobs)


# ---------------------------------------------------------------------- sessions by mode and phase


def _session_mode(session: dict[str, Any]) -> str:
    mode = (session.get("status") or {}).get("mode") or (session.get("spec") or {}).get("mode") or "batch"
    return mode if mode in ("dedicated", "batch") else "other"


class SessionPhases(Collector):
    """QiskitSessions by mode and phase, kept from their watch (O(1) per event), read at scrape."""

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[str, str]] = {}
        self._counts: Tally[tuple[str, str]] = Tally()
        self._lock = threading.Lock()
        self._phases = Bounded(16)

    def observe(self, event: str | None, session: dict[str, Any]) -> None:
        uid = session["metadata"]["uid"]
        now = None if event == "DELETED" else (
            _session_mode(session), self._phases((session.get("status") or {}).get("phase") or "New"))
        with self._lock:
            before = self._sessions.pop(uid, None)
            if before is not None:
                self._counts[before] -= 1
            if now is not None:
                self._sessions[uid] = now
                self._counts[now] += 1

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("qgov_sessions", "QiskitSessions by mode and phase", labels=("mode", "phase"))
        with self._lock:
            counts = sorted(self._counts.items())
        for (mode, phase), count in counts:
            family.add_metric([mode, phase], count)
        yield family


SESSIONS = SessionPhases()
REGISTRY.register(SESSIONS)


# ---------------------------------------------------------------------- IAM, IBM, pods


def counted_exchange(exchange: Callable[[Credential], Token]) -> Callable[[Credential], Token]:
    """An IAM exchange that counts its tokens and its failures (by TokenError reason)."""

    def counted(credential: Credential) -> Token:
        try:
            token = exchange(credential)
        except TokenError as exc:
            TOKEN_FAILURES.labels(_reasons(exc.reason)).inc()
            raise
        TOKEN_REFRESHES.inc()
        return token

    return counted


class CountedSession(requests.Session):
    """A requests session that counts IBM's answers by method and status ("error": none came)."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        verb = str(method, "ascii") if isinstance(method, bytes) else str(method).upper()
        try:
            response = super().request(method if isinstance(method, str) else method.decode("ascii"), url,
                                       *args, **kwargs)
        except requests.RequestException:
            IBM_ANSWERS.labels(_statuses(verb), "error").inc()
            raise
        IBM_ANSWERS.labels(_statuses(verb), _statuses(response.status_code)).inc()
        return response


def ledger_unavailable() -> None:
    """Ledger work found the database unreachable (it is tried again)."""
    LEDGER_UNAVAILABLE.inc()


def pod_stalled(reason: str) -> None:
    """An executor pod was found unable to start, for this (kubelet's or scheduler's) reason."""
    POD_STALLS.labels(_stall_reasons(reason)).inc()


# ---------------------------------------------------------------------- the endpoint

_server: WSGIServer | None = None


def _guarded(gate: Gate | None) -> Callable[..., Iterable[bytes]]:
    """The registry's WSGI app, answering only GET /metrics, and only what `gate` allows."""
    app = make_wsgi_app(REGISTRY)

    def serve_metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != metricsauth.PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the metrics are at /metrics\n"]
        if gate is not None:
            verdict = gate.verdict(environ.get("HTTP_AUTHORIZATION"))
            if not verdict.allowed:
                headers = [("Content-Type", "text/plain")]
                if verdict.status == 401:
                    headers.append(("WWW-Authenticate", 'Bearer realm="qgov metrics"'))
                start_response(f"{verdict.status} {HTTPStatus(verdict.status).phrase}", headers)
                return [f"{verdict.reason}\n".encode()]
        body: Iterable[bytes] = app(environ, start_response)
        return body

    return serve_metrics


def serve(port: int, address: str = "", gate: Gate | None = None) -> None:
    """Serve /metrics on `port` (all addresses) in a daemon thread; 0 serves nothing. `gate`: who may
    read it (metricsauth.py; None: anyone, QGOV_METRICS_AUTH=none). A port that is taken (a second
    operator on one host) costs the metrics, not the operator: it says so."""
    global _server
    if port and _server is None:
        try:
            _server = serve_in_thread(_guarded(gate), address, port, "metrics")
        except OSError as exc:
            log.error(f"metrics: cannot serve /metrics on port {port} ({exc.strerror or exc}); "
                      "set QGOV_METRICS_PORT to a free port, or 0")
            return
        who = "anyone (QGOV_METRICS_AUTH=none)" if gate is None else "bearer tokens the API server allows"
        log.info(f"metrics on http://{address or '0.0.0.0'}:{port}/metrics, for {who}")


def stop() -> None:
    global _server
    if _server is not None:
        shut(_server)
        _server = None
