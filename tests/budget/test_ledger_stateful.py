"""Random reserve / settle / release / rollover / limit-raise sequences against a reference model.

After every step: the stored balances equal the model's, every balance equals its
recomputation from the entry log (`verify`), and no period is committed beyond its limit
except by flagged overruns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from governance.budget.ledger import Ledger
from governance.budget.periods import window_at
from governance.budget.types import BudgetSpec, Decision, ReserveRequest

from tests.conftest import FakeClock

NS, NAME = "team-s", "team-s"
ANCHOR = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEYS = [f"job-{i}" for i in range(12)]
amounts = st.integers(min_value=0, max_value=6_000_000)


@dataclass
class ModelPeriod:
    spent: int = 0
    held: int = 0
    overrun: int = 0


@dataclass
class Model:
    limit: int
    enforcement: str
    periods: dict[datetime, ModelPeriod] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    amounts: dict[str, int] = field(default_factory=dict)
    period_of: dict[str, datetime] = field(default_factory=dict)
    queue: list[str] = field(default_factory=list)

    def period(self, now: datetime) -> tuple[datetime, ModelPeriod]:
        start = window_at("daily", ANCHOR, now).start
        return start, self.periods.setdefault(start, ModelPeriod())

    def admit_queued(self, now: datetime) -> None:
        start, p = self.period(now)
        while self.queue:
            head = self.queue[0]
            if self.amounts[head] > self.limit:
                self.states[head] = "refused"
                self.queue.pop(0)
                continue
            if p.spent + p.held + self.amounts[head] > self.limit:
                break
            self.queue.pop(0)
            p.held += self.amounts[head]
            self.states[head], self.period_of[head] = "held", start


def make_machine(new_database, enforcement: str) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize(limit=st.integers(min_value=0, max_value=15_000_000))
        def open(self, limit: int) -> None:
            self.clock = FakeClock(datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc))
            self.ledger = Ledger(new_database(), clock=self.clock)
            self.ledger.upsert_budget(BudgetSpec(NS, NAME, limit, period="daily", enforcement=enforcement,
                                                 anchor=ANCHOR))
            self.model = Model(limit, enforcement)

        def teardown(self) -> None:
            if hasattr(self, "ledger"):
                self.ledger.close()

        @rule(key=st.sampled_from(KEYS), amount=amounts)
        def reserve(self, key: str, amount: int) -> None:
            out = self.ledger.reserve(ReserveRequest(key, NS, NAME, amount))
            m = self.model
            if key in m.states:
                assert out.replayed
                assert out.state == m.states[key]
                return
            m.admit_queued(self.clock.now)
            start, p = m.period(self.clock.now)
            m.amounts[key] = amount
            if not m.queue and p.spent + p.held + amount <= m.limit:
                p.held += amount
                m.states[key], m.period_of[key] = "held", start
                assert out.decision is Decision.ADMITTED
            elif enforcement == "queue" and amount <= m.limit:
                m.states[key] = "queued"
                m.queue.append(key)
                assert out.decision is Decision.QUEUED and out.queue_position == len(m.queue)
            else:
                m.states[key] = "refused"
                assert out.decision is Decision.REFUSED and out.message.startswith("exceeded budget")

        @rule(key=st.sampled_from(KEYS), actual=amounts)
        def settle(self, key: str, actual: int) -> None:
            m = self.model
            state = m.states.get(key)
            if state != "held":
                if state == "settled":
                    assert self.ledger.settle(key, actual).replayed
                return
            out = self.ledger.settle(key, actual)
            p = m.periods[m.period_of[key]]
            p.held -= m.amounts[key]
            p.spent += actual
            p.overrun += max(0, actual - m.amounts[key])
            m.states[key] = "settled"
            assert out.overrun_micro == max(0, actual - m.amounts[key])
            m.admit_queued(self.clock.now)

        @rule(key=st.sampled_from(KEYS))
        def release(self, key: str) -> None:
            m = self.model
            state = m.states.get(key)
            if state is None:
                return
            out = self.ledger.release(key)
            if state == "held":
                m.periods[m.period_of[key]].held -= m.amounts[key]
                m.states[key] = "released"
                assert out.released_micro == m.amounts[key]
            elif state == "queued":
                m.queue.remove(key)
                m.states[key] = "released"
            else:
                assert out.replayed
            m.admit_queued(self.clock.now)

        @rule(hours=st.integers(min_value=1, max_value=30))
        def advance(self, hours: int) -> None:
            self.clock.advance(hours=hours)
            self.ledger.admit_queued()
            self.model.admit_queued(self.clock.now)

        @rule(more=st.integers(min_value=1, max_value=5_000_000))
        def raise_limit(self, more: int) -> None:
            self.model.limit += more
            self.ledger.upsert_budget(BudgetSpec(NS, NAME, self.model.limit, period="daily",
                                                 enforcement=enforcement, anchor=ANCHOR))
            self.model.admit_queued(self.clock.now)

        @invariant()
        def balances_agree_with_the_model_and_the_entry_log(self) -> None:
            if not hasattr(self, "ledger"):
                return
            assert self.ledger.verify() == []
            for start, p in self.model.periods.items():
                b = self.ledger.balance(NS, NAME, at=start + timedelta(hours=1))
                assert (b.spent_micro, b.held_micro) == (p.spent, p.held), start
                # hard invariant: admissions never commit beyond the limit; only overruns can
                assert p.spent - p.overrun + p.held <= self.model.limit
            for key, state in self.model.states.items():
                assert self.ledger.reservation(key).state == state, key

    return LedgerMachine


@pytest.mark.parametrize("enforcement", ["hard", "queue"])
def test_ledger_state_machine(databases, enforcement: str) -> None:
    machine = make_machine(databases.new, enforcement)
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=30, stateful_step_count=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
