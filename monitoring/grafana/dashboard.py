"""Writes qgov-dashboard.json, the Grafana dashboard (import it as is): `python monitoring/grafana/dashboard.py`.
tests/operations/test_monitoring.py checks that the JSON is what this writes, and that its queries name only
metrics the operator exports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent / "qgov-dashboard.json"
# the chart's copy (its ConfigMap with metrics.grafanaDashboard.enabled; a chart reads no file outside it)
CHART_COPY = Path(__file__).resolve().parents[2] / "charts" / "qgov" / "files" / "qgov-dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
BUDGET = 'namespace=~"$namespace", budget=~"$budget"'  # the budget template variables, as label matchers
NAMESPACE = 'namespace=~"$namespace"'
BY_BUDGET = "max by (namespace, budget, unit)"  # one series per budget, however many replicas are scraped
W, H = 24, 8  # Grafana's grid: 24 columns


class Layout:
    """Panels placed left to right, rows top to bottom, with unique ids."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "id": len(self.panels) + 1,
                            "gridPos": {"h": 1, "w": W, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0

    def add(self, panel: dict[str, Any], w: int, h: int = H) -> None:
        if self.x + w > W:
            self._newline()
        panel.update(id=len(self.panels) + 1, gridPos={"h": h, "w": w, "x": self.x, "y": self.y}, datasource=DS)
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def target(expr: str, legend: str, ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": not instant,
            "instant": instant, "editorMode": "code"}


def targets(*queries: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


def timeseries(title: str, description: str, queries: list[dict[str, Any]], unit: str = "short", *,
               stack: bool = False, bars: bool = False, overrides: list[dict[str, Any]] | None = None,
               minimum: float | None = 0) -> dict[str, Any]:
    custom: dict[str, Any] = {"drawStyle": "bars" if bars else "line", "lineWidth": 1, "fillOpacity": 80 if bars else 10,
                              "showPoints": "never", "spanNulls": False,
                              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults: dict[str, Any] = {"unit": unit, "custom": custom}
    if minimum is not None:
        defaults["min"] = minimum
    return {"type": "timeseries", "title": title, "description": description, "targets": queries,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def bargauge(title: str, description: str, query: dict[str, Any], unit: str, steps: list[tuple[float | None, str]],
             maximum: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "min": 0, "thresholds": {
        "mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}}
    if maximum is not None:
        defaults["max"] = maximum
    return {"type": "bargauge", "title": title, "description": description, "targets": [query],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}}


def dashed(regex: str) -> dict[str, Any]:
    """Series whose name matches: a dashed line, no fill (a limit drawn against what is spent)."""
    return {"matcher": {"id": "byRegexp", "options": regex},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "custom.fillOpacity", "value": 0}]}


def panels() -> list[dict[str, Any]]:
    g = Layout()
    g.row("Budgets")
    g.add(bargauge(
        "Committed share of the limit", "Spent + reserved over the limit, this period. The alert "
        "QgovBudgetPastWarningThreshold fires at the budget's lowest warnAt (80% by default).",
        target(f"{BY_BUDGET} ((qgov_budget_spent{{{BUDGET}}} + qgov_budget_held{{{BUDGET}}}) "
               f"/ qgov_budget_limit{{{BUDGET}}})", "{{namespace}}/{{budget}}", instant=True),
        "percentunit", [(None, "green"), (0.8, "orange"), (1, "red")], maximum=1), w=8)
    g.add(timeseries(
        "Spend vs limit", "What each budget has spent (settled) and holds (reserved for admitted work) "
        "this period, in its unit, against its limit (dashed).",
        targets((f"{BY_BUDGET} (qgov_budget_spent{{{BUDGET}}})", "{{namespace}}/{{budget}} spent ({{unit}})"),
                (f"{BY_BUDGET} (qgov_budget_held{{{BUDGET}}})", "{{namespace}}/{{budget}} reserved ({{unit}})"),
                (f"{BY_BUDGET} (qgov_budget_limit{{{BUDGET}}})", "{{namespace}}/{{budget}} limit ({{unit}})")),
        overrides=[dashed(".* limit .*")]), w=16)
    g.add(timeseries(
        "Burn rate", "Committed (spent + reserved) per day: over the last 24 hours (1d) and the daily "
        "average of the last 7 days (7d), in the budget's unit. The forecast uses the higher.",
        targets((f"max by (namespace, budget, unit, window) (qgov_budget_burn_rate_per_day{{{BUDGET}}})",
                 "{{namespace}}/{{budget}} {{window}} ({{unit}}/day)"))), w=12)
    g.add(bargauge(
        "Exhausted in", "At the burn rate, when the remaining funds run out; only budgets that would run "
        "out before their period ends (and are replenished) are shown.",
        target(f"min by (namespace, budget) (qgov_budget_exhaustion_timestamp_seconds{{{BUDGET}}}) - time()",
               "{{namespace}}/{{budget}}", instant=True),
        "s", [(None, "red"), (86_400, "orange"), (7 * 86_400, "green")]), w=6)
    g.add(bargauge(
        "Remaining", "Limit minus spent minus reserved, this period, in the budget's unit.",
        target(f"{BY_BUDGET} (qgov_budget_remaining{{{BUDGET}}})", "{{namespace}}/{{budget}} ({{unit}})",
               instant=True),
        "short", [(None, "red"), (0.000001, "green")]), w=6)

    g.row("Queue and admission")
    g.add(timeseries(
        "Queued jobs", "QiskitJobs waiting in each budget's FIFO queue (enforcement: queue).",
        targets((f"max by (namespace, budget) (qgov_budget_queued_jobs{{{BUDGET}}})", "{{namespace}}/{{budget}}"))),
        w=8)
    g.add(timeseries(
        "Oldest queued job waiting", "How long the job at the head of each budget's queue has waited. The "
        "alert QgovJobQueuedTooLong fires at 30 minutes.",
        targets((f"time() - min by (namespace, budget) (qgov_budget_oldest_queued_timestamp_seconds{{{BUDGET}}})",
                 "{{namespace}}/{{budget}}")), "s"), w=8)
    g.add(timeseries(
        "Refusals by reason", "QiskitJobs refused, by the reason in their Failed condition (BudgetExceeded, "
        "MaxCostExceeded, NoBudget, BudgetDeleted, ...).",
        targets(((f'sum by (reason) (increase(qgov_admission_decisions_total{{outcome="Refused", {BUDGET}}}'
                  '[$__rate_interval]))'), "{{reason}}")), stack=True, bars=True), w=8)
    g.add(timeseries(
        "Admission decisions", "Decisions per second by outcome: Admitted, Queued, Refused, Failed (a job "
        "that cannot run: bad circuit, unknown backend).",
        targets((f"sum by (outcome) (rate(qgov_admission_decisions_total{{{BUDGET}}}[$__rate_interval]))",
                 "{{outcome}}")), "ops", stack=True), w=8)
    g.add(timeseries(
        "Admission latency", "From a QiskitJob's creation to its first decision (p50, p95), and a "
        "reservation in the ledger (p99).",
        targets((("histogram_quantile(0.5, sum by (le) (rate(qgov_admission_latency_seconds_bucket"
                  "[$__rate_interval])))"), "create to decision p50"),
                (("histogram_quantile(0.95, sum by (le) (rate(qgov_admission_latency_seconds_bucket"
                  "[$__rate_interval])))"), "create to decision p95"),
                (("histogram_quantile(0.99, sum by (le) (rate(qgov_reservation_latency_seconds_bucket"
                  "[$__rate_interval])))"), "reservation p99")), "s"), w=8)
    g.add(timeseries(
        "Settlements and overruns", "Reservations settled with what the work used, and those whose actual "
        "cost was above what was reserved (late charges included).",
        targets((f"sum by (namespace, budget) (increase(qgov_settlements_total{{{BUDGET}}}[$__rate_interval]))",
                 "{{namespace}}/{{budget}} settled"),
                (f"sum by (namespace, budget) (increase(qgov_overruns_total{{{BUDGET}}}[$__rate_interval]))",
                 "{{namespace}}/{{budget}} overrun")), bars=True), w=8)

    g.row("Estimate accuracy")
    g.add(timeseries(
        "Actual over estimate", "Settled jobs' actual cost over their estimate, by backend (median and "
        "90th percentile of the histogram; 1 is exact, above 1 an underestimate).",
        targets((("histogram_quantile(0.5, sum by (le, backend) (rate(qgov_cost_actual_over_estimate_bucket"
                  "[$__rate_interval])))"), "{{backend}} p50"),
                (("histogram_quantile(0.9, sum by (le, backend) (rate(qgov_cost_actual_over_estimate_bucket"
                  "[$__rate_interval])))"), "{{backend}} p90")), "short",
        overrides=[dashed(".* p90")]), w=12)
    g.add(timeseries(
        "Mean actual over estimate", "The mean of the ratio by backend over the dashboard's interval, and "
        "how many jobs it covers.",
        targets((("sum by (backend) (rate(qgov_cost_actual_over_estimate_sum[$__rate_interval])) / "
                  "sum by (backend) (rate(qgov_cost_actual_over_estimate_count[$__rate_interval]))"), "{{backend}}")),
        "short"), w=12)

    g.row("Sessions and IBM Quantum")
    g.add(timeseries(
        "Sessions by mode and phase", "QiskitSessions the operator watches, by mode (dedicated, batch) and phase.",
        targets(("max by (mode, phase) (qgov_sessions)", "{{mode}} {{phase}}")), stack=True), w=8)
    g.add(timeseries(
        "Dedicated sessions: billed and idle seconds", "Wall-clock seconds billed for dedicated sessions "
        "per hour, and the idle part of them (no quantum work of their jobs), by namespace and backend; "
        "counted when a session is settled.",
        targets((f"sum by (namespace, backend) (increase(qgov_session_billed_wall_seconds_total{{{NAMESPACE}}}[1h]))",
                 "{{namespace}} {{backend}} billed"),
                (f"sum by (namespace, backend) (increase(qgov_session_billed_idle_seconds_total{{{NAMESPACE}}}[1h]))",
                 "{{namespace}} {{backend}} idle")), "s"), w=8)
    g.add(timeseries(
        "Dedicated sessions: idle cost", "What the idle seconds of dedicated sessions cost per hour, in the "
        "unit of the budget charged.",
        targets((f"sum by (namespace, backend, unit) (increase(qgov_session_billed_idle_cost_total{{{NAMESPACE}}}[1h]))",
                 "{{namespace}} {{backend}} ({{unit}})"))), w=8)
    g.add(timeseries(
        "IAM token refreshes and failures", "Bearer tokens obtained from IBM Cloud IAM, and exchanges that gave "
        "none, by reason. The alert QgovIamTokenRefreshFailing fires when failures go on with no token obtained.",
        targets(("sum(increase(qgov_iam_token_refreshes_total[$__rate_interval]))", "refreshed"),
                ("sum by (reason) (increase(qgov_iam_token_failures_total[$__rate_interval]))", "failed: {{reason}}")),
        bars=True), w=8)
    g.add(timeseries(
        "Jobs per Runtime session", "QiskitJobs per IBM Runtime session when it ends (median), by mode.",
        targets((("histogram_quantile(0.5, sum by (le, mode) (rate(qgov_runtime_session_jobs_bucket"
                  "[$__rate_interval])))"), "{{mode}} p50"))), w=8)
    g.add(timeseries(
        "IBM Runtime API answers", "Answers of IBM Quantum's Runtime API to the operator per second, by method "
        "and HTTP status ('error': no answer).",
        targets(("sum by (method, status) (rate(qgov_ibm_api_answers_total[$__rate_interval]))",
                 "{{method}} {{status}}")), "reqps", stack=True), w=8)
    g.add(timeseries(
        "Executor pods that cannot start", "Executor pods found unable to start, by the kubelet's or the "
        "scheduler's reason (ImagePullBackOff, Unschedulable, ...).",
        targets(("sum by (reason) (increase(qgov_executor_pod_start_failures_total[$__rate_interval]))",
                 "{{reason}}")), bars=True), w=24)
    return g.panels


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0}


def dashboard() -> dict[str, Any]:
    return {
        "title": "qgov: quantum spend and admission",
        "uid": "qgov-overview",
        "description": "Budgets, burn rate, queues, refusals, estimate accuracy and sessions of qgov's operator "
                       "(github: qgov, monitoring/grafana).",
        "tags": ["qgov", "quantum", "cost"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
            variable("namespace", "Namespace", "label_values(qgov_budget_limit, namespace)"),
            variable("budget", "Budget", 'label_values(qgov_budget_limit{namespace=~"$namespace"}, budget)'),
        ]},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> int:
    TARGET.write_text(render())
    CHART_COPY.write_text(render())
    print(f"wrote {TARGET} and {CHART_COPY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
