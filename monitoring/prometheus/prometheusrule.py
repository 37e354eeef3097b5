"""Writes qgov-prometheusrule.yaml, the Prometheus Operator's PrometheusRule, from qgov-alerts.yaml
(the plain rules file, the one source), and copies that file into the chart (charts/qgov/files/,
its PrometheusRule with metrics.prometheusRule.enabled; a chart reads no file outside its directory):
`python monitoring/prometheus/prometheusrule.py`. tests/operations/test_monitoring.py checks that all say the same."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE, TARGET = HERE / "qgov-alerts.yaml", HERE / "qgov-prometheusrule.yaml"
CHART_COPY = HERE.parents[1] / "charts" / "qgov" / "files" / "qgov-alerts.yaml"

HEADER = """\
# Generated from qgov-alerts.yaml by prometheusrule.py: edit that file, then run
#   python monitoring/prometheus/prometheusrule.py
# Apply it in the namespace your Prometheus Operator watches for rules; if its ruleSelector wants a
# label (kube-prometheus-stack: release: <its release name>), add it under metadata.labels.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: qgov
  labels:
    app.kubernetes.io/name: qgov
    app.kubernetes.io/component: alerts
spec:
"""


def render(source: str) -> str:
    """The PrometheusRule: the plain file's groups, verbatim, under spec (its comments too)."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    return HEADER + "".join(f"  {line}\n" if line else "\n" for line in lines[start:])


def main() -> int:
    TARGET.write_text(render(SOURCE.read_text()))
    CHART_COPY.write_text(SOURCE.read_text())
    print(f"wrote {TARGET} and {CHART_COPY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
