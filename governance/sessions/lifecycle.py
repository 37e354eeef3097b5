"""What a Runtime session should do next, decided from its state and the clock (pure).

IBM bills a dedicated session for its wall-clock time, idle time included. So a session
stops accepting jobs when its queue has been empty for `idleTimeout`, and never outlives
`maxTime`: at maxTime it takes no more work, and a job still running there finishes while the
session is Draining; jobs still waiting are re-queued into a new session, or failed with a
clear message once they have been re-queued too often.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


DEFAULT_MAX_TIME_S = 28800  # spec.maxTime when the QiskitSession does not say (8 hours)


class Phase(str, enum.Enum):
    PENDING = "Pending"
    OPEN = "Open"
    DRAINING = "Draining"
    CLOSED = "Closed"
    EXPIRED = "Expired"
    FAILED = "Failed"


class Action(str, enum.Enum):
    NOTHING = "nothing"
    CLOSE = "close"  # accepting_jobs=false; running work finishes
    EXPIRE = "expire"  # maxTime reached: waiting jobs move on
    FINISH = "finish"  # draining and empty: the session is done


@dataclass(frozen=True)
class SessionView:
    phase: Phase
    opened_at: float | None
    last_activity: float  # last job submitted or finished
    max_time_s: float
    idle_timeout_s: float
    waiting: int  # jobs queued in the session, not started
    running: int


@dataclass(frozen=True)
class SessionStep:
    action: Action
    reason: str
    wake_at: float | None  # when to look again, for a timer


def expired(opened_at: float, max_time_s: float, now: float) -> bool:
    """The session has reached its maxTime (`max_time_s` after it opened): it takes no more work."""
    return now >= opened_at + max_time_s


def decide(session: SessionView, now: float) -> SessionStep:
    if session.phase in (Phase.CLOSED, Phase.EXPIRED, Phase.FAILED) or session.opened_at is None:
        return SessionStep(Action.NOTHING, "", None)
    deadline = session.opened_at + session.max_time_s
    if expired(session.opened_at, session.max_time_s, now):
        if session.phase is Phase.DRAINING and session.running:
            return SessionStep(Action.NOTHING, "", None)  # past maxTime: what runs finishes, nothing new starts
        return SessionStep(Action.EXPIRE, f"the session reached its maxTime of {session.max_time_s:g}s with "
                                       f"{session.waiting} jobs waiting and {session.running} running", None)
    if session.phase is Phase.DRAINING:
        if session.running == 0 and session.waiting == 0:
            return SessionStep(Action.FINISH, "every job of the session has finished", None)
        return SessionStep(Action.NOTHING, "", deadline)
    idle_until = session.last_activity + session.idle_timeout_s
    if session.waiting == 0 and session.running == 0 and now >= idle_until:
        return SessionStep(Action.CLOSE, f"no work for {session.idle_timeout_s:g}s (idleTimeout): closed so that "
                                      "idle time is not billed", None)
    return SessionStep(Action.NOTHING, "", min(deadline, idle_until) if session.waiting == session.running == 0
                    else deadline)


def requeue_or_fail(requeues: int, max_requeues: int = 2) -> tuple[bool, str]:
    """A job left waiting in an expired session: into a new session, or failed after too many moves."""
    if requeues < max_requeues:
        return True, f"re-queued into a new session (move {requeues + 1} of {max_requeues})"
    return False, (f"the job waited through {requeues + 1} sessions that each reached their maxTime; "
                   "raise the QiskitSession's maxTime or submit fewer jobs per session")
