"""What a team lead reads: `kubectl describe qiskitbudget` and `kubectl describe qiskitjob` at a
glance (names as written, exact amounts, Events from qgov-operator, the burn rate), and
`kubectl explain` documenting every status field."""

from __future__ import annotations

import os
import re

import pytest

from .conftest import NS, Env
from .test_admission_e2e import kubectl


def _section(text: str, title: str) -> str:
    """The lines of a describe section (`Title:` up to the next line indented as little or less)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{title}:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    out = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        out.append(line.strip())
    return "\n".join(out)


def test_describe_reads_at_a_glance(env: Env) -> None:
    env.backend("fake-manila", provider="fake", device="fake_manila", pricing={"perQPUSecond": "1.60"})
    env.budget("10.00", period="none")  # no period end: the forecast names a date
    env.job("bell", backend="fake-manila", shots=1000)
    assert env.wait_terminal(["bell"])["bell"]["phase"] == "Succeeded"
    env.wait(lambda: env.get("qiskitbudgets", NS)["status"].get("jobs", {}).get("succeeded") == 1, "budget status")
    env.wait(lambda: env.get("qiskitbudgets", NS)["status"].get("burnRate"), "burn rate")
    budget = kubectl(env, "describe", "qiskitbudget", NS, "-n", NS)
    job = kubectl(env, "describe", "qiskitjob", "bell", "-n", NS)
    if os.environ.get("QGOV_DESCRIBE_OUT"):
        with open(os.environ["QGOV_DESCRIBE_OUT"], "a") as out:
            out.write(f"---- {env.cluster.__class__.__name__}\n{budget}\n{job}\n")
    status = env.get("qiskitbudgets", NS)["status"]
    spent = status["spent"]
    # backends and sessions keep their names (no "Fake - Manila"), amounts are exact decimals
    backends = _section(budget, "Spend By Backend")
    assert re.search(rf"Amount:\s+{re.escape(spent)}\n\s*Jobs:\s+1\nName:\s+fake-manila", backends), budget
    assert "Fake - Manila" not in budget and "(none)" not in budget
    # the burn rate and when the budget runs out at that rate
    burn = _section(budget, "Burn Rate")
    assert re.search(rf"Last Day:\s+{re.escape(spent)}\b", burn), budget
    assert re.search(r"Exhausted On:\s+\d{4}-\d{2}-\d{2}", burn), budget
    assert re.search(r"Forecast:\s+at this rate \(\S+ USD a day, the last (day|week)'s\), exhausted on \d{4}-\d{2}-\d{2}", burn), budget
    # a job's QPU-seconds: an exact decimal of at most 6 places, not a float's noise
    qpu = re.search(r"Qpu Seconds:\s+(\S+)", job)
    assert qpu and re.fullmatch(r"\d+(\.\d{1,6})?", qpu[1]), job
    # Events come from qgov's operator, not "kopf"
    env.job("too-big", backend="fake-manila", shots=100000, maxCost="0.01")
    env.wait_terminal(["too-big"])
    events = kubectl(env, "describe", "qiskitjob", "too-big", "-n", NS)
    assert re.search(r"Warning\s+MaxCostExceeded\s+\S+\s+qgov-operator\s", events), events
    assert "kopf" not in events


@pytest.mark.parametrize("kind, fields", [
    ("qiskitbudget", ["limit", "spent", "reserved", "remaining", "unit", "periodStart", "periodEnd", "jobs",
                      "spendByBackend", "spendBySession", "topJobs", "estimateAccuracy", "lateCharges",
                      "burnRate", "conditions"]),
    ("qiskitjob", ["phase", "message", "estimatedCost", "actualCost", "currency", "qpuSeconds", "attempts",
                   "podName", "resultConfigMap", "conditions", "completionTime", "retryAt"]),
    ("qiskitsession", ["phase", "sessionId", "jobs", "usageSeconds", "cost", "conditions", "tokenExpiry"]),
])
def test_kubectl_explain_documents_the_status(env: Env, kind: str, fields: list[str]) -> None:
    text = kubectl(env, "explain", f"{kind}.status")
    for field in fields:
        assert re.search(rf"^\s+{field}\s+<\S+>\s*$", text, re.M), (field, text)
    assert "<Object>" not in text.split("FIELDS:")[0] or "DESCRIPTION" in text
    burn = kubectl(env, "explain", "qiskitbudget.status.burnRate") if kind == "qiskitbudget" else ""
    if burn:
        assert "exhaustedOn" in burn and "per day" in burn
