"""Typed errors of the Kubernetes API, made in one adapter (`api_errors`), so a caller says what it
handles (`except NotFound`, `except Conflict`) instead of comparing HTTP status codes.

Every layer that calls the API imports this module (handlers, webhook, leader, the CLI and SDK,
the executor), so it sits at the bottom and imports nothing of qgov. The errors are still
ApiExceptions (and the kubernetes client's own NotFoundException, ForbiddenException...), so code
that catches those keeps working unchanged. Their message is the status, the API server's
reason and its Status message, one line and bounded: never the answer's headers or raw body
(the kubernetes client's dump), so a log line cannot carry a token or a Secret's data."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kubernetes.client import exceptions
from kubernetes.client.rest import ApiException

T = TypeVar("T")
MESSAGE_LIMIT = 500


class KubeError(ApiException):  # type: ignore[misc]  # the kubernetes client is untyped
    """The API server refused a call (or none answered: status 0). `status`: the HTTP status;
    `reason`: the HTTP reason phrase; `kube_reason`: the Status' CamelCase reason (AlreadyExists,
    Invalid...), '' without one; `message`: the Status' message (else the HTTP reason), as the
    API server wrote it. `body` and `headers` stay as the client gave them for code that reads
    them; they are never in str(), which is one line, bounded."""

    status: int
    reason: str
    body: Any
    headers: Any

    def __init__(self, original: ApiException) -> None:
        super().__init__(status=original.status, reason=original.reason)
        self.status = int(original.status or 0)
        self.reason = str(original.reason or "")
        self.body, self.headers = original.body, original.headers
        document = _status_document(original.body)
        self.kube_reason = str(document.get("reason") or "")
        self.message = str(document.get("message") or self.reason)

    def __str__(self) -> str:
        return " ".join(f"the API server answered {self.status} {self.kube_reason or self.reason}: "
                        f"{self.message}".split())[:MESSAGE_LIMIT]


class Refused(KubeError):
    """4xx: the API server refused the request as sent (retrying it unchanged is not expected to help,
    unless what it depends on changes: a missing ServiceAccount created, a quota raised)."""


class BadRequest(Refused):
    """400 (also how an admission webhook's denial may come back)."""


class Unauthorized(Refused, exceptions.UnauthorizedException):  # type: ignore[misc]
    """401: the credential was not accepted."""


class Forbidden(Refused, exceptions.ForbiddenException):  # type: ignore[misc]
    """403: RBAC, or an admission (a webhook's denial, Pod Security, a missing ServiceAccount)."""


class NotFound(Refused, exceptions.NotFoundException):  # type: ignore[misc]
    """404: the object (or its kind, without the CRD) is not there."""


class Conflict(Refused):
    """409: the object changed since it was read (a stale resourceVersion or precondition), or exists already."""


class AlreadyExists(Conflict):
    """409 with the Status reason AlreadyExists: a create found the name taken."""


class Invalid(Refused):
    """422: the object failed validation (the CRD schema, a JSON patch's test)."""


class ServerError(KubeError, exceptions.ServiceException):  # type: ignore[misc]
    """5xx: the API server (or something behind it) failed; another try may succeed."""


_BY_STATUS: dict[int, type[KubeError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                          409: Conflict, 422: Invalid}


def typed(exc: ApiException) -> KubeError:
    """The typed error for a kubernetes client ApiException (itself when typed already)."""
    if isinstance(exc, KubeError):
        return exc
    status = int(exc.status or 0)
    kind = _BY_STATUS.get(status)
    if kind is None:
        kind = Refused if 400 <= status < 500 else ServerError if 500 <= status < 600 else KubeError
    error = kind(exc)
    if kind is Conflict and error.kube_reason == "AlreadyExists":
        error = AlreadyExists(exc)
    return error


@contextmanager
def api_errors() -> Iterator[None]:
    """Around calls of the kubernetes client: an ApiException they raise comes out typed. Not
    chained to the original, whose str() dumps the answer's headers and body."""
    try:
        yield
    except KubeError:
        raise
    except ApiException as exc:
        raise typed(exc) from None


def unless_gone(call: Callable[[], T]) -> T | None:
    """call(), or None when the object is gone (NotFound)."""
    try:
        with api_errors():
            return call()
    except NotFound:
        return None


def created(call: Callable[[], Any]) -> bool:
    """call() (a creation): True, or False when the name is taken (any 409: AlreadyExists, Conflict)."""
    try:
        with api_errors():
            call()
        return True
    except Conflict:
        return False


def _status_document(body: Any) -> dict[str, Any]:
    """The API server's Status answer (a JSON body), or {} for anything else."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
