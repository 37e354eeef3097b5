"""A job whose session is not open when its attempt is due: it waits for the session to open,
fails with the session's failure, moves on to a new automatic batch (a few times at most), or
fails because its session has ended. And what a dedicated session, which pays for its jobs, costs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..sessions.lifecycle import Phase as SessionPhase
from ..sessions.lifecycle import requeue_or_fail
from .admission import NeedBackend

MAX_SESSION_MOVES = 2
SESSION_FAILED = SessionPhase.FAILED.value


@dataclass(frozen=True)
class WaitForSession:
    """The job waits for QiskitSession `session` to open; the session starts its jobs when it does.
    The job's status.message says so (`message`), and the session's tick finds its waiting jobs by
    that message (`waits_for`): one spelling, here."""

    session: str

    @property
    def message(self) -> str:
        return f"waiting for QiskitSession {self.session} to open"


def waits_for(session_name: str, job_message: str) -> bool:
    """Whether a job's status.message says it waits for QiskitSession `session_name` to open."""
    return job_message == WaitForSession(session_name).message


@dataclass(frozen=True)
class MoveToNewBatch:
    """Into a new automatic batch: the caller creates it (its name ends the message)."""

    moves: int  # status.sessionMoves after this move
    message: str  # "... is Closed: re-queued into a new session (move 1 of 2)", then ", <new batch>"


@dataclass(frozen=True)
class EndUnstarted:
    """The job fails without its next attempt; what earlier attempts used is settled."""

    reason: str
    message: str


SessionStep = Union[WaitForSession, MoveToNewBatch, EndUnstarted, NeedBackend]


def session_not_open(session_name: str, ended: str | None, failure: str, automatic: bool, moves: int,
                     backend: str, backend_usable: bool | None = None) -> SessionStep:
    """What a job does whose session `session_name` is not open. `ended`: the session's end
    (Closed, Expired, Failed, "gone"; None while it has not opened yet); `failure`: a failed
    session's message; `automatic`: an automatic batch (or gone), which its jobs may leave for a new
    one; `moves`: how often the job moved already. `backend_usable` is asked for (NeedBackend)
    when a move is possible: a new batch needs the job's backend."""
    if ended is None:
        return WaitForSession(session_name)
    if ended == SESSION_FAILED:
        return EndUnstarted("SessionFailed", f"QiskitSession {session_name} failed: {failure}")
    move, why = requeue_or_fail(moves, MAX_SESSION_MOVES)
    if automatic and move:
        if backend_usable is None:
            return NeedBackend(backend)
        if backend_usable:
            return MoveToNewBatch(moves + 1, f"QiskitSession {session_name} is {ended}: {why}")
    if automatic:
        return EndUnstarted("SessionEnded", f"QiskitSession {session_name} is {ended}: {why}")
    return EndUnstarted("SessionEnded", f"QiskitSession {session_name} is {ended} (its maxTime is over or it was "
                                        "closed) and the job cannot run in it: name an open session in "
                                        "spec.session, or none to be batched automatically")
