"""The plain structures the providers share with their callers (the operator, the webhook, the
executor): what a run produced or why it was refused, what an executor pod needs. No behaviour,
so the provider modules (base, devices, simulate) and the executor all import them from here and
never each other in a circle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UnknownBackendModel(LookupError):
    """The device model a backend names does not exist (the backend, not the job, is wrong)."""


class RunRefusal(Exception):
    """A remote service refused or ended the work; `deterministic` says whether a retry could help,
    `reason` is the job condition's reason."""

    def __init__(self, message: str, *, deterministic: bool, reason: str) -> None:
        super().__init__(message)
        self.deterministic, self.reason = deterministic, reason


@dataclass(frozen=True)
class ExecutorSession:
    """A remote session an executor pod submits into, as the operator knows it (never a key)."""

    session_id: str
    mode: str
    token_secret: str  # the Secret holding the session's current bearer token
    instance: str
    url: str | None = None
    search_url: str | None = None
    catalog_url: str | None = None


@dataclass(frozen=True)
class ExecutorNeeds:
    """What an executor pod of this provider needs besides the image: env, volumes, mounts."""

    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()
    mounts: tuple[dict[str, Any], ...] = ()

    def env_list(self) -> list[dict[str, str]]:
        return [{"name": k, "value": v} for k, v in self.env]


@dataclass(frozen=True)
class RunOutcome:
    """What an executor's run produced: per-circuit results, the usage report (decimal strings,
    shown, never charged: the operator charges from its trusted source), and metadata the result
    document adds for this provider."""

    results: list[dict[str, Any]]
    usage: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)
