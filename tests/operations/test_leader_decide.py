"""The leader-election decision (governance/leader/decide.py), on a clock the test moves."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from governance.leader.decide import Action, LeaseRecord, Memory, Timing, decide, observe

T = Timing(duration_s=10, renew_every_s=2, renew_deadline_s=7, retry_every_s=2)


def look(record: LeaseRecord | None, me: str, memory: Memory, now: float):  # type: ignore[no-untyped-def]
    memory = observe(memory, record, now)
    return decide(record, me, memory, now, T), memory


def test_nobody_holds_a_lease_that_does_not_exist() -> None:
    decision, _ = look(None, "b", Memory(), 0.0)
    assert decision.action is Action.CREATE


def test_a_standby_takes_an_unrenewed_lease_only_a_full_duration_after_it_last_saw_it_change() -> None:
    held = LeaseRecord("a", 10, "100")
    decision, memory = look(held, "b", Memory(), 50.0)  # first sight: its own clock starts now
    assert decision.action is Action.WAIT and decision.wake_at == 52.0  # looks again at its retry period
    for now in (52.0, 54.0, 59.99):
        decision, memory = look(held, "b", memory, now)
        assert decision.action is Action.WAIT, now
    assert decision.wake_at == 60.0  # the last wait ends exactly at the expiry, not a retry period later
    decision, memory = look(held, "b", memory, 60.0)
    assert decision.action is Action.ACQUIRE and "a has not renewed" in decision.reason


def test_a_renewal_restarts_the_standbys_count_whatever_the_holders_clock_says() -> None:
    decision, memory = look(LeaseRecord("a", 10, "100"), "b", Memory(), 0.0)
    decision, memory = look(LeaseRecord("a", 10, "101"), "b", memory, 9.0)  # renewed (a new resourceVersion)
    decision, memory = look(LeaseRecord("a", 10, "101"), "b", memory, 18.9)
    assert decision.action is Action.WAIT
    decision, memory = look(LeaseRecord("a", 10, "101"), "b", memory, 19.0)
    assert decision.action is Action.ACQUIRE


def test_a_released_lease_is_taken_at_once() -> None:
    decision, memory = look(LeaseRecord("a", 10, "100"), "b", Memory(), 0.0)
    decision, _ = look(LeaseRecord("", 1, "101"), "b", memory, 1.0)
    assert decision.action is Action.ACQUIRE and "released" in decision.reason


def test_the_holder_renews_on_its_period_and_gives_up_at_its_deadline() -> None:
    mine = LeaseRecord("a", 10, "7")
    memory = Memory(renewed_at=100.0)
    decision, memory = look(mine, "a", memory, 101.0)
    assert decision.action is Action.WAIT and decision.wake_at == 102.0
    decision, memory = look(mine, "a", memory, 102.0)
    assert decision.action is Action.RENEW
    decision, memory = look(mine, "a", memory, 106.9)  # renewals failed since 100: still inside the deadline
    assert decision.action is Action.RENEW
    decision, memory = look(mine, "a", memory, 107.0)
    assert decision.action is Action.LOST and "7 s" in decision.reason


def test_a_holder_that_reads_another_name_has_lost() -> None:
    decision, _ = look(LeaseRecord("b", 10, "9"), "a", Memory(renewed_at=100.0), 101.0)
    assert decision.action is Action.LOST and "held by b" in decision.reason
    decision, _ = look(LeaseRecord("", 1, "9"), "a", Memory(renewed_at=100.0), 101.0)
    assert decision.action is Action.LOST  # released by someone: not ours any more either


def test_a_lease_that_names_this_replica_is_renewed_even_if_the_answer_was_lost() -> None:
    decision, _ = look(LeaseRecord("a", 10, "9"), "a", Memory(), 0.0)
    assert decision.action is Action.RENEW


def test_timing_must_leave_the_holder_time_to_stop_before_a_standby_takes_over() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        Timing(duration_s=10, renew_every_s=2, renew_deadline_s=10)
    with pytest.raises(ValueError):
        Timing(duration_s=10, renew_every_s=8, renew_deadline_s=7)


class Store:
    """An in-memory Lease with the API server's optimistic concurrency (a write names the version)."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.n = 0

    def write(self, holder: str, expected: str | None) -> LeaseRecord | None:
        if (self.record.version if self.record else None) != expected:
            return None  # 409
        self.n += 1
        self.record = LeaseRecord(holder, 10, str(self.n))
        return self.record


@pytest.mark.parametrize("seed", range(30))
def test_two_replicas_never_act_at_once_and_the_survivor_takes_over_within_12_s(seed: int) -> None:
    """Two electors on one simulated clock, their looks interleaved at random. At a random moment
    the holder is cut off from the API server (it cannot read or write the lease, but keeps
    running: the harder case than a SIGKILL). At no instant do both act: the cut-off one stops at
    its renew deadline (its guard), before the other can take over; and the other acts within
    lease duration + retry period of the last renewal."""
    rng = random.Random(seed)
    store = Store()
    names = ("a", "b")
    memory = {n: Memory() for n in names}
    wake = {n: rng.uniform(0, 1) for n in names}
    acting: set[str] = set()
    cut_off, cut_at, last_renewal, took_over = None, None, 0.0, None
    now = 0.0
    while now < 60:
        who = min(names, key=wake.__getitem__)
        now = wake[who]
        if cut_off is None and now > 20 + rng.uniform(0, 4) and acting:
            cut_off, cut_at = next(iter(acting)), now
        if who == cut_off:  # only its deadline guard runs
            if who in acting and now >= memory[who].renewed_at + T.renew_deadline_s:  # type: ignore[operator]
                acting.discard(who)
            wake[who] = now + 0.05 if who in acting else 1e9
            continue
        record = store.record
        memory[who] = observe(memory[who], record, now)
        decision = decide(record, who, memory[who], now, T)
        if decision.action in (Action.CREATE, Action.ACQUIRE, Action.RENEW):
            written = store.write(who, record.version if record else None)
            if written is not None:
                memory[who] = observe(replace(memory[who], renewed_at=now), written, now)
                if cut_at is None:
                    last_renewal = now
                elif who not in acting and took_over is None:
                    took_over = now
                acting.add(who)
            wake[who] = now + (T.renew_every_s if written is not None else 0.01)
        elif decision.action is Action.LOST:
            acting.discard(who)
            memory[who] = Memory()
            wake[who] = now + T.retry_every_s
        else:
            wake[who] = decision.wake_at  # type: ignore[assignment]
        assert len(acting) <= 1, (now, acting)
    assert cut_at is not None and took_over is not None
    assert took_over - last_renewal <= T.duration_s + T.retry_every_s + 1e-9
    assert T.duration_s - 1e-9 <= took_over - last_renewal  # never before the lease could have expired
