"""The budget policy (governance/budget/policy.py), pure: admit, queue, refuse, the queue's FIFO
admission and threshold crossings, decided over snapshots of balances (no database)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from governance.budget import policy
from governance.budget.policy import Snapshot
from governance.budget.types import Decision

USD = 1_000_000
LABEL = "team-a/team-a"


def snap(limit: int = 10 * USD, spent: int = 0, held: int = 0, **kw: object) -> Snapshot:
    return Snapshot(LABEL, "USD", limit, spent, held, **kw)  # type: ignore[arg-type]


def test_a_request_exactly_at_the_limit_is_admitted_and_held() -> None:
    ruling = policy.decide([snap(spent=4 * USD, held=5 * USD)], USD)
    assert (ruling.decision, ruling.message, ruling.position) == (Decision.ADMITTED, "", None)
    assert ruling.after[0].held == 6 * USD and ruling.after[0].committed == 10 * USD


def test_one_micro_unit_over_the_limit_is_refused_with_the_ledgers_message() -> None:
    ruling = policy.decide([snap(spent=4 * USD, held=5 * USD)], USD + 1)
    assert ruling.decision is Decision.REFUSED
    assert ruling.message == ("exceeded budget team-a/team-a: requested 1.000001 USD, spent 4.00 USD, "
                              "reserved 5.00 USD, limit 10.00 USD")
    assert ruling.after[0].held == 5 * USD  # nothing held for a refusal


def test_queue_mode_queues_what_does_not_fit_and_refuses_what_never_can() -> None:
    budget = snap(spent=9 * USD, enforcement="queue")
    queued = policy.decide([budget], 2 * USD)
    assert (queued.decision, queued.position) == (Decision.QUEUED, 1)
    assert queued.message == ("queued for budget team-a/team-a (position 1): requested 2.00 USD, spent 9.00 USD, "
                              "reserved 0.00 USD, limit 10.00 USD")
    assert queued.after[0].queued == 1 and queued.after[0].held == 0
    too_large = policy.decide([budget], 10 * USD + 1)
    assert too_large.decision is Decision.REFUSED and too_large.message.startswith("exceeded budget team-a/team-a")


def test_queue_mode_with_earlier_work_queued_ahead_queues_even_what_would_fit() -> None:
    """FIFO: nothing overtakes work already waiting, however small."""
    ruling = policy.decide([snap(spent=USD, queued=3, enforcement="queue")], 1)
    assert (ruling.decision, ruling.position) == (Decision.QUEUED, 4)
    assert "(position 4)" in ruling.message
    hard = policy.decide([snap(spent=USD, queued=3)], 1)  # hard: queued rows cannot exist, but never admit past them
    assert hard.decision is Decision.REFUSED


def test_a_batch_is_decided_in_order_over_the_balances_each_request_leaves() -> None:
    amounts = [4 * USD, 4 * USD, 3 * USD, 2 * USD, 0]
    decided = policy.decide_all([snap()], amounts)
    assert [r.decision for r in decided.rulings] == [Decision.ADMITTED, Decision.ADMITTED, Decision.REFUSED,
                                                      Decision.ADMITTED, Decision.ADMITTED]
    assert "reserved 8.00 USD" in decided.rulings[2].message  # the third saw the first two held
    assert decided.after[0].held == 10 * USD
    # and the same requests one at a time give the same rulings
    chain = [snap()]
    for amount, batched in zip(amounts, decided.rulings, strict=True):
        single = policy.decide(chain, amount)
        assert single == batched
        chain = list(single.after)


def test_thresholds_are_crossed_once_and_reported_on_the_batchs_last_admission() -> None:
    budget = snap(warn_at=(50, 80))
    first = policy.decide_all([budget], [4 * USD, USD, 20 * USD])
    assert first.crossed == ((50,),)
    assert first.crossed_at == 1  # the refusal after it does not carry it
    assert first.after[0].warned_pct == 50
    again = policy.decide_all(first.after, [USD])  # 60%: 50 was already announced
    assert again.crossed == ((),) and again.crossed_at is None
    both = policy.decide_all([budget], [9 * USD])
    assert both.crossed == ((50, 80),) and both.after[0].warned_pct == 80
    exact = policy.decide_all([snap(warn_at=(50,))], [5 * USD - 1, 1])  # 49.9999% then exactly 50%
    assert exact.crossed == ((50,),) and exact.crossed_at == 1
    nothing_held = policy.decide_all([snap(spent=9 * USD, warn_at=(50,))], [0])  # no hold moved: no crossing
    assert nothing_held.crossed == ((),)


def test_the_queue_admits_in_fifo_order_while_the_head_fits_and_refuses_what_never_can() -> None:
    budget = snap(limit=10 * USD, spent=5 * USD, queued=4, warn_at=(80,))
    rulings, after, crossed = policy.admit_queued(budget, [11 * USD, 3 * USD, 4 * USD, USD])
    assert [r.decision for r in rulings] == [Decision.REFUSED, Decision.ADMITTED]  # 4 USD blocks the 1 USD behind
    assert rulings[0].message == ("exceeded budget team-a/team-a: requested 11.00 USD, spent 5.00 USD, "
                                  "reserved 0.00 USD, limit 10.00 USD (the request is larger than the whole limit)")
    assert (after.held, after.queued, crossed, after.warned_pct) == (3 * USD, 2, (80,), 80)
    none, same, no_crossing = policy.admit_queued(snap(spent=10 * USD, queued=1), [1])
    assert none == () and same.queued == 1 and no_crossing == ()


def test_a_chain_admits_only_when_every_budget_admits() -> None:
    org = Snapshot("org/all", "USD", 100 * USD, 0, 99 * USD)
    team = snap()
    refused = policy.decide([team, org], 2 * USD)
    assert refused.decision is Decision.REFUSED and refused.message.startswith("exceeded budget org/all")
    assert refused.after == (team, org)
    admitted = policy.decide([team, org], USD)
    assert admitted.decision is Decision.ADMITTED
    assert [b.held for b in admitted.after] == [USD, 100 * USD]
    queued = policy.decide([snap(spent=10 * USD, enforcement="queue"), org], USD)
    assert queued.decision is Decision.QUEUED and queued.after[0].queued == 1 and queued.after[1].held == 99 * USD


snapshots = st.builds(
    lambda limit, spent_part, held_part, queued, enforcement, warn_at: Snapshot(
        LABEL, "USD", limit, spent_part * limit // 100, held_part * limit // 100, queued, enforcement,
        tuple(sorted(warn_at))),
    st.integers(0, 50 * USD), st.integers(0, 100), st.integers(0, 100), st.integers(0, 3),
    st.sampled_from(["hard", "queue"]), st.sets(st.integers(1, 100), max_size=3),
).filter(lambda s: s.spent + s.held <= s.limit)


@settings(max_examples=300, deadline=None)
@given(chain=st.lists(snapshots, min_size=1, max_size=3),
       amounts=st.lists(st.integers(0, 60 * USD), max_size=30))
def test_no_sequence_of_requests_takes_a_budget_past_its_limit(chain: list[Snapshot], amounts: list[int]) -> None:
    """The ledger's invariant: spent + held never exceeds the limit through an admission, in any
    budget of the chain; refused and queued requests hold nothing, and admitted ones exactly their
    amount, in every budget."""
    decided = policy.decide_all(chain, amounts)
    before = chain
    for amount, ruling in zip(amounts, decided.rulings, strict=True):
        for b, a in zip(before, ruling.after, strict=True):
            assert a.committed <= a.limit
            assert a.held - b.held == (amount if ruling.decision is Decision.ADMITTED else 0)
            assert a.spent == b.spent
        before = ruling.after
    for b, a in zip(chain, decided.after, strict=True):
        assert b.warned_pct <= a.warned_pct <= 100
        if a.held != b.held:  # what the batch crossed is recorded: never announced twice
            assert policy.crossings(a) == ()
