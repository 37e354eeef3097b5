"""A typed view of a QiskitSession's status, parsed from the object the API server returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .lifecycle import Phase

ENDED = frozenset({Phase.CLOSED.value, Phase.EXPIRED.value, Phase.FAILED.value})
LIVE = frozenset({Phase.OPEN.value, Phase.DRAINING.value})  # taking or finishing work


@dataclass(frozen=True)
class SessionStatus:
    phase: str | None = None
    mode: str | None = None  # batch or dedicated, once open
    session_id: str | None = None  # the Runtime session (ibm); None for a local session
    runner: str | None = None  # a local session's runner pod
    opened_time: str | None = None
    closed_time: str | None = None
    last_activity: str | None = None
    token_expiry: str | None = None  # when the bearer token in its Secret expires (ibm)
    currency: str = "USD"  # the unit a dedicated session is charged in
    message: str = ""
    runner_restarts: int = 0
    instance: str = ""  # the IBM instance (CRN) and the endpoints its executors talk to
    runtime_url: str | None = None
    search_url: str | None = None
    catalog_url: str | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def of(cls, session: Mapping[str, Any] | None) -> SessionStatus:
        """The status of a session object (a missing session or status is the default)."""
        return cls.parse((session or {}).get("status") or {})

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> SessionStatus:
        return cls(
            phase=s.get("phase"), mode=s.get("mode"), session_id=s.get("sessionId"), runner=s.get("runner"),
            opened_time=s.get("openedTime"), closed_time=s.get("closedTime"), last_activity=s.get("lastActivity"),
            token_expiry=s.get("tokenExpiry"), currency=s.get("currency") or "USD",
            message=str(s.get("message") or ""), runner_restarts=int(s.get("runnerRestarts") or 0),
            instance=s.get("instance") or "", runtime_url=s.get("runtimeUrl"), search_url=s.get("searchUrl"),
            catalog_url=s.get("catalogUrl"), conditions=tuple(s.get("conditions") or ()))

    @property
    def ended(self) -> bool:
        """Closed, Expired or Failed: it runs no more jobs."""
        return self.phase in ENDED

    @property
    def live(self) -> bool:
        """Open or Draining."""
        return self.phase in LIVE
