"""The metrics module on its own: bounded labels, IAM and IBM answers counted, a taken port."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY

from governance import metrics
from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec, Decision, ReserveRequest, SettleOutcome
from governance.handlers.budgets import Budgets
from governance.handlers.jobphases import JobPhases
from governance.providers.ibm.iam import Credential
from governance.sessions.tokens import Token, TokenError, TokenManager
from governance.snapshot import ClusterSnapshot

from tests.conftest import FakeClock


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_bounded_label_keeps_its_first_values_and_calls_the_rest_other() -> None:
    bounded = metrics.Bounded(3)
    assert [bounded(v) for v in ("a", "b", None, "a", "d", "e")] == ["a", "b", "none", "a", "other", "other"]


def test_token_exchanges_are_counted_by_outcome() -> None:
    answers = iter([Token("t1", 0.0, 1.0), TokenError("no", "IamUnavailable")])

    def exchange(_: Credential) -> Token:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    refreshes, failures = sample("qgov_iam_token_refreshes_total"), sample("qgov_iam_token_failures_total",
                                                                           reason="IamUnavailable")
    manager = TokenManager(metrics.counted_exchange(exchange), clock=lambda: 10.0)  # every token is due
    credential = Credential("key", "crn:v1:x")
    manager.token(credential)
    with pytest.raises(TokenError):
        manager.token(credential)
    assert sample("qgov_iam_token_refreshes_total") == refreshes + 1
    assert sample("qgov_iam_token_failures_total", reason="IamUnavailable") == failures + 1


def test_ibm_answers_are_counted_by_status_and_no_answer_as_error() -> None:
    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(503)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = sample("qgov_ibm_api_answers_total", method="GET", status="503")
    errors = sample("qgov_ibm_api_answers_total", method="GET", status="error")
    try:
        assert metrics.CountedSession().get(f"http://127.0.0.1:{server.server_port}/x").status_code == 503
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(requests.ConnectionError):
        metrics.CountedSession().get(f"http://127.0.0.1:{server.server_port}/x", timeout=2)
    assert sample("qgov_ibm_api_answers_total", method="GET", status="503") == before + 1
    assert sample("qgov_ibm_api_answers_total", method="GET", status="error") == errors + 1


def test_a_taken_port_costs_the_metrics_not_the_operator(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        metrics.serve(taken.getsockname()[1])
    assert "cannot serve /metrics" in caplog.text
    metrics.stop()  # nothing was started


# ---------------------------------------------------------------------- a budget's gauges, from its ledger

NS_A, BUDGET_A = "team-m", "lab"
LABELS = {"namespace": NS_A, "budget": BUDGET_A, "unit": "USD"}


_budgets: Budgets | None = None  # the budget_runtime fixture's


@pytest.fixture
def budget_runtime(sqlite_template: Path, tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    """The operator's runtime over a real (SQLite) ledger, no cluster: what the status writer reads."""
    path = tmp_path / "ledger.db"
    shutil.copy(sqlite_template, path)
    ledger = Ledger(f"sqlite:///{path}", clock=clock)
    global _budgets
    _budgets = Budgets(ledger, clients=None, job_phases=JobPhases(), snapshot=ClusterSnapshot())
    try:
        yield ledger
    finally:
        _budgets = None
        metrics.forget_budget((NS_A, BUDGET_A))
        ledger.close()


def write(warn_at: list[int] | None = None) -> dict[str, Any]:
    """What the status writer does for the budget, minus the API: its status, its gauges set."""
    assert _budgets is not None
    return _budgets.status_and_gauges(NS_A, BUDGET_A, {"metadata": {"generation": 1}, "spec": {"warnAt": warn_at} if warn_at
                                              else {}})


def gauge(name: str, **more: str) -> float | None:
    return REGISTRY.get_sample_value(name, {**LABELS, **more})


def test_burn_rate_exhaustion_and_queue_head_gauges_follow_the_ledger(budget_runtime: Ledger,
                                                                       clock: FakeClock) -> None:
    ledger = budget_runtime
    ledger.upsert_budget(BudgetSpec(NS_A, BUDGET_A, 10_000_000, period="monthly", enforcement="queue"))
    status = write()
    assert gauge("qgov_budget_burn_rate_per_day", window="1d") == 0.0
    assert gauge("qgov_budget_exhaustion_timestamp_seconds") is None  # nothing spent: no projection
    assert gauge("qgov_budget_oldest_queued_timestamp_seconds") is None
    assert status["burnRate"]["forecast"] == "no spend in the last 7 days"

    # 11:00 yesterday 1.50 was committed, today 12:00 6.00 (held), and two jobs queue behind it
    clock.advance(hours=-25)
    assert ledger.reserve(ReserveRequest("y", NS_A, BUDGET_A, 1_500_000)).decision is Decision.ADMITTED
    ledger.settle("y", 1_500_000)
    clock.advance(hours=25)
    assert ledger.reserve(ReserveRequest("a", NS_A, BUDGET_A, 6_000_000)).decision is Decision.ADMITTED
    clock.advance(minutes=5)
    first_queued = clock()
    assert ledger.reserve(ReserveRequest("b", NS_A, BUDGET_A, 5_000_000)).decision is Decision.QUEUED
    clock.advance(minutes=5)
    second_queued = clock()
    assert ledger.reserve(ReserveRequest("c", NS_A, BUDGET_A, 1_000_000)).decision is Decision.QUEUED
    clock.advance(minutes=5)
    status = write()

    # last 24 h: today's 6.00 + yesterday's 1.50 spread over its day, the 12:15/24 of it still in the window
    burn = status["burnRate"]
    last_day = Decimal("6.00") + Decimal("1.50") * (Decimal(24 * 60 - 12 * 60 - 15) / (24 * 60))
    assert Decimal(burn["lastDay"]) == last_day.quantize(Decimal("0.000001"))
    assert gauge("qgov_budget_burn_rate_per_day", window="1d") == float(Decimal(burn["lastDay"]))
    assert gauge("qgov_budget_burn_rate_per_day", window="7d") == float(Decimal(burn["lastWeek"])) == \
        float((Decimal("7.50") / 7).quantize(Decimal("0.000001")))
    # 2.50 remain at the last day's rate: gone in 2.50 / rate days, on the date the status names
    exhaustion = gauge("qgov_budget_exhaustion_timestamp_seconds")
    assert exhaustion is not None
    expected = clock() + timedelta(days=float(Decimal("2.50") / last_day))
    assert abs(exhaustion - expected.timestamp()) < 1
    assert datetime.fromtimestamp(exhaustion, timezone.utc).date().isoformat() == burn["exhaustedOn"]
    # the head of the queue: b, queued at 12:05
    assert gauge("qgov_budget_oldest_queued_timestamp_seconds") == first_queued.timestamp()

    ledger.release("b")  # cancelled: c, behind it, fits and is admitted; nothing waits
    write()
    assert gauge("qgov_budget_oldest_queued_timestamp_seconds") is None
    assert ledger.reserve(ReserveRequest("d", NS_A, BUDGET_A, 5_000_000)).decision is Decision.QUEUED
    write()
    assert gauge("qgov_budget_oldest_queued_timestamp_seconds") == clock().timestamp() != second_queued.timestamp()


def test_a_budget_that_lasts_its_period_has_no_exhaustion_time(budget_runtime: Ledger, clock: FakeClock) -> None:
    budget_runtime.upsert_budget(BudgetSpec(NS_A, BUDGET_A, 1_000_000_000, period="monthly"))
    budget_runtime.reserve(ReserveRequest("a", NS_A, BUDGET_A, 1_000_000))  # 1.00 a day against 1000.00
    status = write()
    assert "exhaustedOn" not in status["burnRate"] and "period ends" in status["burnRate"]["forecast"]
    assert gauge("qgov_budget_burn_rate_per_day", window="1d") == 1.0
    assert gauge("qgov_budget_exhaustion_timestamp_seconds") is None


def test_warning_thresholds_are_the_specs_or_the_near_limit_default(budget_runtime: Ledger) -> None:
    budget_runtime.upsert_budget(BudgetSpec(NS_A, BUDGET_A, 10_000_000, warn_at=(50, 90)))
    write()
    assert gauge("qgov_budget_warning_threshold_ratio", threshold="80") == 0.8  # no warnAt: NearLimit's 80%
    write([90, 50])
    assert gauge("qgov_budget_warning_threshold_ratio", threshold="50") == 0.5
    assert gauge("qgov_budget_warning_threshold_ratio", threshold="90") == 0.9
    assert gauge("qgov_budget_warning_threshold_ratio", threshold="80") is None  # no longer one of them
    write([95])
    assert [gauge("qgov_budget_warning_threshold_ratio", threshold=t) for t in ("50", "90", "95")] == [None, None, 0.95]


def test_a_forgotten_budget_leaves_no_series(budget_runtime: Ledger) -> None:
    budget_runtime.upsert_budget(BudgetSpec(NS_A, BUDGET_A, 10_000_000, enforcement="queue"))
    budget_runtime.reserve(ReserveRequest("a", NS_A, BUDGET_A, 6_000_000))
    budget_runtime.reserve(ReserveRequest("b", NS_A, BUDGET_A, 6_000_000))  # queued
    write([50, 90])

    def series() -> set[str]:
        return {s.name for family in REGISTRY.collect() for s in family.samples
                if s.labels.get("namespace") == NS_A and s.labels.get("budget") == BUDGET_A}

    assert series() == {"qgov_budget_limit", "qgov_budget_spent", "qgov_budget_held", "qgov_budget_remaining",
                        "qgov_budget_queued_jobs", "qgov_budget_burn_rate_per_day",
                        "qgov_budget_exhaustion_timestamp_seconds", "qgov_budget_warning_threshold_ratio",
                        "qgov_budget_oldest_queued_timestamp_seconds"}
    metrics.forget_budget((NS_A, BUDGET_A))
    assert series() == set()


def test_series_an_alert_takes_the_increase_of_exist_at_zero_before_the_first_event() -> None:
    """increase() over a series whose first sample is already 1 is empty: the first IAM failure,
    or the first idle second of a namespace's dedicated session, would never alert."""
    for reason in ("CredentialsRefused", "CredentialsMissing", "IamUnavailable"):
        assert REGISTRY.get_sample_value("qgov_iam_token_failures_total", {"reason": reason}) is not None
    where = {"namespace": "team-idle", "backend": "ibm-idle"}
    assert REGISTRY.get_sample_value("qgov_session_billed_idle_seconds_total", where) is None
    metrics.dedicated_opened({"metadata": {"namespace": "team-idle"}, "spec": {"backend": "ibm-idle",
                                                                              "mode": "dedicated"}})
    assert REGISTRY.get_sample_value("qgov_session_billed_idle_seconds_total", where) == 0
    assert REGISTRY.get_sample_value("qgov_session_billed_wall_seconds_total", where) == 0


def test_a_dedicated_sessions_idle_cost_is_its_charge_times_idle_over_wall_seconds() -> None:
    session = {"metadata": {"namespace": "team-cost"}, "spec": {"backend": "ibm-cost", "mode": "dedicated"}}
    where = {"namespace": "team-cost", "backend": "ibm-cost"}
    # 7 wall seconds at 1.60 a second = 11.20; the jobs used 2.5 QPU-seconds: 4.5 idle
    outcome = SettleOutcome("s1", "settled", 20_000_000, 11_200_000, 8_800_000, 0)
    metrics.dedicated_settled(session, {"lab": "USD"}, {"wallSeconds": 7, "usageSeconds": "2.5"}, outcome)
    assert sample("qgov_session_billed_wall_seconds_total", **where) == 7
    assert sample("qgov_session_billed_idle_seconds_total", **where) == 4.5
    assert sample("qgov_session_billed_idle_cost_total", **where, unit="USD") == 7.2  # 11.20 * 4.5 / 7
    metrics.dedicated_settled(session, {"lab": "USD"}, {"wallSeconds": 7, "usageSeconds": "2.5"},
                              SettleOutcome("s1", "settled", 20_000_000, 11_200_000, 0, 0, replayed=True))
    assert sample("qgov_session_billed_idle_cost_total", **where, unit="USD") == 7.2  # a replay counts nothing
