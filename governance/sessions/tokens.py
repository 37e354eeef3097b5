"""IBM Cloud IAM bearer tokens: exchanged from API keys, cached per credential, refreshed early.

The operator keeps API keys; executor pods only ever get the short-lived bearer token. A
token is refreshed at the latest when less than max(360 s, 10% of its lifetime) remains, with
one exchange in flight per credential however many callers ask at once. Keys and tokens never
appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import cachetools

GRANT = "urn:ibm:params:oauth:grant-type:apikey"
DEFAULT_IAM_URL = "https://iam.cloud.ibm.com"
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
class Credential:
    api_key: str = field(repr=False)
    instance: str  # the instance CRN
    iam_url: str = DEFAULT_IAM_URL
    url: str | None = None  # a private Runtime endpoint, if any
    search_url: str | None = None  # private Global Search / Global Catalog endpoints, for the client in pods
    catalog_url: str | None = None

    @property
    def fingerprint(self) -> str:
        """A stable, non-reversible name for logs and cache keys."""
        return hashlib.sha256(f"{self.iam_url}\0{self.api_key}".encode()).hexdigest()[:12]


def credentials_problem(name: str, namespace: str, keys: set[str] | frozenset[str] | None) -> str | None:
    """What is wrong with credential Secret `name` that has (non-empty) `keys`, None when it is
    absent; None when nothing is. Names keys, never values (the admission webhook asks too)."""
    if keys is None:
        return f"no Secret {name!r} in namespace {namespace!r} (it needs keys apiKey and instance)"
    missing = [k for k in ("apiKey", "instance") if k not in keys]
    if missing:
        return (f"Secret {name} has no {' and no '.join(missing)} (it needs apiKey and instance, the "
                "instance's CRN; url and iamUrl are optional)")
    return None


def credential_from_secret(name: str, data: dict[str, str]) -> Credential:
    """A credential from a Secret's `data` (base64 values): apiKey and instance are required;
    url, iamUrl, searchUrl and catalogUrl point at private endpoints. Errors name keys, not values."""
    decoded: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value).decode().strip()
        except (ValueError, UnicodeDecodeError):
            raise TokenError(f"Secret {name}: key {key} is not valid base64 text", "CredentialsMissing") from None
    problem = credentials_problem(name, "", {k for k, v in decoded.items() if v})
    if problem:
        raise TokenError(problem, "CredentialsMissing")
    return Credential(decoded["apiKey"], decoded["instance"], decoded.get("iamUrl") or DEFAULT_IAM_URL,
                      decoded.get("url") or None, decoded.get("searchUrl") or None, decoded.get("catalogUrl") or None)


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


def _claims(jwt: str) -> dict[str, float]:
    try:
        payload = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        raise TokenError("IAM answered with an access token that is not a JWT") from None


def iam_exchange(credential: Credential, *, timeout: float = 10.0, attempts: int = 3) -> Token:
    """POST the API key to IAM; retries 5xx and connection errors, not refusals."""
    body = urllib.parse.urlencode({"grant_type": GRANT, "apikey": credential.api_key}).encode()
    request = urllib.request.Request(f"{credential.iam_url.rstrip('/')}/identity/token", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Accept": "application/json"})
    problem = ""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
            token = answer["access_token"]
            claims = _claims(token)
            issued = float(claims.get("iat", time.time()))
            expires = float(claims.get("exp", issued + float(answer.get("expires_in", 0))))
            return Token(token, issued, expires)
        except urllib.error.HTTPError as exc:
            detail = _iam_error(exc)
            if exc.code < 500:
                raise TokenError(f"IAM refused the API key of credential {credential.fingerprint} "
                                 f"(HTTP {exc.code}): {detail}") from None
            problem = f"HTTP {exc.code}: {detail}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            problem = f"cannot reach IAM at {credential.iam_url}: {getattr(exc, 'reason', exc)}"
        except (KeyError, ValueError):
            raise TokenError(f"IAM's answer for credential {credential.fingerprint} has no usable access token") \
                from None
        time.sleep(min(2.0, 0.2 * 2 ** attempt))
    raise TokenError(f"no token for credential {credential.fingerprint} after {attempts} attempts: {problem}",
                     "IamUnavailable")


def _iam_error(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read())
        return f"{data.get('errorCode', '')} {data.get('errorMessage', '')}".strip()
    except (ValueError, OSError):
        return exc.reason or "no detail"


class TokenManager:
    """Bearer tokens per credential, thread-safe; `token()` is what callers use."""

    def __init__(self, exchange: Callable[[Credential], Token] = iam_exchange, *,
                 clock: Callable[[], float] = time.time, max_credentials: int = 1024) -> None:
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
