"""Costs out to FinOps tools: the cost view over a real ledger (SQLite and PostgreSQL), its windows,
JSON and CSV, and `qgov ledger export --format focus` checked against FOCUS 1.1's mandatory columns."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest

from governance.budget import focus
from governance.budget.costquery import BadQuery
from governance.budget.costview import aggregate, parse_cost_window, render
from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec, JobTerms, ReserveRequest, job_labels

from tests.conftest import FakeClock
from tests.operations.test_cli import assert_one_line_error, qgov

NOW = datetime(2026, 12, 5, 15, 0, tzinfo=timezone.utc)


def test_windows() -> None:
    assert parse_cost_window("thismonth", NOW).start == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert parse_cost_window(None, NOW).end == datetime(2027, 1, 1, tzinfo=timezone.utc)
    last = parse_cost_window("lastmonth", NOW)
    assert (last.start, last.end) == (datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc))
    jan = parse_cost_window("lastmonth", datetime(2027, 1, 3, tzinfo=timezone.utc))
    assert jan.start == datetime(2026, 12, 1, tzinfo=timezone.utc)
    week = parse_cost_window("7d", NOW)
    assert (week.start, week.end) == (datetime(2026, 11, 28, 15, tzinfo=timezone.utc), NOW)
    assert parse_cost_window("24h", NOW).start == datetime(2026, 12, 4, 15, tzinfo=timezone.utc)
    span = parse_cost_window("2026-11-01T00:00:00Z,2026-11-02T01:00:00+01:00", NOW)
    assert (span.start, span.end) == (datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc))
    assert span.label == "2026-11-01T00:00:00Z,2026-11-02T00:00:00Z"
    assert parse_cost_window("2026-11", NOW).end == datetime(2026, 12, 1, tzinfo=timezone.utc)
    for bad, says in [("2026-11-02T00:00:00Z,2026-11-01T00:00:00Z", "end must come after"),
                      ("2026-11-01T00:00:00,2026-11-02T00:00:00Z", "offset"), ("0d", "at least"),
                      ("yesterday", "bad window"), ("x,2026-11-02T00:00:00Z", "RFC 3339")]:
        with pytest.raises(BadQuery, match=says):
            parse_cost_window(bad, NOW)


def _settle(ledger: Ledger, key: str, ns: str, budget: str, amount: int, actual: int, backend: str,
            session: str = "", labels: dict[str, str] | None = None) -> None:
    if labels is not None:  # what the operator records at admission (handlers/jobadmission.py _record_terms)
        ledger.record_terms(JobTerms(key, f"{ns}/{key}", f"{ns}/{budget}", "USD", False, backend, session, "0", "0",
                                     0, 0, job_labels(labels)))
    ledger.reserve(ReserveRequest(key, ns, budget, amount, job=f"{ns}/{key}", backend=backend, session=session))
    ledger.settle(key, actual)


@pytest.fixture
def history(database_url: str) -> str:
    """Jobs settled in November and December in three namespaces, on two backends, one in a session;
    one held (not charged), one QPU-seconds budget."""
    clock = FakeClock(datetime(2026, 11, 10, 9, 0, 0, 250_000, tzinfo=timezone.utc))
    ledger = Ledger(database_url, clock=clock)
    ledger.upsert_budget(BudgetSpec("team-a", "team-a", 100_000_000, period="monthly"))
    ledger.upsert_budget(BudgetSpec("team-a", "research", 100_000_000))
    ledger.upsert_budget(BudgetSpec("team-b", "team-b", 100_000_000, period="monthly"))
    ledger.upsert_budget(BudgetSpec("team-c", "qpu", 100_000_000, unit="QPU-seconds"))
    _settle(ledger, "a1", "team-a", "team-a", 3_000_000, 1_255_664, "ibm_torino",
            labels={"team": "quantum", "example.com/cost-center": "cc-7", "qgov.dev/session": "not-the-owners"})
    ledger.record_pod("a1", 1, "pod-a1")
    ledger.count_attempt("a1", 1, 1_255_664, "1.255664", "runtime usage")
    _settle(ledger, "b1", "team-b", "team-b", 2_000_000, 100_001, "aer_simulator")
    _settle(ledger, "c1", "team-c", "qpu", 9_000_000, 8_000_000, "ibm_torino")
    clock.advance(days=25)  # December 5th
    _settle(ledger, "a2", "team-a", "team-a", 1_000_000, 999_999, "aer_simulator", session="team-a/s1",
            labels={"team": "chemistry"})
    _settle(ledger, "a3", "team-a", "research", 5_000_000, 4_000_000, "ibm_torino", session="team-a/s1",
            labels={"team": "quantum"})
    ledger.reserve(ReserveRequest("a4", "team-a", "team-a", 7_000_000, job="team-a/a4", backend="ibm_torino"))
    ledger.close()
    return database_url


def test_cost_view_aggregates_by_namespace_budget_backend_session(history: str) -> None:
    ledger = Ledger(history)
    nov = parse_cost_window("2026-11-01T00:00:00Z,2026-12-01T00:00:00Z")
    dec = parse_cost_window("lastmonth", datetime(2027, 1, 2, tzinfo=timezone.utc))
    everything = parse_cost_window("2026-01-01T00:00:00Z,2027-01-01T00:00:00Z")
    assert [(x.name, x.unit, x.jobs, x.cost) for x in aggregate(ledger.charges(nov), "namespace")] == [
        ("team-a", "USD", 1, 1_255_664), ("team-b", "USD", 1, 100_001), ("team-c", "QPU-seconds", 1, 8_000_000)]
    assert [(x.name, x.jobs, x.cost, x.estimate) for x in aggregate(ledger.charges(dec), "budget")] == [
        ("team-a/research", 1, 4_000_000, 5_000_000), ("team-a/team-a", 1, 999_999, 1_000_000)]  # a4 is only held
    by_backend = aggregate(ledger.charges(everything, ["team-a", "team-b"]), "backend")
    assert [(x.name, x.unit, x.jobs, x.cost) for x in by_backend] == [
        ("aer_simulator", "USD", 2, 1_100_000), ("ibm_torino", "USD", 2, 5_255_664)]
    sessions = aggregate(ledger.charges(everything, ["team-a"]), "session")
    assert [(x.name, x.jobs, x.cost) for x in sessions] == [("", 1, 1_255_664), ("team-a/s1", 2, 4_999_999)]
    assert ledger.charges(everything, []) == []
    assert ledger.namespaces() == ["team-a", "team-b", "team-c"]
    with pytest.raises(BadQuery, match="bad aggregate 'label'"):
        aggregate([], "label")
    # by a label the jobs had when admitted; "" for jobs without it, units never summed together
    by_team = aggregate(ledger.charges(everything), "label:team")
    assert [(x.name, x.unit, x.jobs, x.cost) for x in by_team] == [
        ("", "QPU-seconds", 1, 8_000_000), ("", "USD", 1, 100_001), ("chemistry", "USD", 1, 999_999),
        ("quantum", "USD", 2, 5_255_664)]
    assert [(x.name, x.unit, x.cost) for x in aggregate(ledger.charges(nov), "label:example.com/cost-center")] == [
        ("", "QPU-seconds", 8_000_000), ("", "USD", 100_001), ("cc-7", "USD", 1_255_664)]
    assert [x.name for x in aggregate(ledger.charges(everything), "label:qgov.dev/session")] == ["", ""]  # qgov's own
    for bad in ("label:", "label:Team!", "label:-team", "label:a/b/c"):
        with pytest.raises(BadQuery, match="is not a label key"):
            aggregate([], bad)

    body = json.loads(render(dec, "namespace", aggregate(ledger.charges(dec), "namespace"), "json", ["team-a"]))
    assert body == {"window": {"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"},
                    "aggregate": "namespace", "namespaces": ["team-a"],
                    "items": [{"name": "team-a", "unit": "USD", "jobs": 2, "cost": "4.999999",
                               "estimate": "6.00", "late": "0.00"}],
                    "totals": [{"unit": "USD", "jobs": 2, "cost": "4.999999"}]}
    rows = list(csv.DictReader(io.StringIO(render(nov, "backend", aggregate(ledger.charges(nov), "backend"), "csv"))))
    assert rows[0] == {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-12-01T00:00:00Z",
                       "backend": "aer_simulator", "unit": "USD", "jobs": "1", "cost": "0.100001",
                       "estimate": "2.00", "late": "0.00"}
    with pytest.raises(BadQuery, match="bad format"):
        render(nov, "backend", [], "xml")
    ledger.close()


def test_focus_export_validates_against_the_mandatory_columns(history: str) -> None:
    out = qgov("ledger", "export", "--format", "focus", "--window", "2026-01-01T00:00:00Z,2027-01-01T00:00:00Z",
               url=history)
    assert out.returncode == 0, out.stderr
    assert "1 job(s) charged in QPU-seconds budgets left out" in out.stderr
    reader = csv.DictReader(io.StringIO(out.stdout))
    assert set(focus.MANDATORY) <= set(reader.fieldnames or ())
    rows = list(reader)
    assert focus.validate(rows) == []
    assert [r["ResourceId"] for r in rows] == ["a1", "b1", "a2", "a3"]
    a1 = rows[0]
    assert a1["BilledCost"] == a1["EffectiveCost"] == a1["ListCost"] == a1["ContractedCost"] == "1.255664"
    assert a1["BillingCurrency"] == "USD" and a1["ChargeCategory"] == "Usage" and a1["ChargeClass"] == ""
    assert (a1["ChargePeriodStart"], a1["ChargePeriodEnd"]) == ("2026-11-10T09:00:00Z", "2026-11-10T09:00:01Z")
    assert (a1["BillingPeriodStart"], a1["BillingPeriodEnd"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert (a1["ConsumedQuantity"], a1["ConsumedUnit"]) == ("1.255664", "QPU-seconds")
    assert (a1["SubAccountId"], a1["ResourceName"], a1["ResourceType"]) == ("team-a", "team-a/a1", "QiskitJob")
    assert json.loads(a1["Tags"]) == {"qgov.dev/namespace": "team-a", "qgov.dev/budget": "team-a",
                                      "qgov.dev/backend": "ibm_torino", "team": "quantum",
                                      "example.com/cost-center": "cc-7"}  # a label of qgov's own is not the job's
    assert json.loads(rows[1]["Tags"]) == {"qgov.dev/namespace": "team-b", "qgov.dev/budget": "team-b",
                                           "qgov.dev/backend": "aer_simulator"}
    assert json.loads(rows[3]["Tags"])["qgov.dev/session"] == "team-a/s1"
    assert rows[1]["ConsumedQuantity"] == "" and rows[1]["BilledCost"] == "0.100001"
    # one namespace, one month
    only = qgov("ledger", "export", "-w", "2026-12", "-n", "team-a", url=history)
    assert [r["ResourceId"] for r in csv.DictReader(io.StringIO(only.stdout))] == ["a2", "a3"]
    assert_one_line_error(qgov("ledger", "export", "-w", "soon", url=history), "bad window 'soon'")


def test_validate_catches_what_breaks_focus() -> None:
    good = {name: "x" for name in focus.MANDATORY} | {
        "BilledCost": "1.50", "ContractedCost": "1.50", "EffectiveCost": "1.50", "ListCost": "1.50",
        "PricingQuantity": "1", "BillingCurrency": "USD", "ChargeCategory": "Usage", "ChargeClass": "",
        "BillingPeriodStart": "2026-11-01T00:00:00Z", "BillingPeriodEnd": "2026-12-01T00:00:00Z",
        "ChargePeriodStart": "2026-11-01T00:00:00Z", "ChargePeriodEnd": "2026-11-01T01:00:00Z", "Tags": "{}"}
    assert focus.validate([good]) == []
    bad = good | {"BilledCost": "1.5e0", "ChargeCategory": "Quantum", "ChargePeriodEnd": "2026-11-01 01:00:00",
                  "Tags": "[1]", "ServiceName": ""}
    problems = "\n".join(focus.validate([bad]))
    for says in ["BilledCost '1.5e0' is not a decimal", "ChargeCategory 'Quantum'", "ChargePeriodEnd",
                 "Tags '[1]' is not a JSON object", "ServiceName is null"]:
        assert says in problems


# ---------------------------------------------------------------------- the HTTP server


def _reviews(users: dict[str, tuple[str, set[str]]]):  # type: ignore[no-untyped-def]
    """TokenReview and SubjectAccessReview answers for a table token -> (user, namespaces it may get
    qiskitbudgets in; "" for all). The real API server's answers are tested in
    tests/operator/test_cost_api_upstream.py; here the cost API's own part: which rows each caller gets."""
    from governance.metricsauth import User

    asked: list[tuple[str, str]] = []

    def authenticate(token: str) -> User | None:
        return User(users[token][0]) if token in users else None

    def access(user: User, attributes: dict) -> bool:  # type: ignore[type-arg]
        a = attributes["resourceAttributes"]
        assert (a["group"], a["resource"], a["verb"]) == ("qgov.dev", "qiskitbudgets", "get")
        asked.append((user.username, a["namespace"]))
        allowed = next(v[1] for v in users.values() if v[0] == user.username)
        return "" in allowed or a["namespace"] in allowed

    return authenticate, access, asked


def _get(port: int, query: str, token: str | None) -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/costs{query}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


@pytest.fixture
def cost_server(history: str):  # type: ignore[no-untyped-def]
    from governance.costapi import NamespaceAccess, app
    from governance.wsgiserve import serve_in_thread, shut

    authenticate, access, asked = _reviews({"tok-a": ("alice", {"team-a"}), "tok-admin": ("root", {""}),
                                            "tok-none": ("nobody", set())})
    ledger = Ledger(history)
    server = serve_in_thread(app(lambda: ledger, NamespaceAccess(authenticate, access)), "127.0.0.1", 0, "costapi")
    yield server.server_port, asked
    shut(server)
    ledger.close()


def test_cost_api_shows_each_caller_only_the_namespaces_it_may_read(cost_server) -> None:  # type: ignore[no-untyped-def]
    port, asked = cost_server
    window = "?window=2026-01-01T00:00:00Z,2027-01-01T00:00:00Z"
    status, kind, body = _get(port, window, "tok-a")
    assert status == 200 and kind.startswith("application/json")
    answer = json.loads(body)
    assert answer["namespaces"] == ["team-a"]
    assert answer["items"] == [{"name": "team-a", "unit": "USD", "jobs": 3, "cost": "6.255663",
                                "estimate": "9.00", "late": "0.00"}]
    status, _, body = _get(port, window + "&aggregate=namespace", "tok-admin")
    assert [i["name"] for i in json.loads(body)["items"]] == ["team-a", "team-b", "team-c"]
    status, kind, body = _get(port, window + "&aggregate=backend&format=csv", "tok-a")
    assert status == 200 and kind.startswith("text/csv")
    assert [r["backend"] for r in csv.DictReader(io.StringIO(body))] == ["aer_simulator", "ibm_torino"]
    # another team's namespace, asked for by name: refused, not an empty answer
    status, _, body = _get(port, window + "&namespace=team-b", "tok-a")
    assert status == 403 and "alice may not get qiskitbudgets.qgov.dev in namespace team-b" in body
    assert _get(port, window + "&namespace=team-a&aggregate=session", "tok-a")[0] == 200
    status, _, body = _get(port, window + "&aggregate=label:team", "tok-a")
    assert status == 200 and [(i["name"], i["cost"]) for i in json.loads(body)["items"]] == [
        ("chemistry", "0.999999"), ("quantum", "5.255664")]
    status, _, body = _get(port, window, "tok-none")
    assert status == 403 and "in any namespace that has a budget" in body
    assert _get(port, window, None)[0] == 401
    assert _get(port, window, "forged")[0] == 401
    for query, says in [("?window=yesterday", "bad window"), ("?aggregate=label", "bad aggregate"),
                        ("?aggregate=label:no%20spaces", "is not a label key"),
                        ("?format=xml", "bad format"), ("?windw=7d", "unknown parameter 'windw'")]:
        status, _, body = _get(port, query, "tok-a")
        assert status == 400 and says in body, (query, body)
    # verdicts are cached: asking again asks the API server nothing
    before = len(asked)
    assert _get(port, window, "tok-a")[0] == 200
    assert len(asked) == before


def test_kubectl_qgov_report_reads_the_cost_api(cost_server, capsys) -> None:  # type: ignore[no-untyped-def]
    from governance import kubectl

    port, _ = cost_server
    server = f"http://127.0.0.1:{port}"
    window = "2026-12-01T00:00:00Z,2027-01-01T00:00:00Z"
    assert kubectl.main(["report", "--server", server, "--token", "tok-a", "--window", window, "--by", "budget"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "costs from 2026-12-01T00:00:00Z to 2027-01-01T00:00:00Z, namespaces: team-a"
    assert out[1].split() == ["BUDGET", "UNIT", "JOBS", "COST", "ESTIMATE"]
    assert out[2].split() == ["team-a/research", "USD", "1", "4.00", "5.00"]
    assert out[3].split() == ["team-a/team-a", "USD", "1", "0.999999", "1.00"]
    assert out[4].split() == ["TOTAL", "USD", "2", "4.999999"]
    assert kubectl.main(["-n", "team-a", "report", "--server", server, "--token", "tok-a", "--window", window,
                         "-o", "csv"]) == 0
    assert [r["backend"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out))] == ["aer_simulator", "ibm_torino"]
    assert kubectl.main(["-n", "team-b", "report", "--server", server, "--token", "tok-a"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("kubectl qgov: the cost API answered 403: alice may not get qiskitbudgets.qgov.dev "
                           "in namespace team-b")
    assert kubectl.main(["report", "--server", server, "--token", "tok-a", "--window", window, "--by",
                         "label:team"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["LABEL:TEAM", "UNIT", "JOBS", "COST", "ESTIMATE"]
    assert [line.split()[0] for line in out[2:]] == ["chemistry", "quantum", "TOTAL"]
    with pytest.raises(SystemExit):
        kubectl.main(["report", "--by", "label:Not A Key"])
    assert "is not a label key" in capsys.readouterr().err
    assert kubectl.main(["report", "--by", "label:team"]) == 1
    assert "need --server" in capsys.readouterr().err
    assert kubectl.main(["report", "--window", "7d"]) == 1
    assert "need --server" in capsys.readouterr().err
