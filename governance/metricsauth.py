"""Who may read /metrics: the API server says, as controller-runtime's secure metrics serving asks it.

The budget gauges name every namespace's limit, spend and burn rate: that is the platform's
business, not every pod's that can reach port 9090. A scrape carries a bearer token (Prometheus'
ServiceAccount token, `authorization: Bearer …`); the token is authenticated with an
authentication.k8s.io/v1 TokenReview, and the user it names is authorised with an
authorization.k8s.io/v1 SubjectAccessReview for the non-resource URL `/metrics`, verb `get`: what
the ClusterRole `qgov-metrics-reader` grants. No token: 401. A token the API server does not know
(or an expired one): 401. A known user without the right: 403. The API server unreachable: 503
(and nothing is cached, so the next scrape asks again).

Verdicts are cached by the token's SHA-256 (never the token itself): an allowed one for
`ttl` seconds (60), a refused one for `negative_ttl` (10, so that a binding just made counts
soon), so a Prometheus scraping every 15 s costs two API calls a minute, not two per scrape.

QGOV_METRICS_AUTH: `kubernetes` (the default) or `none`, for clusters whose Prometheus scrapes
without a token (then anyone who can reach the port reads every budget: a NetworkPolicy is the
only fence left).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

log = logging.getLogger("qgov.metrics")
MODES = ("kubernetes", "none")
PATH = "/metrics"


@dataclass(frozen=True)
class User:
    """Who a TokenReview said the token belongs to (what a SubjectAccessReview asks about)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Verdict:
    status: int  # 200, 401, 403 or 503
    reason: str

    @property
    def allowed(self) -> bool:
        return self.status == 200


class ReviewUnavailable(Exception):
    """The API server could not be asked (not a verdict: never cached)."""


Authenticate = Callable[[str], "User | None"]
Authorize = Callable[[User], bool]


class Gate:
    """The verdict for an `Authorization` header: authenticate, then authorise, cached."""

    def __init__(self, authenticate: Authenticate, authorize: Authorize, *, ttl: float = 60,
                 negative_ttl: float = 10, maxsize: int = 1024) -> None:
        self._authenticate, self._authorize = authenticate, authorize
        self._allowed: TTLCache[str, Verdict] = TTLCache(maxsize, ttl)
        self._refused: TTLCache[str, Verdict] = TTLCache(maxsize, negative_ttl)
        self._lock = threading.Lock()
        self.reviews = 0  # TokenReviews + SubjectAccessReviews made (what the cache saves)

    def verdict(self, authorization: str | None) -> Verdict:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Verdict(401, "a bearer token is required (Authorization: Bearer <token>)")
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            cached = self._allowed.get(key) or self._refused.get(key)
        if cached is not None:
            return cached
        try:
            verdict = self._review(token)
        except ReviewUnavailable as exc:
            log.warning(f"metrics: cannot review a scrape's token: {exc}")
            return Verdict(503, "the API server could not review the token")
        with self._lock:
            (self._allowed if verdict.allowed else self._refused)[key] = verdict
        return verdict

    def _review(self, token: str) -> Verdict:
        self.reviews += 1
        user = self._authenticate(token)
        if user is None:
            return Verdict(401, "the token was not authenticated")
        self.reviews += 1
        if not self._authorize(user):
            return Verdict(403, f'{user.username} may not get the non-resource URL "{PATH}"')
        return Verdict(200, user.username)


def kubernetes_reviews(api_client: Any) -> tuple[Authenticate, Callable[[User, dict[str, Any]], bool]]:
    """TokenReview (token -> User or None) and SubjectAccessReview (User and the review's attributes,
    `nonResourceAttributes` or `resourceAttributes` -> allowed?) against the API server `api_client`
    talks to; ReviewUnavailable when it cannot be asked. Shared by /metrics and the cost API."""
    import kubernetes
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    authn = kubernetes.client.AuthenticationV1Api(api_client)
    authz = kubernetes.client.AuthorizationV1Api(api_client)

    def authenticate(token: str) -> User | None:
        try:
            review = authn.create_token_review({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                                "spec": {"token": token}}, _request_timeout=5)
        except (ApiException, HTTPError, OSError) as exc:
            raise ReviewUnavailable(f"TokenReview: {_why(exc)}") from None
        status = review.status
        if not status or not status.authenticated or not status.user:
            return None
        extra = tuple(sorted((k, tuple(v)) for k, v in (status.user.extra or {}).items()))
        return User(status.user.username or "", status.user.uid or "", tuple(status.user.groups or ()), extra)

    def access(user: User, attributes: dict[str, Any]) -> bool:
        spec: dict[str, Any] = {"user": user.username, "groups": list(user.groups), **attributes}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        try:
            review = authz.create_subject_access_review({"apiVersion": "authorization.k8s.io/v1",
                                                         "kind": "SubjectAccessReview", "spec": spec},
                                                        _request_timeout=5)
        except (ApiException, HTTPError, OSError) as exc:
            raise ReviewUnavailable(f"SubjectAccessReview: {_why(exc)}") from None
        return bool(review.status and review.status.allowed)

    return authenticate, access


def kubernetes_gate(api_client: Any, **cache: Any) -> Gate:
    """A Gate that asks the API server `api_client` talks to (the operator's identity needs
    `create` on tokenreviews and subjectaccessreviews: its ClusterRole grants both)."""
    authenticate, access = kubernetes_reviews(api_client)

    def authorize(user: User) -> bool:
        return access(user, {"nonResourceAttributes": {"path": PATH, "verb": "get"}})

    return Gate(authenticate, authorize, **cache)


def _why(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return f"HTTP {status} {getattr(exc, 'reason', '')}".strip() if status else type(exc).__name__


def mode_from_env(value: str | None) -> str:
    mode = (value or "kubernetes").strip().lower()
    if mode not in MODES:
        raise ValueError(f"QGOV_METRICS_AUTH={value!r}: expected one of {', '.join(MODES)}")
    return mode


def gate_for(mode: str) -> Gate | None:
    """The gate QGOV_METRICS_AUTH asks for, asking the API server the operator talks to (its
    in-cluster identity, or $KUBECONFIG's); None for `none`."""
    if mode == "none":
        return None
    import kubernetes

    from .kubeconfig import client_configuration

    return kubernetes_gate(kubernetes.client.ApiClient(client_configuration(retries=1)))
