"""`kubectl qgov` as a user runs it (the installed `kubectl-qgov` executable, a kubeconfig, nothing
else): `estimate` prices a manifest to the micro-unit the operator then reserves, refuses what the
budget cannot pay with the operator's own message, and creates nothing; `jobs` lists estimate and
cost; `report` and `top` what the budget's status says; `results` shows the counts; a bad manifest is one line on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from governance.budget.money import format_amount

from .conftest import BELL, NS, Env

PLUGIN = str(Path(sys.executable).parent / "kubectl-qgov")


def plugin(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLUGIN, "--kubeconfig", str(env.cluster.kubeconfig), *args], capture_output=True,
                          text=True, timeout=120)


def manifest(tmp_path: Path, name: str, circuits: int) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
                                    "metadata": {"name": name, "namespace": NS},
                                    "spec": {"backend": "priced-aer", "circuits": [BELL] * circuits, "shots": 100}}))
    return path


def test_estimate_prices_what_the_operator_reserves_refuses_what_the_budget_cannot_pay_and_creates_nothing(
        env: Env, tmp_path: Path) -> None:
    env.budget("1.00")
    first = plugin(env, "estimate", "-f", str(manifest(tmp_path, "bell", 1)))
    assert first.returncode == 0, first.stderr
    assert f"QiskitJob {NS}/bell would be admitted" in first.stdout
    assert "estimated 0.30 USD" in first.stdout and f"budget {NS}/{NS}: 1.00 USD left this period" in first.stdout
    assert env.jobs() == []  # estimate created nothing

    env.job("bell", shots=100)
    status = env.wait_terminal(["bell"])["bell"]
    assert status["phase"] == "Succeeded"
    assert int(status["estimatedMicro"]) == 300_000  # what estimate printed, to the micro-unit
    env.wait(lambda: env.get("qiskitbudgets", NS).get("status", {}).get("spent") == "0.30", "the budget's status")

    # 4 circuits = 1.20 USD against 0.70 USD left: refused with the operator's message, exit 3
    big = plugin(env, "estimate", "-f", str(manifest(tmp_path, "big", 4)))
    assert big.returncode == 3, big.stdout + big.stderr
    assert f"QiskitJob {NS}/big would be refused (BudgetExceeded)" in big.stdout, big.stdout
    assert f"exceeded budget {NS}/{NS}: requested 1.20 USD, spent 0.30 USD" in big.stdout, big.stdout
    assert [j["metadata"]["name"] for j in env.jobs()] == ["bell"]

    listed = plugin(env, "-n", NS, "jobs")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "BACKEND", "ESTIMATE", "COST", "BUDGET"]
    assert row.split() == ["bell", "Succeeded", "priced-aer", "0.30", "USD", format_amount(300_000), "USD", NS]

    shown = plugin(env, "-n", NS, "results", "bell")
    assert shown.returncode == 0, shown.stderr
    counts = dict(pair.split(": ") for pair in shown.stdout.strip().removeprefix("circuit 0: ").split(", "))
    assert set(counts) <= {"00", "11"} and sum(int(n) for n in counts.values()) == 100  # a Bell pair, 100 shots
    as_json = json.loads(plugin(env, "-n", NS, "results", "bell", "-o", "json").stdout)
    assert as_json["circuits"][0]["counts"] == {k: int(n) for k, n in counts.items()}
    report = plugin(env, "-n", NS, "report")
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[0].startswith(f"budget {NS}/{NS}: 0.30 USD spent, 0.00 reserved, 0.70 left of 1.00")
    assert report.stdout.splitlines()[2].split() == ["priced-aer", "1", "0.30"]
    top = plugin(env, "-n", NS, "top")
    assert top.stdout.splitlines()[1].split() == [NS, "bell", "settled", "0.30", "0.30"], top.stdout
    none = plugin(env, "-n", NS, "results", "big")
    assert none.returncode == 1 and none.stderr.strip() == f"kubectl qgov: no QiskitJob {NS}/big"


def test_a_manifest_that_is_not_one_qiskitjob_is_one_line_on_stderr(env: Env, tmp_path: Path) -> None:
    missing = plugin(env, "estimate", "-f", str(tmp_path / "nothing.yaml"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == f"kubectl qgov: cannot read {tmp_path / 'nothing.yaml'}: No such file or directory"
    budget = tmp_path / "budget.yaml"
    budget.write_text("apiVersion: qgov.dev/v1alpha1\nkind: QiskitBudget\nmetadata: {name: b}\nspec: {limit: '1'}\n")
    wrong = plugin(env, "estimate", "-f", str(budget))
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == f"kubectl qgov: {budget} holds 0 QiskitJob objects; estimate prices exactly one"
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"kind": "QiskitJob", "metadata": {"name": "x", "namespace": NS},
                                       "spec": {"backend": "no-such-backend", "circuits": [BELL]}}))
    refused = plugin(env, "estimate", "-f", str(unknown))
    assert refused.returncode == 3
    assert "would be refused (UnknownBackend)" in refused.stdout and "no-such-backend" in refused.stdout
