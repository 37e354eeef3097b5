"""Reconciliation never releases a live reservation. A rolling update starts a second operator
while the first admits work: whatever the new one's lists missed, a reservation is released only
once its job is confirmed gone on the API server."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from governance.budget.batcher import ReservationBatcher
from governance.budget.ledger import Ledger
from governance.handlers.config import OperatorConfig
from governance.handlers.jobs import reconcile_ledger
from governance.handlers.context import OperatorContext as Runtime, set_context as set_runtime

from .conftest import G, NS, V, Env


@pytest.fixture
def in_process(env: Env) -> Iterator[Ledger]:
    """The operator's reconciliation run in this process, against the env's cluster and ledger."""
    kubernetes.config.load_kube_config(config_file=str(env.cluster.kubeconfig))
    ledger = Ledger(env.database_url)
    batcher = ReservationBatcher(ledger)
    set_runtime(Runtime(OperatorConfig.from_env(), ledger, batcher))
    yield ledger
    set_runtime(None)
    batcher.close()
    ledger.close()


@pytest.mark.slow
@pytest.mark.no_pod_runner  # executor pods stay Pending: the jobs stay Admitted, their money held
def test_a_job_missing_from_a_stale_list_keeps_its_reservation_and_a_deleted_one_is_released(
        env: Env, in_process: Ledger) -> None:
    env.budget("12.00")
    for name in ("live", "gone"):
        env.job(name, shots=100)
    env.wait(lambda: all(env.status(n).get("phase") == "Admitted" for n in ("live", "gone")), "both admitted")
    env.operator.stop()  # from here on only the reconciliation under test touches the ledger
    live, gone = (env.get("qiskitjobs", n)["metadata"]["uid"] for n in ("live", "gone"))
    assert {live, gone} <= set(in_process.open_reservations())

    # lists taken before the jobs were admitted (another operator admitted them in between)
    assert reconcile_ledger(jobs=[], sessions=[], open_keys=[live, gone]) == []
    assert in_process.reservation(live).state == "held" and in_process.reservation(gone).state == "held"

    # a job that is really gone (its finalizer removed by hand, then deleted) is released
    env.custom.patch_namespaced_custom_object(G, V, NS, "qiskitjobs", "gone", {"metadata": {"finalizers": None}})
    env.custom.delete_namespaced_custom_object(G, V, NS, "qiskitjobs", "gone")
    assert reconcile_ledger() == [gone]
    assert in_process.reservation(gone).state == "released"
    assert in_process.reservation(live).state == "held"
    assert in_process.balance(NS, NS).held_micro == 300_000
    assert in_process.verify() == []
