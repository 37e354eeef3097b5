"""`qgov ledger audit` against a real cluster and the operator's ledger: clean after real work, and
every mismatch printed once the ledger is tampered with as a bug would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from governance.audit import audit_cluster
from governance.budget.types import ReserveRequest

from .conftest import NS, Env

QGOV = str(Path(sys.executable).parent / "qgov")


def audit_command(env: Env) -> subprocess.CompletedProcess[str]:
    """The console script as an operator's admin runs it: kubeconfig from $KUBECONFIG."""
    return subprocess.run([QGOV, "ledger", "audit", "--database-url", env.database_url], check=False,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": str(env.cluster.kubeconfig)})


@pytest.mark.slow
def test_audit_is_clean_after_real_work_and_reports_each_tampering(env: Env) -> None:
    env.budget("0.70")  # two jobs of 0.30 fit; the third is refused, leaving 0.10
    names = ["one", "two", "three"]
    for name in names:
        env.job(name, shots=100)
    statuses = env.wait_terminal(names)
    ran = sorted(n for n, s in statuses.items() if s["phase"] == "Succeeded")
    assert len(ran) == 2 and [s["phase"] for s in statuses.values()].count("Refused") == 1, statuses

    clean = audit_command(env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip() == ("audit clean: 3 jobs and 3 reservations agree; "
                                    "every balance equals its recomputation")
    ledger = env.ledger()
    assert audit_cluster(env.custom, ledger) == ([], 3, 3)  # the function other tests call

    # what bugs would leave behind: money held for a job that never existed (through the ledger's own
    # API, so the balances stay consistent and only the audit can tell), a job whose status states a
    # charge the ledger does not hold, and a job the cluster shows running while its money is settled.
    # (Tampering with the ledger's rows directly is caught by verify() itself: its aggregates.)
    env.operator.stop()  # nobody mends the statuses behind the audit's back
    assert ledger.reserve(ReserveRequest("made-up-uid", NS, NS, 100_000, job=f"{NS}/ghost")).admitted
    env.custom.patch_namespaced_custom_object_status(
        "qgov.dev", "v1alpha1", NS, "qiskitjobs", ran[0], {"status": {"actualCost": "0.29", "usedMicro": "290000"}})
    env.custom.patch_namespaced_custom_object_status(
        "qgov.dev", "v1alpha1", NS, "qiskitjobs", ran[1], {"status": {"phase": "Running", "actualCost": None}})
    assert ledger.verify() == []  # the ledger agrees with itself: only the audit can tell
    ledger.close()

    tampered = audit_command(env)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert tampered.stdout.splitlines() == [
        (f"{NS}/ghost: reservation for a job that does not exist: a held reservation (reserved 0.10, "
         "actual none), key made-up-uid"),
        (f"{NS}/{ran[0]} (phase Succeeded): status says charged 0.29 USD, the ledger has a settled reservation "
         "(reserved 0.30 USD, actual 0.30 USD)"),
        (f"{NS}/{ran[1]} (phase Running): an admitted job needs a held reservation, the ledger has a settled "
         "reservation (reserved 0.30 USD, actual 0.30 USD)"),
        "audit failed: 3 mismatches between 3 jobs and 4 reservations, 0 balance inconsistencies",
    ]
    assert "Traceback" not in tampered.stderr
