"""Bearer tokens cached per credential and refreshed early: the pure part of authenticating.

The operator keeps API keys; executor pods only ever get the short-lived bearer token. A
token is refreshed at the latest when less than max(360 s, 10% of its lifetime) remains, with
one exchange in flight per credential however many callers ask at once. Keys and tokens never
appear in a repr, a log line or an exception message. How a key becomes a token (IBM Cloud IAM)
is the ibm provider's: governance/providers/ibm/iam.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cachetools

if TYPE_CHECKING:
    from ..providers.ibm.iam import Credential

MIN_REFRESH_MARGIN_S = 360.0
REFRESH_FRACTION = 0.10


class TokenError(Exception):
    """The exchange failed; the message names the credential by fingerprint, never by key.
    `reason` says what to do: CredentialsRefused and CredentialsMissing need a person;
    IamUnavailable passes (retry later)."""

    def __init__(self, message: str, reason: str = "CredentialsRefused") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    issued_at: float
    expires_at: float

    @property
    def lifetime(self) -> float:
        return max(0.0, self.expires_at - self.issued_at)

    def refresh_at(self) -> float:
        """The latest moment to refresh: max(360 s, 10% of the lifetime) before expiry."""
        return self.expires_at - max(MIN_REFRESH_MARGIN_S, REFRESH_FRACTION * self.lifetime)

    def due(self, now: float) -> bool:
        return now >= self.refresh_at()


class TokenManager:
    """Bearer tokens per credential, thread-safe; `token()` is what callers use."""

    def __init__(self, exchange: Callable[[Credential], Token], *,
                 clock: Callable[[], float] = time.time, max_credentials: int = 1024) -> None:
        # how a key becomes a token is the provider's (IBM Cloud IAM: providers/ibm/iam.iam_exchange):
        # the pure core sits below the providers and never imports them
        self._exchange = exchange
        self._clock = clock
        self._tokens: cachetools.LRUCache[str, Token] = cachetools.LRUCache(max_credentials)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def token(self, credential: Credential) -> Token:
        key = credential.fingerprint
        with self._guard:
            cached = self._tokens.get(key)
            lock = self._locks.setdefault(key, threading.Lock())
        if cached is not None and not cached.due(self._clock()):
            return cached
        with lock:  # one exchange in flight per credential; the others wait for its result
            with self._guard:
                cached = self._tokens.get(key)
            if cached is not None and not cached.due(self._clock()):
                return cached
            fresh = self._exchange(credential)
            with self._guard:
                self._tokens[key] = fresh
            return fresh

    def next_refresh(self, credential: Credential) -> float | None:
        """When this credential's token must be refreshed (for a timer that refreshes ahead)."""
        with self._guard:
            cached = self._tokens.get(credential.fingerprint)
        return cached.refresh_at() if cached else None

