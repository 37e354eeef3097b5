"""The operator's /metrics, scraped over HTTP from the real `qgov operator` process and read with
prometheus_client's own parser: the figures are the ledger's, the counters the jobs' fates, and
the number of series does not grow with the number of jobs."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qgov_dev.testing.ibm_cloud import LocalIbmCloud

from .conftest import NS, Env
from .test_sessions_e2e import FAST, ibm, open_session, session_phase  # noqa: F401,F811  (ibm: a fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = _free_port()  # the operator_env marker needs it when the module is imported

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(env: Env) -> Samples:
    """Every qgov_ sample of the operator's /metrics, by name and labels (on the real control plane
    with the token of a ServiceAccount bound to qgov-metrics-reader, as Prometheus scrapes it)."""
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/metrics")
    if hasattr(env.cluster, "metrics_token"):
        request.add_header("Authorization", f"Bearer {env.cluster.metrics_token()}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("qgov_")}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def micro(amount: float) -> int:
    """A gauge's float back to micro-units, exactly (the exposition writes the shortest repr)."""
    exact = Decimal(repr(amount)) * 1_000_000
    assert exact == exact.to_integral_value(), amount
    return int(exact)


def budget_settled(env: Env, spent: str, reserved: str) -> bool:
    status = env.get("qiskitbudgets", NS).get("status") or {}
    return status.get("spent") == spent and status.get("reserved") == reserved


@pytest.mark.slow
@pytest.mark.operator_env(QGOV_METRICS_PORT=str(PORT))
def test_metrics_show_the_ledger_balance_and_every_decision(env: Env) -> None:
    env.budget("1.00")
    names = [f"bell-{i}" for i in range(5)]
    for name in names:
        env.job(name, shots=2000)
    env.job("nowhere", backend="no-such-backend")
    statuses = env.wait_terminal([*names, "nowhere"])
    env.wait(lambda: budget_settled(env, "0.90", "0.00"), "the budget's status after the settlements")

    samples = scrape(env)
    balance = env.ledger().balance(NS, NS)
    budget = {"namespace": NS, "budget": NS, "unit": "USD"}
    assert micro(value(samples, "qgov_budget_spent", **budget)) == balance.spent_micro == 900_000
    assert micro(value(samples, "qgov_budget_held", **budget)) == balance.held_micro == 0
    assert micro(value(samples, "qgov_budget_limit", **budget)) == balance.limit_micro
    assert micro(value(samples, "qgov_budget_remaining", **budget)) == balance.remaining_micro
    assert value(samples, "qgov_budget_queued_jobs", **budget) == 0
    # the burn rate the status shows, per day; the default warning threshold (NearLimit's 80%)
    burn = env.get("qiskitbudgets", NS)["status"]["burnRate"]
    assert micro(value(samples, "qgov_budget_burn_rate_per_day", **budget, window="1d")) == \
        int(Decimal(burn["lastDay"]) * 1_000_000) == 900_000  # all of it committed today
    assert micro(value(samples, "qgov_budget_burn_rate_per_day", **budget, window="7d")) == \
        int(Decimal(burn["lastWeek"]) * 1_000_000) == 128_571  # 0.90 / 7, to the micro-unit
    assert value(samples, "qgov_budget_warning_threshold_ratio", **budget, threshold="80") == 0.8
    # 0.10 left at 0.90 a day: gone in under 3 hours, on the date the status says (absent if the
    # month ends first)
    exhaustion = samples.get(("qgov_budget_exhaustion_timestamp_seconds", frozenset(budget.items())))
    if "exhaustedOn" in burn:
        assert exhaustion is not None and 0 < exhaustion - time.time() < 3 * 3600
        assert datetime.fromtimestamp(exhaustion, timezone.utc).date().isoformat() == burn["exhaustedOn"]
    else:
        assert exhaustion is None and "period ends" in burn["forecast"]
    assert ("qgov_budget_oldest_queued_timestamp_seconds", frozenset(budget.items())) not in samples  # none waits

    # one decision per job, by outcome and reason, as the jobs ended up
    decisions = Counter({(dict(labels)["outcome"], dict(labels)["reason"]): v for (name, labels), v in samples.items()
                         if name == "qgov_admission_decisions_total"})
    phases = Counter(s["phase"] for s in statuses.values())
    assert phases == {"Succeeded": 3, "Refused": 2, "Failed": 1}
    assert decisions == {("Admitted", "BudgetReserved"): 3, ("Refused", "BudgetExceeded"): 2,
                         ("Failed", "UnknownBackend"): 1}
    assert value(samples, "qgov_admission_decisions_total", namespace=NS, budget=NS, outcome="Admitted",
                 reason="BudgetReserved") == 3
    assert value(samples, "qgov_admission_latency_seconds_count", outcome="Admitted") == 3
    assert value(samples, "qgov_reservation_latency_seconds_count") == 5  # the unknown backend reserved nothing

    # three settlements at exactly their estimate (0.30 per task), no overrun
    assert value(samples, "qgov_settlements_total", namespace=NS, budget=NS) == 3
    assert ("qgov_overruns_total", frozenset({"namespace": NS, "budget": NS}.items())) not in samples
    assert value(samples, "qgov_cost_actual_over_estimate_count", backend="priced-aer") == 3
    assert value(samples, "qgov_cost_actual_over_estimate_sum", backend="priced-aer") == 3.0
    assert value(samples, "qgov_cost_actual_over_estimate_bucket", backend="priced-aer", le="0.99") == 0
    assert value(samples, "qgov_cost_actual_over_estimate_bucket", backend="priced-aer", le="1.0") == 3


@pytest.mark.slow
@pytest.mark.no_pod_runner  # executor pods stay Pending: the jobs stay Admitted, their money held
@pytest.mark.operator_env(QGOV_METRICS_PORT=str(PORT), QGOV_POD_SWEEP_SECONDS="3600")
def test_series_do_not_grow_with_jobs(env: Env) -> None:
    # a limit so large that the burn rate's projection stays beyond the period, whatever the date:
    # 300 USD a day against a million lasts 9 years, so the exhaustion gauge (one series per budget,
    # set only when the funds would run out before the period ends) is absent in both scrapes
    env.budget("1000000.00")
    for i in range(10):
        env.job(f"few-{i}", shots=100)
    env.wait(lambda: budget_settled(env, "0.00", "3.00"), "10 jobs held", timeout=60)
    few = scrape(env)

    for i in range(990):
        env.job(f"many-{i}", shots=100)
    env.wait(lambda: budget_settled(env, "0.00", "300.00"), "1,000 jobs held", timeout=300)
    # the budget's status can show the last holds a moment before their handlers count the decision
    # (the ledger's group commit returns to every waiting handler at once, while the status writer
    # reads it at once too): the counter is scraped once it has counted them all, then never beyond
    admitted = {"namespace": NS, "budget": NS, "outcome": "Admitted", "reason": "BudgetReserved"}
    env.wait(lambda: scrape(env).get(("qgov_admission_decisions_total", frozenset(admitted.items()))) == 1000,
             "1,000 admissions counted", timeout=60)
    many = scrape(env)

    assert set(many) == set(few)  # the same series, whatever the number of jobs
    uids = {j["metadata"]["uid"] for j in env.jobs()}
    names = {j["metadata"]["name"] for j in env.jobs()}
    assert len(uids) == 1000
    label_values = {v for _, labels in many for _, v in labels}
    assert not label_values & (uids | names)
    budget = {"namespace": NS, "budget": NS, "unit": "USD"}
    assert micro(value(many, "qgov_budget_held", **budget)) == env.ledger().balance(NS, NS).held_micro == 300_000_000
    assert value(many, "qgov_admission_decisions_total", **admitted) == 1000
    assert value(many, "qgov_reservation_latency_seconds_count") == 1000


@pytest.mark.slow
@pytest.mark.no_pod_runner  # the first job stays Admitted, its money held: the second waits
@pytest.mark.operator_env(QGOV_METRICS_PORT=str(PORT), QGOV_POD_SWEEP_SECONDS="3600")
def test_the_head_of_a_queue_shows_when_it_was_queued(env: Env) -> None:
    env.budget("0.30", enforcement="queue", warnAt=[50, 90])
    env.job("first", shots=100)
    env.wait(lambda: env.status("first").get("phase") == "Admitted", "first admitted")
    env.job("waiting", shots=100)
    env.wait(lambda: env.status("waiting").get("phase") == "Queued", "waiting queued")
    budget = {"namespace": NS, "budget": NS, "unit": "USD"}
    env.wait(lambda: scrape(env).get(("qgov_budget_queued_jobs", frozenset(budget.items()))) == 1, "1 queued in /metrics")

    samples = scrape(env)
    ledger = env.ledger()
    queued_at = ledger.reservation(env.get("qiskitjobs", "waiting")["metadata"]["uid"]).created_at
    ledger.close()
    assert value(samples, "qgov_budget_oldest_queued_timestamp_seconds", **budget) == \
        queued_at.replace(tzinfo=queued_at.tzinfo or timezone.utc).timestamp()
    assert {t: value(samples, "qgov_budget_warning_threshold_ratio", **budget, threshold=t) for t in ("50", "90")} \
        == {"50": 0.5, "90": 0.9}
    assert value(samples, "qgov_budget_remaining", **budget) == 0  # all of it held: exhausted, nothing projected
    assert ("qgov_budget_exhaustion_timestamp_seconds", frozenset(budget.items())) not in samples

    env.custom.delete_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitjobs", "waiting")  # cancelled
    oldest = ("qgov_budget_oldest_queued_timestamp_seconds", frozenset(budget.items()))
    env.wait(lambda: oldest not in scrape(env), "no queue head in /metrics once nothing waits")


@pytest.mark.slow
@pytest.mark.operator_env(**FAST, QGOV_METRICS_PORT=str(PORT))
def test_a_dedicated_session_shows_its_billed_wall_and_idle_seconds(env: Env, ibm: LocalIbmCloud) -> None:  # noqa: F811
    open_session(env, ibm, "200.00", "focus", mode="dedicated", maxTime=100, idleTimeout=10)
    env.job("inside", backend="ibm-local", session="focus", shots=1000)
    assert env.wait_terminal(["inside"])["inside"]["phase"] == "Succeeded"
    closed = session_phase(env, "focus", "Closed")["status"]
    charged = f"{int(closed['wallSeconds']) * Decimal('1.60'):.2f}"  # its wall time at 1.60 USD per second
    env.wait(lambda: budget_settled(env, charged, "0.00"), "the budget's status showing the session's charge")

    samples = scrape(env)
    where = {"namespace": NS, "backend": "ibm-local"}
    wall = Decimal(closed["wallSeconds"])
    assert Decimal(repr(value(samples, "qgov_session_billed_wall_seconds_total", **where))) == wall
    idle = Decimal(repr(value(samples, "qgov_session_billed_idle_seconds_total", **where)))
    assert idle == wall - Decimal(closed["usageSeconds"]) and 0 < idle < wall  # the QPU worked some of it
    idle_cost = value(samples, "qgov_session_billed_idle_cost_total", **where, unit="USD")
    assert idle_cost == float(Fraction(Decimal(charged)) * Fraction(idle) / Fraction(wall))  # the idle share of the charge
    assert value(samples, "qgov_runtime_session_jobs_count", mode="dedicated") == 1
    assert value(samples, "qgov_runtime_session_jobs_sum", mode="dedicated") == 1
    assert value(samples, "qgov_sessions", mode="dedicated", phase="Closed") == 1
    assert value(samples, "qgov_settlements_total", namespace=NS, budget=NS) == 1  # the session, not its job
    assert micro(value(samples, "qgov_budget_spent", namespace=NS, budget=NS, unit="USD")) == \
        env.ledger().balance(NS, NS).spent_micro == int(wall) * 1_600_000
    assert value(samples, "qgov_iam_token_refreshes_total") >= 1
    assert value(samples, "qgov_iam_token_failures_total", reason="CredentialsRefused") == 0
    assert value(samples, "qgov_ibm_api_answers_total", method="POST", status="200") >= 1  # the session opened
