"""Job counts per budget and phase, kept from watch events, agree with counting the jobs."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from governance.handlers.jobphases import JobPhases

UIDS = st.sampled_from(["u1", "u2", "u3", "u4"])
BUDGETS = st.sampled_from([("team-a", "a"), ("team-a", "b"), ("team-b", "a"), None])
PHASES = st.sampled_from(["Queued", "Admitted", "Running", "Succeeded", "Failed", "Refused", None])
EVENTS = st.lists(st.one_of(st.tuples(st.just("seen"), UIDS, BUDGETS, PHASES), st.tuples(st.just("gone"), UIDS)),
                  max_size=60)


@given(EVENTS)
def test_counts_equal_a_recount_of_the_jobs_after_any_events(events: list[tuple]) -> None:
    phases, jobs = JobPhases(), {}
    for event in events:
        if event[0] == "gone":
            phases.forget(event[1])
            jobs.pop(event[1], None)
        else:
            _, uid, budget, phase = event
            phases.observe(uid, budget, phase)
            jobs[uid] = (budget, phase)
    for budget in [("team-a", "a"), ("team-a", "b"), ("team-b", "a")]:
        expected = Counter(phase for b, phase in jobs.values() if b == budget and phase)
        assert +phases.counts(*budget) == expected


def test_a_job_counts_once_through_its_life_and_not_after_deletion() -> None:
    phases = JobPhases()
    for phase in ("Queued", "Admitted", "Admitted", "Running", "Succeeded"):
        phases.observe("u1", ("team-a", "a"), phase)
    phases.observe("u2", ("team-a", "a"), "Refused")
    assert +phases.counts("team-a", "a") == Counter({"Succeeded": 1, "Refused": 1})
    phases.forget("u1")
    assert +phases.counts("team-a", "a") == Counter({"Refused": 1})
    assert not +phases.counts("team-b", "a")
