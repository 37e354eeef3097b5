"""A QiskitSession's status read as a typed value (governance/sessions/status.py)."""

from __future__ import annotations

from governance.sessions.status import SessionStatus


def test_a_session_without_a_status_reads_as_the_defaults() -> None:
    for session in (None, {}, {"status": None}, {"status": {}}):
        status = SessionStatus.of(session)
        assert status == SessionStatus()
        assert status.currency == "USD" and status.runner_restarts == 0 and status.conditions == ()
        assert not status.ended and not status.live


def test_the_fields_the_handlers_read() -> None:
    status = SessionStatus.of({"status": {
        "phase": "Open", "mode": "dedicated", "sessionId": "s-1", "openedTime": "2026-11-30T10:00:00Z",
        "tokenExpiry": "2026-11-30T11:00:00Z", "currency": "EUR", "runnerRestarts": "2", "instance": "crn:1",
        "runtimeUrl": "https://runtime", "conditions": [{"type": "Ready", "status": "True"}]}})
    assert (status.phase, status.mode, status.session_id, status.opened_time) == \
        ("Open", "dedicated", "s-1", "2026-11-30T10:00:00Z")
    assert (status.currency, status.runner_restarts, status.instance, status.runtime_url) == \
        ("EUR", 2, "crn:1", "https://runtime")
    assert status.live and not status.ended and status.conditions == ({"type": "Ready", "status": "True"},)


def test_ended_and_live_phases() -> None:
    assert [SessionStatus(phase=p).ended for p in ("Closed", "Expired", "Failed")] == [True] * 3
    assert [SessionStatus(phase=p).live for p in ("Open", "Draining")] == [True] * 2
    assert not SessionStatus(phase="Pending").live and not SessionStatus(phase="Pending").ended
