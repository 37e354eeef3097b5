"""The Grafana dashboard and the alerting rules in monitoring/: promtool accepts the rules and their
unit tests pass (each alert fires when it should and not otherwise), the PrometheusRule says what
the plain rules file says, the dashboard is the one its script writes, and every query of both
names only metrics the operator exports (names read by promtool's own PromQL parser)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import governance.metrics  # noqa: F401  (registers the operator's metrics)
import governance.webhook.server  # noqa: F401  (and the webhook's, registered when a replica serves it)
from qgov_dev.devcluster.controlplane import ControlPlaneError, tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring/prometheus/qgov-alerts.yaml"
RULE_TESTS = ROOT / "monitoring/prometheus/qgov-alerts.test.yaml"
PROMETHEUS_RULE = ROOT / "monitoring/prometheus/qgov-prometheusrule.yaml"
DASHBOARD = ROOT / "monitoring/grafana/qgov-dashboard.json"
PROBE = "__qgov_probe__"
ALERTS = {"QgovBudgetPastWarningThreshold", "QgovBudgetExhausted", "QgovJobQueuedTooLong",
          "QgovIamTokenRefreshFailing", "QgovDedicatedSessionBilledIdle",
          # the operator itself
          "QgovOperatorDown", "QgovNoLeader", "QgovLedgerUnreachable", "QgovWebhookUnreachable", "QgovWebhookNotCalled",
          "QgovExecutorPodsStalled"}


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return tool("promtool")
    except ControlPlaneError as exc:
        pytest.fail(str(exc), pytrace=False)


def script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- what PromQL names


def metric_names(promtool: Path, expr: str) -> set[str]:
    """The metric names an expression selects, as promtool's parser sees them: it adds a matcher to
    every vector selector and prints the expression back, `name{matchers}` for each."""
    grafana = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    result = subprocess.run([str(promtool), "--experimental", "promql", "label-matchers", "set", grafana, PROBE, "1"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"promtool cannot parse {expr!r}: {result.stderr}"
    selectors = re.findall(rf'([A-Za-z_:][A-Za-z0-9_:]*)?\{{[^{{}}]*\b{PROBE}="1"', result.stdout)
    assert all(selectors), f"a selector without a metric name in {expr!r}: {result.stdout}"
    return set(selectors)


@cache
def exported() -> frozenset[str]:
    """Every sample name the operator's registry can expose, with the suffixes its types add."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
    return frozenset(family.name + suffix for family in REGISTRY.collect() if family.name.startswith("qgov_")
                     for suffix in suffixes.get(family.type, ("",)))


def test_metric_names_come_from_promtools_parser_not_from_words(promtool: Path) -> None:
    assert metric_names(promtool, 'histogram_quantile(0.9, sum by (le, backend) (rate(x_bucket{le!="1"}[5m])))'
                                  ' / on (backend) group_left () max(y offset 1h) unless z and time() - w > 3') == \
        {"x_bucket", "y", "z", "w"}
    assert metric_names(promtool, 'sum(rate(a_total{namespace=~"$namespace"}[$__rate_interval])) or vector(0)') \
        == {"a_total"}
    assert "qgov_admission_decisions_total" in exported() and "qgov_admission_decisions" not in exported()
    assert {"qgov_cost_actual_over_estimate_bucket", "qgov_sessions", "qgov_budget_burn_rate_per_day"} <= exported()


# ---------------------------------------------------------------------- the rules


def test_promtool_accepts_the_rules(promtool: Path) -> None:
    result = subprocess.run([str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise(promtool: Path) -> None:
    """qgov-alerts.test.yaml: input series, and the alerts expected (or none) at given times."""
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in test.get("alert_rule_test", ())}
    assert tested == ALERTS
    result = subprocess.run([str(promtool), "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                            cwd=RULE_TESTS.parent, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_every_alert_says_how_bad_and_what_happened() -> None:
    assert {rule["alert"] for rule in rules()} == ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        # an alert per namespace, budget or reason names which one (the operator-wide ones have no labels)
        grouped = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
        if grouped:
            assert "$labels." in rule["annotations"]["description"], rule["alert"]


def test_every_alert_links_its_runbook() -> None:
    """runbook_url: the anchor of the alert's section in the docs' runbooks page (docs/runbooks.md)."""
    for rule in rules():
        assert rule["annotations"]["runbook_url"] == f"https://qgov.dev/docs/runbooks/#{rule['alert'].lower()}"


def test_each_alert_has_a_firing_and_a_quiet_case_in_the_unit_tests() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in ALERTS:
        mine = [case for case in cases if case["alertname"] == alert]
        assert [c for c in mine if c["exp_alerts"]] and [c for c in mine if not c["exp_alerts"]], alert


def test_every_rule_names_only_metrics_the_operator_exports(promtool: Path) -> None:
    for rule in rules():
        names = metric_names(promtool, rule["expr"])
        assert names and names <= exported(), (rule["alert"], names - exported())


def test_the_prometheusrule_is_the_rules_file() -> None:
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1" and resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["name"] == "qgov"
    assert resource["spec"] == yaml.safe_load(RULES.read_text())
    assert PROMETHEUS_RULE.read_text() == script("monitoring/prometheus/prometheusrule.py").render(RULES.read_text()), \
        "run python monitoring/prometheus/prometheusrule.py"


# ---------------------------------------------------------------------- the dashboard


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target and of every query variable (label_values(selector, label))."""
    found = [(panel["title"], t["expr"]) for panel in board["panels"] for t in panel.get("targets", ())]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert match, variable
            found.append((f"${variable['name']}", match.group(1)))
    return found


def test_the_dashboard_is_what_its_script_writes() -> None:
    assert DASHBOARD.read_text() == script("monitoring/grafana/dashboard.py").render(), \
        "run python monitoring/grafana/dashboard.py"


def test_the_dashboard_imports_as_is() -> None:
    """What Grafana needs to import it without editing: a schema version, a Prometheus data source
    chosen on import (a variable), the namespace and budget variables, unique ids, no overlaps."""
    board = dashboard()
    assert board["schemaVersion"] == 39 and board["uid"] and board["title"] and "id" not in board
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["query"]["query"] == "label_values(qgov_budget_limit, namespace)"
    assert "$namespace" in variables["budget"]["query"]["query"]
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    for variable in (variables["namespace"], variables["budget"]):
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_dashboard_query_names_only_metrics_the_operator_exports(promtool: Path) -> None:
    named: set[str] = set()
    for title, expr in queries(dashboard()):
        names = metric_names(promtool, expr)
        assert names and names <= exported(), (title, expr, names - exported())
        named |= names
    # what the issue asks the dashboard to show: spend vs limit, burn rate, queue, refusals,
    # estimate accuracy, sessions and idle cost, token failures
    assert {"qgov_budget_spent", "qgov_budget_held", "qgov_budget_limit", "qgov_budget_burn_rate_per_day",
            "qgov_budget_exhaustion_timestamp_seconds", "qgov_budget_queued_jobs",
            "qgov_budget_oldest_queued_timestamp_seconds", "qgov_admission_decisions_total",
            "qgov_cost_actual_over_estimate_bucket", "qgov_sessions", "qgov_session_billed_idle_seconds_total",
            "qgov_session_billed_idle_cost_total", "qgov_iam_token_failures_total"} <= named


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
