"""The batched reservation path (Ledger.reserve_many, what the ReservationBatcher calls) decides
exactly what the same requests reserved one at a time decide: same outcomes and messages, same
balances, same threshold crossings, same queue, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec, ReserveOutcome, ReserveRequest

from tests.conftest import DatabaseFactory, FakeClock

NS = "team-b"
USD = 1_000_000
KEYS = [f"job-{i}" for i in range(10)]  # few keys: replays of earlier and same-batch keys happen

requests = st.tuples(st.sampled_from(KEYS), st.integers(0, 6 * USD), st.sampled_from(["aer", "ibm_kyiv"]))
# a step: a batch of reservations (split at random), or the release of a key (frees funds: the queue moves)
steps = st.one_of(st.lists(requests, min_size=1, max_size=8), st.sampled_from(KEYS))


def _reserve_view(o: ReserveOutcome) -> tuple[Any, ...]:
    # a replay's balance is read, not decided (in a batch, before the batch's own writes): not compared
    balance = None if o.replayed else o.balance
    return (o.key, o.decision, o.state, o.amount_micro, o.message, o.replayed, o.queue_position, balance)


def _crossed(outcomes: list[ReserveOutcome]) -> list[int]:
    """The thresholds announced, in order: a batch announces its crossings on its last admission,
    one at a time each on its own, so only their sequence is the same."""
    return [t for o in outcomes for t in o.thresholds_crossed]


def _run(ledger: Ledger, plan: list[Any], batched: bool) -> tuple[list[Any], list[ReserveOutcome]]:
    seen: list[Any] = []
    reserved: list[ReserveOutcome] = []
    for step in plan:
        if isinstance(step, str):
            try:
                released = ledger.release(step)
            except Exception as exc:  # noqa: BLE001 - an unknown key must fail the same way on both paths
                seen.append(("release", step, type(exc).__name__))
            else:
                seen.append(("release", released.key, released.state, released.released_micro,
                             released.queue_changes))
            continue
        batch = [ReserveRequest(key, NS, NS, amount, job=key, backend=backend) for key, amount, backend in step]
        outcomes = ledger.reserve_many(batch) if batched else [ledger.reserve(r) for r in batch]
        reserved += outcomes
        seen += [_reserve_view(o) for o in outcomes]
    return seen, reserved


def _rows(ledger: Ledger) -> list[tuple[Any, ...]]:
    return sorted((r.key, r.state, r.amount_micro, r.message, r.queue_seq, r.backend) for r in ledger.reservations())


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(0, 12 * USD), enforcement=st.sampled_from(["hard", "queue"]),
       warn_at=st.sets(st.integers(1, 100), max_size=3), plan=st.lists(steps, min_size=1, max_size=6))
def test_batched_and_single_reservations_decide_the_same(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, limit: int,
    enforcement: str, warn_at: set[int], plan: list[Any],
) -> None:
    databases = DatabaseFactory(kind, request, tmp_path_factory.mktemp("equivalence"))
    spec = BudgetSpec(NS, NS, limit, "USD", "monthly", enforcement, tuple(sorted(warn_at)))
    results = []
    for batched in (True, False):
        ledger = Ledger(databases.new(), clock=FakeClock())
        try:
            ledger.upsert_budget(spec)
            seen, reserved = _run(ledger, plan, batched)
            results.append((seen, _crossed(reserved), ledger.balance(NS, NS), _rows(ledger)))
            assert ledger.verify() == []
        finally:
            ledger.close()
    batch, single = results
    assert batch[0] == single[0]  # outcomes, messages, queue positions, balances, releases and what they admitted
    assert batch[1] == single[1]  # threshold crossings
    assert batch[2] == single[2]  # the period's balance
    assert batch[3] == single[3]  # the reservations as stored
