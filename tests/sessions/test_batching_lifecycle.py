"""Session batching and lifecycle decisions (pure: the clock is an argument)."""

from __future__ import annotations

import pytest

from governance.sessions.batching import BatchKey, Batcher
from governance.sessions.lifecycle import Action, Phase, SessionView, decide, requeue_or_fail

A = BatchKey("team-a", "ibm_torino", "f00dcafe1234")
B = BatchKey("team-b", "ibm_torino", "f00dcafe1234")


def test_jobs_within_the_window_share_a_batch_up_to_the_maximum() -> None:
    batcher = Batcher(window_s=5, max_jobs=20)
    batches = {batcher.assign(A, f"job-{i}", now=i * 0.1).name for i in range(20)}
    assert len(batches) == 1  # 20 jobs in 2 s: one batch
    assert batcher.assign(A, "job-20", now=2.1).name not in batches  # the 21st opens a new one
    assert batcher.assign(B, "job-b", now=2.2).name != batcher.assign(A, "job-21", now=2.2).name  # per namespace


def test_the_window_closes_a_batch_and_assignment_is_idempotent() -> None:
    batcher = Batcher(window_s=5, max_jobs=20)
    first = batcher.assign(A, "j1", now=0)
    assert batcher.assign(A, "j1", now=100) is first  # a replay lands in the same batch
    assert batcher.assign(A, "j2", now=6).name != first.name
    assert [b.name for b in batcher.sealed(now=12)] == [batcher.assign(A, "j2", now=12).name]


def test_batch_names_are_deterministic_across_restarts() -> None:
    one, two = Batcher(), Batcher()
    assert one.assign(A, "uid-1", 0).name == two.assign(A, "uid-1", 50).name
    assert one.assign(A, "uid-1", 0).name.startswith("batch-ibm-torino-")


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(window_s=0)


def view(**kw) -> SessionView:
    base = dict(phase=Phase.OPEN, opened_at=0.0, last_activity=0.0, max_time_s=3600, idle_timeout_s=300, waiting=0,
                running=0)
    return SessionView(**{**base, **kw})


def test_an_idle_session_closes_after_its_idle_timeout() -> None:
    assert decide(view(last_activity=100), now=399).action is Action.NOTHING
    assert decide(view(last_activity=100), now=399).wake_at == 400
    closed = decide(view(last_activity=100), now=400)
    assert closed.action is Action.CLOSE and "idleTimeout" in closed.reason
    assert decide(view(last_activity=100, running=1), now=1000).action is Action.NOTHING  # busy is not idle


def test_a_session_never_outlives_max_time() -> None:
    expired = decide(view(waiting=3, running=1, last_activity=3599), now=3600)
    assert expired.action is Action.EXPIRE and "3 jobs waiting" in expired.reason
    # past maxTime a draining session lets its running job finish, then it is over
    assert decide(view(phase=Phase.DRAINING, running=1), now=3600).action is Action.NOTHING
    assert decide(view(phase=Phase.DRAINING, waiting=2), now=3600).action is Action.EXPIRE
    assert decide(view(phase=Phase.DRAINING), now=3600).action is Action.EXPIRE


def test_draining_finishes_when_empty() -> None:
    assert decide(view(phase=Phase.DRAINING, running=1), now=10).action is Action.NOTHING
    assert decide(view(phase=Phase.DRAINING), now=10).action is Action.FINISH
    assert decide(view(phase=Phase.CLOSED), now=10**6).action is Action.NOTHING


def test_waiting_jobs_are_requeued_then_failed_with_a_reason() -> None:
    assert requeue_or_fail(0) == (True, "re-queued into a new session (move 1 of 2)")
    ok, message = requeue_or_fail(2)
    assert not ok and "raise the QiskitSession's maxTime" in message


def test_expiry_is_one_rule_for_the_timer_and_for_the_jobs() -> None:
    """A session expires at opened + maxTime, to the second: the session's timer (decide) and a
    job asking whether its session has ended (handlers/sessionview.ended_phase) use the same rule,
    and a session whose spec omits maxTime gets the default the spec parser gives it."""
    from governance.api.specs import parse_session
    from governance.timestamps import iso
    from governance.handlers.sessionview import ended_phase
    from governance.sessions.lifecycle import DEFAULT_MAX_TIME_S, expired
    from datetime import datetime, timezone
    import time

    assert not expired(100.0, 3600, 3699.0) and expired(100.0, 3600, 3700.0)
    assert decide(view(opened_at=100.0, waiting=1), now=3699).action is Action.NOTHING
    assert decide(view(opened_at=100.0, waiting=1), now=3700).action is Action.EXPIRE
    assert parse_session({"backend": "b"}).max_time_s == DEFAULT_MAX_TIME_S == 8 * 3600

    def opened(ago: float, spec: dict) -> dict:
        moment = datetime.fromtimestamp(time.time() - ago, timezone.utc)
        return {"spec": spec, "status": {"phase": "Open", "openedTime": iso(moment)}}

    assert ended_phase(opened(DEFAULT_MAX_TIME_S - 60, {})) is None  # no maxTime: the default applies
    assert ended_phase(opened(DEFAULT_MAX_TIME_S + 60, {})) == Phase.EXPIRED.value
    assert ended_phase(opened(120, {"maxTime": 60})) == Phase.EXPIRED.value
    assert ended_phase(opened(30, {"maxTime": 3600})) is None
