"""The typed Kubernetes API errors (governance/kubeerrors.py), from refusals the real kubernetes
client raises: a local HTTP server answers as the API server does (a Status document, its status
code and reason), and the client's own ApiException is turned into the typed error by api_errors.
What a caller reads (type, status, reasons, message) and what str() never shows (headers, the
body beyond the Status message, the client's bearer token) are asserted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
import pytest
from kubernetes.client import exceptions
from kubernetes.client.rest import ApiException

from governance import kubeerrors
from governance.handlers.apiwrites import Connection, pods_path
from governance.handlers.identity import missing_account
from governance.handlers.jobpods import refusal_message, refusal_reason
from governance.kubeerrors import (AlreadyExists, BadRequest, Conflict, Forbidden, Invalid, KubeError, NotFound,
                                   Refused, ServerError, Unauthorized, api_errors, created, typed, unless_gone)

TOKEN = "sha256~the-clients-bearer-token"
SECRET_VALUE = "c2VjcmV0LXZhbHVl"  # in the answer's body outside the Status message: never in str()


class Answers:
    """What the fake API server answers next: (HTTP status, Status reason, message)."""

    def __init__(self) -> None:
        self.next: tuple[int, str, str] = (200, "", "")
        self.authorization: list[str] = []


@pytest.fixture()
def api() -> Iterator[tuple[Any, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            answers.authorization.append(self.headers.get("Authorization", ""))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            code, reason, message = answers.next
            if code == 200:
                body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}}
            else:
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                        "reason": reason, "code": code, "details": {"causes": [{"message": SECRET_VALUE}]}}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Audit-Id", "audit-header-value")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    configuration.api_key = {"authorization": TOKEN}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    client = kubernetes.client.ApiClient(configuration)
    try:
        yield kubernetes.client.CoreV1Api(client), answers
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def refusal(api: tuple[Any, Answers], code: int, reason: str, message: str) -> ApiException:
    """The kubernetes client's own exception for the API server answering `code`."""
    core, answers = api
    answers.next = (code, reason, message)
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_secret("s", "n")
    assert not isinstance(raised.value, KubeError)  # the client's, before the adapter
    return raised.value


@pytest.mark.parametrize("code, reason, kind, client_kind", [
    (400, "BadRequest", BadRequest, exceptions.ApiException),
    (401, "Unauthorized", Unauthorized, exceptions.UnauthorizedException),
    (403, "Forbidden", Forbidden, exceptions.ForbiddenException),
    (404, "NotFound", NotFound, exceptions.NotFoundException),
    (409, "Conflict", Conflict, exceptions.ApiException),
    (409, "AlreadyExists", AlreadyExists, exceptions.ApiException),
    (422, "Invalid", Invalid, exceptions.ApiException),
    (429, "TooManyRequests", Refused, exceptions.ApiException),
    (500, "InternalError", ServerError, exceptions.ServiceException),
    (503, "ServiceUnavailable", ServerError, exceptions.ServiceException),
])
def test_a_refusal_of_the_api_server_comes_out_typed_with_its_status_reasons_and_message(
        api: tuple[Any, Answers], code: int, reason: str, kind: type[KubeError], client_kind: type) -> None:
    core, answers = api
    answers.next = (code, reason, f'secrets "s" {reason.lower()}\n  (second line)')
    with pytest.raises(KubeError) as raised, api_errors():
        core.read_namespaced_secret("s", "n")
    error = raised.value
    assert type(error) is kind
    # still what the client raises, so code catching ApiException (or NotFoundException...) is unchanged
    assert isinstance(error, ApiException) and isinstance(error, client_kind)
    assert isinstance(error, Refused) == (400 <= code < 500)
    assert error.status == code and error.kube_reason == reason and error.reason  # the HTTP reason phrase
    assert error.message == f'secrets "s" {reason.lower()}\n  (second line)'
    assert json.loads(error.body)["code"] == code  # the answer, for code that reads it
    assert str(error) == f'the API server answered {code} {reason}: secrets "s" {reason.lower()} (second line)'
    assert error.__cause__ is None and error.__suppress_context__  # the client's dump is not chained


def test_the_message_never_carries_the_token_headers_or_the_body_beyond_the_status_message(
        api: tuple[Any, Answers]) -> None:
    original = refusal(api, 409, "AlreadyExists", 'secrets "s" already exists')
    assert SECRET_VALUE in str(original) and "audit-header-value" in str(original)  # the client's dump has them
    assert TOKEN in api[1].authorization[0]  # the client sent its token
    error = typed(original)
    for text in (str(error), repr(error), error.message):
        assert SECRET_VALUE not in text and "audit-header-value" not in text and TOKEN not in text
    long = typed(refusal(api, 422, "Invalid", "x" * 5000))
    assert len(str(long)) == kubeerrors.MESSAGE_LIMIT and long.message == "x" * 5000


def test_an_answer_without_a_status_document_and_no_answer_at_all() -> None:
    """Without a JSON Status (a proxy's HTML page; the client's status 0 for a TLS failure, built
    as rest.py builds it), the HTTP reason is the message and the status decides the type."""
    plain = ApiException(status=502, reason="Bad Gateway")
    plain.body = b"<html>bad gateway</html>"
    error = typed(plain)
    assert type(error) is ServerError and error.kube_reason == "" and error.message == "Bad Gateway"
    none = typed(ApiException(status=0, reason="SSLError: certificate verify failed"))
    assert type(none) is KubeError and none.status == 0 and "certificate verify failed" in str(none)
    assert typed(error) is error  # typed once: api_errors lets a typed error through as it is


def test_unless_gone_and_created_answer_for_404_and_409_and_raise_the_rest_typed(api: tuple[Any, Answers]) -> None:
    core, answers = api
    answers.next = (404, "NotFound", 'secrets "s" not found')
    assert unless_gone(lambda: core.read_namespaced_secret("s", "n")) is None
    answers.next = (200, "", "")
    assert unless_gone(lambda: core.read_namespaced_secret("s", "n")).metadata.name == "s"
    body = {"metadata": {"name": "s"}}
    assert created(lambda: core.create_namespaced_secret("n", body)) is True
    for reason in ("AlreadyExists", "Conflict"):
        answers.next = (409, reason, "taken")
        assert created(lambda: core.create_namespaced_secret("n", body)) is False
    answers.next = (403, "Forbidden", 'secrets is forbidden: User "x" cannot create')
    with pytest.raises(Forbidden):
        created(lambda: core.create_namespaced_secret("n", body))
    answers.next = (500, "InternalError", "etcd is down")
    with pytest.raises(ServerError):
        unless_gone(lambda: core.read_namespaced_secret("s", "n"))


def test_a_refusal_on_the_admissions_kept_alive_connection_comes_out_typed_the_same(api: tuple[Any, Answers]) -> None:
    """The admission's writes skip the client (handlers/apiwrites.py) and raise what it would: the
    adapter makes the same typed error of it (jobpods catches Conflict and Refused there)."""
    core, answers = api
    connection = Connection(core.api_client)
    answers.next = (409, "AlreadyExists", 'pods "p" already exists')
    with pytest.raises(AlreadyExists) as raised, api_errors():
        connection.request("POST", pods_path("n"), {"metadata": {"name": "p"}})
    assert raised.value.status == 409 and raised.value.message == 'pods "p" already exists'
    answers.next = (403, "Forbidden", 'pods "p" is forbidden: error looking up service account n/qgov-executor: '
                                      'serviceaccount "qgov-executor" not found')
    with pytest.raises(Forbidden) as denied, api_errors():
        connection.request("POST", pods_path("n"), {"metadata": {"name": "p"}})
    assert missing_account(denied.value) is not None and refusal_reason(denied.value) == "Forbidden"
    assert refusal_message(denied.value).startswith('pods "p" is forbidden: error looking up service account')
