"""Reconciliation never releases a live reservation. A rolling update starts a second operator
while the first admits work: whatever the new one's lists missed, a reservation is released only
once its job is confirmed gone on the API server."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from governance.budget.ledger import Ledger
from governance.handlers.config import OperatorConfig
from governance.handlers.startup import Operator, assemble

from .conftest import G, NS, V, Env


@pytest.fixture
def in_process(env: Env) -> Iterator[Operator]:
    """The operator's reconciliation run in this process, against the env's cluster and ledger."""
    kubernetes.config.load_kube_config(config_file=str(env.cluster.kubeconfig))
    operator = assemble(OperatorConfig.from_env(), Ledger(env.database_url))
    yield operator
    operator.jobs.batcher.close()
    operator.ledger.close()


@pytest.mark.slow
@pytest.mark.no_pod_runner  # executor pods stay Pending: the jobs stay Admitted, their money held
def test_a_job_missing_from_a_stale_list_keeps_its_reservation_and_a_deleted_one_is_released(
        env: Env, in_process: Operator) -> None:
    reconcile_ledger, ledger = in_process.jobs.settlement.reconcile_ledger, in_process.ledger
    env.budget("12.00")
    for name in ("live", "gone"):
        env.job(name, shots=100)
    env.wait(lambda: all(env.status(n).get("phase") == "Admitted" for n in ("live", "gone")), "both admitted")
    env.operator.stop()  # from here on only the reconciliation under test touches the ledger
    live, gone = (env.get("qiskitjobs", n)["metadata"]["uid"] for n in ("live", "gone"))
    assert {live, gone} <= set(ledger.open_reservations())

    # lists taken before the jobs were admitted (another operator admitted them in between)
    assert reconcile_ledger(jobs=[], sessions=[], open_keys=[live, gone]) == []
    assert ledger.reservation(live).state == "held" and ledger.reservation(gone).state == "held"

    # a job that is really gone (its finalizer removed by hand, then deleted) is released
    env.custom.patch_namespaced_custom_object(G, V, NS, "qiskitjobs", "gone", {"metadata": {"finalizers": None}})
    env.custom.delete_namespaced_custom_object(G, V, NS, "qiskitjobs", "gone")
    assert reconcile_ledger() == [gone]
    assert ledger.reservation(gone).state == "released"
    assert ledger.reservation(live).state == "held"
    assert ledger.balance(NS, NS).held_micro == 300_000
    assert ledger.verify() == []
