"""The cost API: GET /costs?window=…&aggregate=…&namespace=…&format=json|csv, served by every replica.

What FinOps tools and `kubectl qgov report --server` read instead of the ledger database: the
costs of settled jobs in any window (budget/costview.py), summed by namespace, budget, backend or
session. Served on QGOV_COST_API_PORT (9091; 0: off) in a daemon thread, off the event loop, by
every replica (it only reads the ledger).

Who sees what: the caller's bearer token is authenticated with a TokenReview; the caller then sees
only the namespaces where a SubjectAccessReview for `get qiskitbudgets.qgov.dev` is allowed (asked
once cluster-wide, then per namespace the ledger knows). No token, or one the API server does not
know: 401. No namespace readable, or a `namespace=` asked for that is not: 403 (never an empty
answer, which would look like "nothing was spent"). The API server unreachable: 503. Verdicts are
cached by the token's SHA-256 (allowed 60 s, refused 10 s), as for /metrics (metricsauth.py).
QGOV_METRICS_AUTH=none turns the checks off here too (anyone reaching the port reads every namespace).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer

from cachetools import TTLCache
from sqlalchemy.exc import SQLAlchemyError

from .budget.costquery import BadQuery, check_aggregate
from .budget.costview import aggregate, parse_cost_window, render
from .budget.errors import LedgerError
from .metricsauth import Authenticate, ReviewUnavailable, User
from .wsgiserve import serve_in_thread, shut

log = logging.getLogger("qgov.costapi")
PATH = "/costs"
DEFAULT_PORT = 9091
GROUP, RESOURCE, VERB = "qgov.dev", "qiskitbudgets", "get"

Access = Callable[[User, dict[str, Any]], bool]


@dataclass(frozen=True)
class Readable:
    status: int  # 200, 401 or 503
    reason: str
    everywhere: bool = False  # may get qiskitbudgets in every namespace
    user: User | None = None


class NamespaceAccess:
    """Which namespaces a bearer token may read costs of: authenticate, then ask per namespace, cached."""

    def __init__(self, authenticate: Authenticate, access: Access, *, ttl: float = 60, negative_ttl: float = 10,
                 maxsize: int = 4096) -> None:
        self._authenticate, self._access = authenticate, access
        self._yes: TTLCache[tuple[str, str], bool] = TTLCache(maxsize, ttl)
        self._no: TTLCache[tuple[str, str], bool] = TTLCache(maxsize, negative_ttl)
        self._users: TTLCache[str, User | None] = TTLCache(maxsize, ttl)
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, str], ask: Callable[[], bool]) -> bool:
        with self._lock:
            if key in self._yes or key in self._no:
                return key in self._yes
        answer = ask()
        with self._lock:
            (self._yes if answer else self._no)[key] = answer
        return answer

    def namespaces(self, authorization: str | None, candidates: Iterable[str]) -> tuple[Readable, list[str]]:
        """The verdict and the namespaces of `candidates` the token may read."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Readable(401, "a bearer token is required (Authorization: Bearer <token>)"), []
        digest = hashlib.sha256(token.encode()).hexdigest()
        try:
            with self._lock:
                known = digest in self._users
                user = self._users.get(digest)
            if not known:
                user = self._authenticate(token)
                with self._lock:
                    self._users[digest] = user
            if user is None:
                return Readable(401, "the token was not authenticated"), []
            who = user

            def may(namespace: str) -> Callable[[], bool]:
                attributes = {"group": GROUP, "resource": RESOURCE, "verb": VERB, "namespace": namespace}
                return lambda: self._access(who, {"resourceAttributes": attributes})

            if self._cached((digest, ""), may("")):
                return Readable(200, user.username, True, user), sorted(candidates)
            readable = [ns for ns in sorted(candidates) if self._cached((digest, ns), may(ns))]
        except ReviewUnavailable as exc:
            log.warning(f"cost API: cannot review a caller's token: {exc}")
            return Readable(503, "the API server could not review the token"), []
        return Readable(200, user.username, False, user), readable


class Everyone:
    """QGOV_METRICS_AUTH=none: every namespace to anyone."""

    def namespaces(self, authorization: str | None, candidates: Iterable[str]) -> tuple[Readable, list[str]]:
        return Readable(200, "anyone", True), sorted(candidates)


def app(ledger: Callable[[], Any], access: NamespaceAccess | Everyone) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: `ledger()` gives a Ledger (made on first use, so a database that is down at start
    costs requests a 503, not the operator its start)."""

    def answer(start_response: Callable[..., Any], status: int, body: str, content_type: str = "text/plain",
               extra: list[tuple[str, str]] | None = None) -> list[bytes]:
        data = body.encode()
        headers = [("Content-Type", f"{content_type}; charset=utf-8"), ("Content-Length", str(len(data)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers + (extra or []))
        return [data]

    def serve_costs(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return answer(start_response, 404, f"not found: the costs are at {PATH}\n")
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            return answer(start_response, 405, "only GET\n", extra=[("Allow", "GET")])
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        unknown = sorted(set(query) - {"window", "aggregate", "namespace", "format"})
        by, fmt = query.get("aggregate") or "namespace", query.get("format") or "json"
        try:
            if unknown:
                raise BadQuery(f"unknown parameter {unknown[0]!r}: use window, aggregate, namespace, format")
            check_aggregate(by)
            if fmt not in ("json", "csv"):
                raise BadQuery(f"bad format {fmt!r}: use json or csv")
            window = parse_cost_window(query.get("window"))
        except BadQuery as exc:
            return answer(start_response, 400, f"{exc}\n")
        try:
            the_ledger = ledger()
            known = the_ledger.namespaces()
            wanted = [n for n in (query.get("namespace") or "").split(",") if n]
            verdict, readable = access.namespaces(environ.get("HTTP_AUTHORIZATION"),
                                                   wanted if wanted else known)
            if verdict.status == 401:
                return answer(start_response, 401, f"{verdict.reason}\n",
                              extra=[("WWW-Authenticate", 'Bearer realm="qgov costs"')])
            if verdict.status != 200:
                return answer(start_response, verdict.status, f"{verdict.reason}\n")
            refused = [n for n in wanted if n not in readable]
            if refused:
                return answer(start_response, 403, f"{verdict.reason} may not get {RESOURCE}.{GROUP} "
                                                   f"in namespace {refused[0]}\n")
            if not readable and not verdict.everywhere:
                return answer(start_response, 403, f"{verdict.reason} may not get {RESOURCE}.{GROUP} "
                                                   "in any namespace that has a budget\n")
            lines = aggregate(the_ledger.charges(window, readable), by)
        except (LedgerError, SQLAlchemyError) as exc:
            log.warning(f"cost API: the ledger cannot answer: {exc}")
            return answer(start_response, 503, "the ledger database cannot be read now; try again\n")
        body = render(window, by, lines, fmt, readable)
        return answer(start_response, 200, body, "text/csv" if fmt == "csv" else "application/json")

    return serve_costs


_server: WSGIServer | None = None


def port_from_env(value: str | None) -> int:
    try:
        port = int((value or str(DEFAULT_PORT)).strip())
    except ValueError:
        raise ValueError(f"QGOV_COST_API_PORT={value!r}: expected a port number (0: off)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"QGOV_COST_API_PORT={value!r}: expected 0 to 65535")
    return port


def serve(port: int, address: str, database_url: str | None, auth_mode: str) -> None:
    """Serve /costs on `port` in a daemon thread (0: nothing). `auth_mode` is QGOV_METRICS_AUTH's:
    `kubernetes` asks the API server the operator talks to, `none` lets anyone read every namespace."""
    global _server
    if not port or _server is not None:
        return
    access: NamespaceAccess | Everyone
    if auth_mode == "none":
        access = Everyone()
    else:
        import kubernetes

        from .kubeconfig import client_configuration
        from .metricsauth import kubernetes_reviews

        try:
            api_client = kubernetes.client.ApiClient(client_configuration(retries=1))
        except Exception as exc:  # noqa: BLE001 - the cost API must never stop the operator: it says why it is off
            log.error(f"cost API: not served, no API server to review callers' tokens with ({exc}); "
                      "set QGOV_COST_API_PORT=0 to turn it off")
            return
        access = NamespaceAccess(*kubernetes_reviews(api_client))
    lock = threading.Lock()
    made: list[Any] = []

    def ledger() -> Any:
        with lock:
            if not made:
                from .budget.ledger import Ledger

                made.append(Ledger(database_url))
            return made[0]

    try:
        _server = serve_in_thread(app(ledger, access), address, port, "costapi")
    except OSError as exc:
        log.error(f"cost API: cannot serve {PATH} on port {port} ({exc.strerror or exc}); "
                  "set QGOV_COST_API_PORT to a free port, or 0")
        return
    log.info(f"cost API on http://{address or '0.0.0.0'}:{port}{PATH}")


def stop() -> None:
    global _server
    if _server is not None:
        shut(_server)
        _server = None
